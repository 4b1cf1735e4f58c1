"""End-to-end checks on the model shipped in `model/`."""

from __future__ import annotations

from pathlib import Path

import pytest

from moderation.ml import load_model

MODEL_DIR = Path(__file__).resolve().parents[2] / "model"

pytestmark = pytest.mark.skipif(not (MODEL_DIR / "metadata.json").is_file(), reason="no shipped model in model/")


@pytest.fixture(scope="module")
def shipped():
    """Return the shipped model, loaded (hash-checked)."""
    return load_model(MODEL_DIR)


def test_shipped_model_is_small_and_current(shipped):
    assert (shipped.path / shipped.metadata["artifact"]["file"]).stat().st_size <= 25 * 2**20
    assert shipped.sklearn_version_mismatch is None
    assert shipped.approve_threshold <= shipped.decision_threshold <= shipped.reject_threshold


@pytest.mark.parametrize(("friendly", "insult"), [
    ("Vielen Dank für den informativen Beitrag, schönen Abend noch!",
     "Du bist so ein dummes Arschloch, halt einfach die Fresse."),
    pytest.param("Ich sehe das etwas anders, aber die Argumente sind gut.",
                 "Was für ein erbärmlicher Vollidiot, unfassbar.",
                 marks=pytest.mark.xfail(strict=True, reason="a known miss of the lean recipe (decision record 12): "
                                         "the insult scores 0.37; the suite's insults of people present pass 77.8 %")),
    ("Gute Besserung und alles Liebe für die Familie",
     "Du 1d10t, geh doch zurück in dein Loch, du A****loch"),
])
def test_friendly_scores_below_insult(shipped, friendly, insult):
    low, high = shipped.score(friendly), shipped.score(insult)
    assert low.toxicity < high.toxicity
    assert high.offensive and not low.offensive
    assert high.category in ("insult", "abuse", "profanity")
    assert low.category is None


@pytest.mark.parametrize(("masked", "plain"), [
    ("Du bist ein A****loch", "Du bist ein Arschloch"),
    ("Halt die Fr***e, du Ar***", "Halt die Fresse, du Arsch"),
    ("Was für eine Schei**e", "Was für eine Scheiße"),
])
def test_shipped_model_still_flags_masked_words(shipped, masked, plain):
    """Masked insults stay offensive through their character n-grams (unmasking left the recipe in record 12)."""
    restored, written = shipped.score(masked), shipped.score(plain)
    assert restored.offensive and written.offensive
    assert restored.toxicity < written.toxicity  # a mask hides some of the word's evidence


def test_shipped_highlights_name_the_insult(shipped):
    text = "Ehrlich, du bist ein V o l l i d i o t"
    score = shipped.score(text)
    assert any("V o l l i d i o t" in h.text for h in score.highlights)
    for h in score.highlights:
        assert text[h.start:h.end] == h.text


def test_the_repository_ships_one_plain_model_folder(shipped):
    """model/ is one version, model.joblib + metadata.json: promotions and their history live in the store."""
    assert sorted(p.name for p in MODEL_DIR.iterdir()) == ["metadata.json", shipped.metadata["artifact"]["file"]]
    assert shipped.path == MODEL_DIR


def test_the_shipped_model_scores_as_its_pipeline(shipped):
    """Its fast path gives the pipeline's probabilities, the category head's choice and the threat head's verdict."""
    from tests.ml.conftest import OBFUSCATED, random_texts

    model = shipped
    texts = OBFUSCATED + random_texts(150, seed=3) + ["Du bist so ein dummes Arschloch 😂😂 !!!", "Danke!"]
    expected = model.pipeline.predict_proba(texts)[:, 1]
    got = [model.score(text, explain=False).toxicity for text in texts]
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) <= 1e-9
    head, threat_head = model.category_head, model.threat_head
    assert threat_head is not None
    features = model.pipeline[:-1].transform(texts)
    labels = [str(c) for c in head.classes_]
    others = [i for i, label in enumerate(labels) if label != "threat"]  # only the threat head names a threat
    threat = threat_head.predict_proba(features)[:, 1]
    for i, (text, probability) in enumerate(zip(texts, expected, strict=True)):
        score = model.score(text)
        assert score.threat == pytest.approx(threat[i], abs=1e-9)
        assert score.threat_likely == (threat[i] >= model.threat_threshold)
        if score.threat_likely:
            expected_category = "threat"
        elif probability >= model.decision_threshold:
            expected_category = labels[max(others, key=head.predict_proba(features[i])[0].__getitem__)]
        else:
            expected_category = None
        assert score.category == expected_category

