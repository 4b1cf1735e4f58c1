"""Load a model folder (hash-checked) and score comments with it."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import threading
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.exceptions import InconsistentVersionWarning

from moderation.ml import fastpath
from moderation.ml.fastpath import FastScorer, UnsupportedPipeline
from moderation.ml.fastpath import _sigmoid as sigmoid

ARTIFACT_FORMAT = 1
MAX_HIGHLIGHTS = 5
THREAT = "threat"
MIN_HIGHLIGHT_WEIGHT = 0.1

# Models that are alive somewhere in this process, by folder, metadata, artifact hash and word-cache
# size: loading the same bytes again while one is held (a second app in the process, the test suite's
# many apps) returns it instead of unpickling them once more. The hash is still checked on every load.
# Weak references: this never keeps a model alive, so a retired or refused version is freed as before.
_alive: weakref.WeakValueDictionary[tuple, LoadedModel] = weakref.WeakValueDictionary()
_alive_lock = threading.Lock()


class ModelError(Exception):
    """The model folder cannot be used: missing, unreadable, tampered with or unloadable.

    The message has the details for the log (paths, hashes); `reason` says what failed without them, for
    answers anyone may read (/readyz).
    """

    def __init__(self, message: str, *, reason: str = "it could not be loaded") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Highlight:
    """A span of the original text that pushed the toxicity score up, with its logit weight."""

    start: int
    end: int
    text: str
    weight: float


@dataclass(frozen=True)
class Score:
    """The classifier's verdict on one comment.

    `threat` is the threat head's probability (None for a model without one); `threat_likely` whether it
    reaches the head's threshold. A likely threat's category is `threat`, whatever its toxicity.
    """

    toxicity: float
    offensive: bool
    category: str | None
    highlights: tuple[Highlight, ...]
    threat: float | None = None
    threat_likely: bool = False


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class LoadedModel:
    """A fitted pipeline plus its metadata and thresholds, ready to score comments."""

    def __init__(self, path: Path, metadata: dict[str, Any], artifact: dict[str, Any],
                 sklearn_version_mismatch: str | None = None):
        self.path = path
        self.metadata = metadata
        self.version: str = metadata["version"]
        self.decision_threshold = float(metadata["decision_threshold"])
        routing = metadata.get("routing", {})
        self.approve_threshold = float(routing.get("approve_threshold", self.decision_threshold))
        self.reject_threshold = float(routing.get("reject_threshold", self.decision_threshold))
        self.sklearn_version_mismatch = sklearn_version_mismatch
        self.pipeline = artifact["pipeline"]
        self.category_head = artifact.get("category_head")
        # A threat head serves only with the threshold its training measured (models trained before it have neither).
        threshold = (metadata.get("threat") or {}).get("threshold")
        self.threat_head = artifact.get("threat_head") if threshold is not None else None
        self.threat_threshold: float | None = float(threshold) if self.threat_head is not None else None
        try:
            self._fast = FastScorer(self.pipeline, self.category_head, self.threat_head)
        except (UnsupportedPipeline, AttributeError, KeyError) as exc:
            raise ModelError(f"model at {path} has an unsupported pipeline: {exc}",
                             reason="its pipeline is not supported") from exc

    @property
    def has_threat_head(self) -> bool:
        """Whether this model gives a threat probability (Perspective's THREAT, reason `threat_likely`)."""
        return self.threat_head is not None

    def _verdict(self, toxicity: float, hits, highlights: tuple[Highlight, ...]) -> Score:
        offensive = toxicity >= self.decision_threshold
        fast = self._fast
        wanted = fast.has_threat or (offensive and fast.category_labels)
        logits = fast.head_logits(*hits) if wanted else []
        threat = threat_likely = None
        if fast.has_threat:
            threat = sigmoid(logits[-1])
            threat_likely = threat >= self.threat_threshold
        category = None
        if threat_likely:
            category = THREAT  # the graver reason, as the training data label a threat that also insults
        elif offensive and fast.category_labels:
            cat_logits = logits[:len(logits) - fast.has_threat]
            labels = fast.category_labels
            if len(cat_logits) == 1:  # a head fitted on two categories has one logit, for the second
                cat_logits = [0.0, cat_logits[0]]
            # With a threat head, only it names a threat: the category is then threat exactly when the comment
            # is held as one (reason threat_likely), never without it.
            named = [i for i in range(len(labels)) if not (fast.has_threat and labels[i] == THREAT)]
            category = labels[max(named, key=cat_logits.__getitem__)] if named else None
        return Score(toxicity, offensive, category, highlights, threat, bool(threat_likely))

    def score(self, text: str, *, explain: bool = True, above: float | None = None) -> Score:
        """Score one comment on the fast path, optionally with highlighted spans.

        With `above` (the approve threshold a held comment crossed), the spans explain why it is held:
        the fewest strongest words without which its score would fall below `above`. Where no word was
        needed for that (a threshold of 0, or the comment as a whole keeps it above), the fewest without
        which the model would no longer call it offensive. None for a score below `above`.
        """
        if not explain:
            toxicity, hits = self._fast.classify(text)
            return self._verdict(toxicity, hits, ())
        toxicity, hits, spans = self._fast.explain(text)
        if above is None:
            chosen = _highlights(text, spans)
        elif toxicity < above:
            chosen = ()
        else:
            chosen = _crossing(text, spans, toxicity, above) or _crossing(text, spans, toxicity,
                                                                          self.decision_threshold)
        return self._verdict(toxicity, hits, chosen)

    def score_many(self, texts: list[str], *, explain: bool = True) -> list[Score]:
        """Score several comments (same results as calling `score` on each)."""
        return [self.score(text, explain=explain) for text in texts]

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Return offensive-class probabilities from the sklearn pipeline (batch path)."""
        return self.pipeline.predict_proba(list(texts))[:, 1]


def _highlights(text: str, spans: list[tuple[int, int, float]]) -> tuple[Highlight, ...]:
    merged: dict[tuple[int, int], float] = {}
    for start, end, weight in spans:
        merged[(start, end)] = merged.get((start, end), 0.0) + weight
    strong = [(span, w) for span, w in merged.items() if w >= MIN_HIGHLIGHT_WEIGHT]
    strong.sort(key=lambda item: -item[1])
    chosen = sorted(strong[:MAX_HIGHLIGHTS])
    return tuple(Highlight(*_trim(text, s, e), round(w, 4)) for (s, e), w in chosen)


def _logit(probability: float) -> float:
    p = min(max(probability, 1e-15), 1 - 1e-15)
    return math.log(p / (1 - p))


def _crossing(text: str, spans: list[tuple[int, int, float]], toxicity: float,
              threshold: float) -> tuple[Highlight, ...]:
    """Return the fewest, strongest words without which the score would fall below `threshold`.

    Word weights add up to part of the logit (style and encoder belong to no word), so a comment whose
    logit minus all its positive words still reaches the threshold was not put there by any word: none.
    """
    if threshold <= 0.0 or toxicity < threshold:
        return ()
    merged: dict[tuple[int, int], float] = {}
    for start, end, weight in spans:
        merged[(start, end)] = merged.get((start, end), 0.0) + weight
    positive = sorted(((w, span) for span, w in merged.items() if w > 0), key=lambda item: -item[0])
    margin = _logit(toxicity) - _logit(threshold)
    if sum(w for w, _ in positive) <= margin:
        return ()
    chosen, removed = [], 0.0
    for weight, span in positive:
        chosen.append((span, weight))
        removed += weight
        if removed > margin:
            break
    return tuple(Highlight(*_trim(text, s, e), round(w, 4)) for (s, e), w in sorted(chosen))


_EDGE_PUNCTUATION = set(".,;:!?\"'()[]{}<>«»„“”‚‘’…-–—/")


def _trim(text: str, start: int, end: int) -> tuple[int, int, str]:
    """Drop punctuation hanging on the ends of a span ("Arschloch," -> "Arschloch")."""
    begin, stop = start, end
    while begin < stop and text[begin] in _EDGE_PUNCTUATION:
        begin += 1
    while stop > begin and text[stop - 1] in _EDGE_PUNCTUATION:
        stop -= 1
    if begin == stop:
        begin, stop = start, end
    return begin, stop, text[begin:stop]


def read_metadata(model_dir: Path) -> dict[str, Any]:
    """Return the parsed metadata.json of a model folder, or raise ModelError."""
    meta_path = model_dir / "metadata.json"
    if not model_dir.is_dir():
        raise ModelError(f"model folder not found: {model_dir}", reason="its folder is missing")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"metadata.json missing in model folder: {meta_path}",
                         reason="its metadata.json is missing") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"metadata unreadable: {meta_path}: {exc}", reason="its metadata.json is unreadable") from exc
    for key in ("version", "artifact", "decision_threshold"):
        if key not in metadata:
            raise ModelError(f"metadata lacks {key!r}: {meta_path}", reason=f"its metadata.json lacks {key!r}")
    return metadata


def dump_metadata(metadata: dict[str, Any]) -> str:
    """Return metadata.json's text: indented, but each list of numbers on one line (calibration scores)."""
    compact: dict[str, str] = {}

    def shrink(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: shrink(item) for key, item in value.items()}
        if isinstance(value, list) and len(value) > 8 and all(
                isinstance(item, int | float) and not isinstance(item, bool) for item in value):
            token = f"@@numbers{len(compact)}@@"
            compact[token] = json.dumps(value, separators=(",", ":"))
            return token
        if isinstance(value, list):
            return [shrink(item) for item in value]
        return value

    text = json.dumps(shrink(metadata), indent=2, ensure_ascii=False)
    for token, numbers in compact.items():
        text = text.replace(f'"{token}"', numbers, 1)
    return text + "\n"


def write_metadata(model_dir: Path, metadata: dict[str, Any]) -> None:
    """Write a model folder's metadata.json atomically."""
    tmp = model_dir / "metadata.json.tmp"
    tmp.write_text(dump_metadata(metadata), encoding="utf-8")
    os.replace(tmp, model_dir / "metadata.json")


def load_model(model_dir: str | Path, *, expect_version: str | None = None) -> LoadedModel:
    """Load a model folder, refusing an artifact whose SHA-256 differs from the recorded one.

    The artifact is read once; the bytes that were hashed are the bytes unpickled. A model store (a
    folder with CURRENT, see `moderation.ml.registry`) loads its serving version, and refuses
    a version folder whose metadata names another version (as it does with `expect_version`). The
    model returned may be shared with other holders in this process: treat it as read-only.
    """
    model_dir = Path(model_dir)
    pointer = model_dir / "CURRENT"
    if pointer.is_file():
        version = pointer.read_text(encoding="utf-8").strip()
        if not version or "/" in version or version.startswith("."):
            raise ModelError(f"{pointer} names no valid version", reason="CURRENT names no valid version")
        model_dir, expect_version = model_dir / "versions" / version, version
    metadata = read_metadata(model_dir)
    if expect_version is not None and metadata["version"] != expect_version:
        raise ModelError(f"{model_dir} should hold version {expect_version} but its metadata says "
                         f"{metadata['version']}", reason="its metadata names another version")
    artifact_meta = metadata["artifact"]
    name = str(artifact_meta.get("file", ""))
    if not name or Path(name).name != name:
        raise ModelError(f"metadata names an invalid artifact file {name!r}: {model_dir}",
                         reason="its metadata names an invalid artifact file")
    artifact_path = model_dir / name
    # Read once, hash those bytes and unpickle the same bytes: opening the file again after the check
    # would run whatever was swapped in meanwhile by anyone who can write the folder.
    try:
        data = artifact_path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise ModelError(f"model artifact missing: {artifact_path}", reason="its artifact is missing") from None
    except OSError as exc:
        raise ModelError(f"model artifact unreadable: {artifact_path}: {exc}",
                         reason="its artifact is unreadable") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != artifact_meta.get("sha256"):
        raise ModelError(
            f"SHA-256 mismatch for {artifact_path}: metadata records "
            f"{artifact_meta.get('sha256')}, file has {actual}; refusing to load",
            reason="its artifact does not match the SHA-256 recorded in its metadata",
        )
    key = (str(model_dir.resolve()), json.dumps(metadata, sort_keys=True), actual, fastpath.WORD_CACHE_SIZE)
    with _alive_lock:
        model = _alive.get(key)
    if model is None:
        model = _unpickle(model_dir, artifact_path, data, metadata)
        with _alive_lock:
            _alive[key] = model
    return model


def _unpickle(model_dir: Path, artifact_path: Path, data: bytes, metadata: dict[str, Any]) -> LoadedModel:
    recorded = metadata.get("sklearn_version")
    mismatch = None
    if recorded != sklearn.__version__:
        mismatch = (f"model was trained with scikit-learn {recorded}, "
                    f"running {sklearn.__version__}; predictions may differ")
    try:
        with warnings.catch_warnings():
            # A version change is reported through `sklearn_version_mismatch` instead.
            warnings.simplefilter("ignore", InconsistentVersionWarning)
            artifact = joblib.load(io.BytesIO(data))
    except Exception as exc:  # joblib/pickle raise many types for a broken file
        raise ModelError(f"model artifact won't load: {artifact_path}: {exc}",
                         reason="its artifact does not load") from exc
    if not isinstance(artifact, dict) or artifact.get("format") != ARTIFACT_FORMAT:
        raise ModelError(f"model artifact has an unknown layout: {artifact_path}",
                         reason="its artifact has an unknown layout")
    return LoadedModel(model_dir, metadata, artifact, mismatch)
