"""The threat head: weights, its false-alarm threshold, what training records, and how scoring serves it."""

from __future__ import annotations

import json
import subprocess
import sys

import joblib
import numpy as np
import pytest

from moderation.ml import load_model
from moderation.ml.model import file_sha256
from moderation.ml.threat import (
    CONTRASTS,
    MAX_FALSE_ALARM_RATE,
    OTHERS,
    THREATS,
    false_alarm_threshold,
    row_kinds,
    row_weights,
)
from tests.conftest import CONTRASTS as CONTRAST_TEXTS
from tests.conftest import FRIENDLY, TOXIC
from tests.conftest import THREATS as THREAT_TEXTS
from tests.servers import ROOT


@pytest.mark.parametrize("negatives", [
    np.linspace(0, 1, 1000),
    np.linspace(0, 1, 99),  # 1 % of 99 is less than one row: none may pass
    np.array([0.2] * 50 + [0.9] * 3 + [0.3] * 247),  # ties at the cut
    np.random.default_rng(0).beta(2, 5, 5000),
])
def test_the_threshold_lets_at_most_the_allowed_share_of_negatives_through(negatives):
    threshold = false_alarm_threshold(negatives)
    assert np.mean(negatives >= threshold) <= MAX_FALSE_ALARM_RATE
    # ...and is the lowest such: the highest negative below it would pass at its own score.
    below = negatives[negatives < threshold]
    if below.size:
        assert np.mean(negatives >= below.max()) > MAX_FALSE_ALARM_RATE


def test_threats_contrasts_and_the_rest_weigh_a_third_each():
    categories = ["threat"] * 2 + [None] * 4 + [None] * 10 + ["insult"] * 4
    files = ["threats.jsonl"] * 6 + ["germeval.csv"] * 14
    kinds = row_kinds(categories, files)
    assert kinds.tolist() == [THREATS] * 2 + [CONTRASTS] * 4 + [OTHERS] * 14
    weights = row_weights(kinds)
    totals = [weights[kinds == kind].sum() for kind in (THREATS, CONTRASTS, OTHERS)]
    assert totals == pytest.approx([len(kinds) / 3] * 3)
    # Without file names every row is of one file: threats and the rest half each.
    halves = row_weights(row_kinds(categories, None))
    assert halves[:2].sum() == pytest.approx(len(kinds) / 2)


def test_training_fits_the_head_and_records_its_out_of_fold_figures(threat_model_dir):
    metadata = json.loads((threat_model_dir / "metadata.json").read_text())
    threat = metadata["threat"]
    assert threat["rows"] == {"threat": len(THREAT_TEXTS), "contrast": len(CONTRAST_TEXTS),
                              "other": len(FRIENDLY) + len(TOXIC)}
    measured = threat["out_of_fold"]
    assert 0 < threat["threshold"] < 1 and measured["folds"] >= 2
    assert measured["false_alarm_rate"] <= threat["max_false_alarm_rate"] == MAX_FALSE_ALARM_RATE
    assert 0 <= measured["recall"] <= 1 and "optimistic" in measured["method"]


def test_the_fast_path_gives_the_heads_probability(threat_model_dir):
    model = load_model(threat_model_dir)
    texts = FRIENDLY + TOXIC + THREAT_TEXTS + CONTRAST_TEXTS + ["", "Ich weiß, wo du wohnst.", "😡 !!!"]
    expected = model.threat_head.predict_proba(model.pipeline[:-1].transform(texts))[:, 1]
    for text, probability in zip(texts, expected, strict=True):
        for explain in (False, True):
            score = model.score(text, explain=explain)
            assert score.threat == pytest.approx(probability, abs=1e-9), text
            assert score.threat_likely == (probability >= model.threat_threshold)
            assert score.category == "threat" if score.threat_likely else score.category != "threat"
    # Its training threats score above every contrast, and most are flagged (the threshold comes from out-of-fold
    # scores, so a training threat may fall just below it); no contrast or friendly comment is.
    threats = [model.score(text, explain=False) for text in THREAT_TEXTS]
    others = [model.score(text, explain=False) for text in CONTRAST_TEXTS + FRIENDLY]
    assert min(s.threat for s in threats) > max(s.threat for s in others)
    assert sum(s.threat_likely for s in threats) >= 0.8 * len(threats)
    assert not any(s.threat_likely for s in others)


def test_too_few_threat_rows_train_no_head(tiny_model_dir, tiny_model):
    metadata = json.loads((tiny_model_dir / "metadata.json").read_text())
    assert "at least 20" in metadata["threat"]["skipped"] and metadata["threat"]["rows"]["threat"] == 0
    assert not tiny_model.has_threat_head
    score = tiny_model.score("Ich weiß, wo du wohnst.")
    assert (score.threat, score.threat_likely) == (None, False)


def _rewrite(folder, artifact_change, metadata_change) -> None:
    metadata = json.loads((folder / "metadata.json").read_text())
    path = folder / metadata["artifact"]["file"]
    artifact = joblib.load(path)
    artifact_change(artifact)
    joblib.dump(artifact, path)
    metadata_change(metadata)
    metadata["artifact"]["sha256"] = file_sha256(path)
    (folder / "metadata.json").write_text(json.dumps(metadata))


def test_a_model_stored_before_threat_heads_loads_without_one(tmp_path, threat_model_dir):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(threat_model_dir, old)
    _rewrite(old, lambda artifact: artifact.pop("threat_head"), lambda metadata: metadata.pop("threat"))
    model = load_model(old)
    assert not model.has_threat_head and model.score(THREAT_TEXTS[0]).threat is None
    # A head whose threshold the metadata does not record is not served either.
    partial = tmp_path / "partial"
    shutil.copytree(threat_model_dir, partial)
    _rewrite(partial, lambda artifact: None, lambda metadata: metadata["threat"].pop("threshold"))
    assert not load_model(partial).has_threat_head


@pytest.mark.parametrize("which", ["threat", "none"])
def test_threat_eval_prints_the_recorded_figures_and_the_suites_rates(which, threat_model_dir, tiny_model_dir):
    model = threat_model_dir if which == "threat" else tiny_model_dir
    done = subprocess.run([sys.executable, "benchmarks/threat_eval.py", "--model", str(model)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    if which == "none":
        assert done.returncode == 1 and "no threat head" in done.stdout
        return
    assert done.returncode == 0, done.stderr[-3000:]
    recorded = json.loads((model / "metadata.json").read_text())["threat"]
    assert f'"recall": {recorded["out_of_fold"]["recall"]}' in done.stdout
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[-15:]}
    assert rows["threat"][-1] == "recall" and rows["harmless"][-2:] == ["false", "alarms"]


def test_a_site_corrected_model_keeps_the_priors_threat_head(tmp_path, threat_model_dir):
    """Retraining's correction replaces the classifier only; the model it writes serves the prior's threat head."""
    from moderation.ml import site

    prior = load_model(threat_model_dir)
    kept = {key: value for key, value in prior.metadata.items() if key not in ("version", "artifact")}
    site.write_model(tmp_path / "corrected", prior.pipeline, prior.category_head, kept,
                     threat_head=prior.threat_head)
    corrected = load_model(tmp_path / "corrected")
    assert corrected.has_threat_head and corrected.threat_threshold == prior.threat_threshold
    assert corrected.score(THREAT_TEXTS[0]).threat == pytest.approx(prior.score(THREAT_TEXTS[0]).threat)
