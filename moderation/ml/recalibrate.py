"""Add calibration data to a stored model without touching its artifact.

A model trained before `metadata.json` carried a `calibration` key gets it by recomputing its
out-of-fold scores: the same training files (checked by SHA-256, in the recorded order), the same
hyper-parameters, groups and seed, the same grouped folds (`cross_fit` with `final=False`). The
recomputed validation macro-F1 must equal the recorded one, which shows the recipe was reproduced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from moderation.ml.data import Dataset
from moderation.ml.metrics import classification_metrics
from moderation.ml.model import ModelError, file_sha256, read_metadata, write_metadata
from moderation.ml.pipeline import SERVED_DOMAIN, served_rows
from moderation.ml.progress import Progress, silent
from moderation.ml.train import N_SPLITS, calibration_evidence, cross_fit, default_routing, has_served_rows

# Two runs of the same folds agree to rounding; a different recipe or data moves macro-F1 far more.
MACRO_F1_TOLERANCE = 1e-6


def order_like_training(metadata: dict[str, Any], datasets: list[Dataset]) -> Dataset:
    """Return the datasets concatenated in the order the model's training files were read.

    Each dataset must come from one file whose SHA-256 the metadata records; every recorded file must
    be given (the folds depend on the rows and their order).
    """
    recorded = [source.get("sha256") for source in metadata.get("training_data", [])]
    if not recorded:
        raise ModelError("the model's metadata records no training files: nothing to recompute from")
    by_hash = {}
    for data in datasets:
        if len(data.sources) != 1:
            raise ModelError("give each training file on its own")
        by_hash[data.sources[0]["sha256"]] = data
    missing = [source["path"] for source in metadata["training_data"] if source.get("sha256") not in by_hash]
    extra = [data.sources[0]["path"] for sha, data in by_hash.items() if sha not in recorded]
    if missing or extra:
        raise ModelError("the files differ from the model's training data: "
                         + "; ".join([*(f"missing {p}" for p in missing), *(f"not trained on {p}" for p in extra)]))
    combined = Dataset()
    for sha in recorded:
        combined.extend(by_hash[sha])
    return combined


def recalibrate(model_dir: str | Path, datasets: list[Dataset], *, n_jobs: int = 2,
                progress: Progress | None = None) -> dict[str, Any]:
    """Recompute the model's out-of-fold scores and write them to its metadata.json as `calibration`.

    The artifact is not touched (its SHA-256 is checked before and after). Returns the new metadata.
    """
    say = progress or silent
    model_dir = Path(model_dir)
    metadata = read_metadata(model_dir)
    artifact = model_dir / metadata["artifact"]["file"]
    if not artifact.is_file() or file_sha256(artifact) != metadata["artifact"]["sha256"]:
        raise ModelError(f"the artifact of {model_dir} is missing or does not match its recorded SHA-256")
    data = order_like_training(metadata, datasets)
    if len(data.texts) != metadata.get("rows"):
        raise ModelError(f"the files give {len(data.texts)} rows, the model trained on {metadata.get('rows')}")
    seed = int(metadata.get("seed", 0))
    params = dict(metadata["hyperparameters"])
    labels = np.asarray(data.labels, dtype=int)
    if not has_served_rows(data.domains, labels):
        raise ModelError(f"the model trained on no {SERVED_DOMAIN} rows of both classes: nothing to calibrate on "
                         "(retrain calibrates it on the site's decisions)")
    say(f"recomputing out-of-fold scores of {len(data.texts)} rows ({N_SPLITS} folds, seed {seed})")
    oof, folds, _ = cross_fit(data.texts, labels, data.groups, params, seed=seed, n_jobs=n_jobs,
                              domains=data.domains, final=False, progress=say)
    if oof is None:
        raise ModelError("too little data for cross-validation")
    served = served_rows(np.asarray(data.domains), labels)
    decision = float(metadata["decision_threshold"])
    recorded = metadata.get("validation", {}).get("at_decision_threshold", {}).get("macro_f1")
    recomputed = classification_metrics(labels[served], oof[served], decision)["macro_f1"]
    say(f"macro-F1 at {decision}: recomputed {recomputed:.6f}, recorded {recorded}")
    if recorded is None or abs(recomputed - recorded) > MACRO_F1_TOLERANCE:
        raise ModelError(f"the recomputed out-of-fold macro-F1 {recomputed:.6f} differs from the recorded "
                         f"{recorded}: not the model's recipe, data or seed; nothing written")
    evidence = calibration_evidence(labels, oof, served, folds=folds, seed=seed, sources=metadata["training_data"])
    metadata["routing"] = {**default_routing(evidence, decision), "rows": int(served.sum())}
    metadata["calibration"] = evidence.to_metadata()
    write_metadata(model_dir, metadata)
    if file_sha256(artifact) != metadata["artifact"]["sha256"]:  # never expected: we only wrote the metadata
        raise ModelError(f"the artifact of {model_dir} changed while recalibrating")
    say(f"wrote the calibration ({evidence.removed.size} removed, {evidence.kept.size} kept) to "
        f"{model_dir / 'metadata.json'}")
    return metadata
