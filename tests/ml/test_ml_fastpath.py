"""The fast path gives the pipeline's probabilities and explains them with original spans."""

from __future__ import annotations

import functools
import math
import pickle

import numpy as np
import pytest

from moderation.ml.fastpath import FastScorer, UnsupportedPipeline, char_wb_grams
from moderation.ml.normalize import normalize
from moderation.ml.pipeline import build_category_head, build_pipeline, style_counts, text_parts

from .conftest import OBFUSCATED, TINY, random_texts

# Rows whose emoji and "!!" runs vary, so that every style count gets a weight of its own.
STYLE_ROWS = [
    ("Hahaha 😂😂😂 was für ein Clown!!!", 1, "insult"),
    ("Ihr seid doch alle Idioten?!?! 🤡", 1, "insult"),
    ("Super Beitrag 👍 danke!!", 0, None),
    ("Schöne Grüße aus Köln ☀️", 0, None),
]
PROBES = OBFUSCATED + [t for t, _, _ in TINY + STYLE_ROWS] + random_texts(300, seed=7)
TINY_PARAMS = {"min_df": 1, "max_df": 1.0}
ROWS = TINY + STYLE_ROWS


def _fit(params: dict):
    texts = [t for t, _, _ in ROWS]
    labels = [y for _, y, _ in ROWS]
    return build_pipeline({**TINY_PARAMS, **params}).fit(texts, labels)


def test_every_style_count_carries_weight():
    # Otherwise the equivalence tests below could not tell the counts apart. (Without encoder features
    # the style counts are the last three columns.)
    assert np.all(_fit({"style_weight": 0.1, "encoder_weight": None})["clf"].coef_[0, -3:] != 0)


def test_line_break_markers_are_not_words():
    assert style_counts("Erste Zeile|LBR|zweite Zeile") == style_counts("Erste Zeile\nzweite Zeile")
    assert style_counts("Na toll!!! 😂😂 Echt?!") == (math.log1p(3), math.log1p(2), math.log1p(2))


@pytest.mark.parametrize("params", [
    {},
    {"nb_alpha": 1.0},
    {"char_ngram_range": (1, 3), "word_ngram_range": (1, 1)},
    {"char_ngram_range": (3, 6), "word_ngram_range": (2, 3), "C": 100.0},
    {"class_weight": None, "nb_alpha": 0.5},
    {"word_weight": 1.0},
    {"word_weight": 2.5, "word_ngram_range": (1, 3)},
    {"style_weight": 0.1},
    {"style_weight": 0.1, "nb_alpha": 0.07},
    {"style_weight": 3.0, "nb_alpha": None},
    {"encoder_weight": 0.3},
    {"encoder_weight": 2.0, "style_weight": None, "encoder_dims": 16},
    # The recipe before 2026-12-07 (decision record 12): sites may still serve models trained by it.
    {"word_ngram_range": (1, 2), "char_ngram_range": (3, 5), "nb_alpha": 0.07, "style_weight": 0.1,
     "encoder_weight": 0.3, "unmask": True},
])
def test_fast_path_equals_predict_proba(params):
    pipeline = _fit(params)
    fast = FastScorer(pipeline)
    expected = pipeline.predict_proba(PROBES)[:, 1]
    plain = np.array([fast.probability(t) for t in PROBES])
    explained = np.array([fast.explain(t)[0] for t in PROBES])
    np.testing.assert_allclose(plain, expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(explained, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("cache", [0, 2, None])
def test_word_cache_changes_nothing(cache):
    pipeline = _fit({})
    reference = FastScorer(pipeline, word_cache_size=0)
    fast = FastScorer(pipeline, word_cache_size=cache)
    for text in PROBES + PROBES[::-1]:
        assert fast.explain(text)[::2] == reference.explain(text)[::2]
        assert fast.probability(text) == reference.probability(text)


@pytest.mark.parametrize("params", [{}, {"word_ngram_range": (2, 3)}, {"char_ngram_range": (1, 3)}])
def test_word_contributions_add_up_to_the_logit(params):
    fast = FastScorer(_fit(params))
    for text in PROBES:
        logit, _, contributions = fast.score_normalized(normalize(text), explain=True)
        assert len(contributions) == (len(normalize(text).split(" ")) if normalize(text) else 0)
        assert sum(contributions) == pytest.approx(logit - fast.intercept, abs=1e-9)


# The n-gram union's parameters, in a pipeline with style (or encoder) features and in one without.
UNION = {None: "features__", 0.1: "features__text__features__"}


@pytest.mark.parametrize("style", UNION)
def test_fast_path_handles_a_block_without_sublinear_tf(style):
    pipeline = build_pipeline({**TINY_PARAMS, "style_weight": style, "encoder_weight": style})
    pipeline.set_params(**{f"{UNION[style]}word__sublinear_tf": False})
    pipeline.fit([t for t, _, _ in ROWS], [y for _, y, _ in ROWS])
    fast = FastScorer(pipeline)
    expected = pipeline.predict_proba(PROBES)[:, 1]
    np.testing.assert_allclose([fast.explain(t)[0] for t in PROBES], expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("style", UNION)
def test_fast_path_honours_union_weights(style):
    pipeline = _fit({"style_weight": style, "encoder_weight": style})
    pipeline.set_params(**{f"{UNION[style]}transformer_weights": {"word": 0.5, "char": 2.0}})
    expected = pipeline.predict_proba(PROBES)[:, 1]
    got = [FastScorer(pipeline).probability(t) for t in PROBES]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


@functools.cache
def _char_analyzer(ngram_range: tuple[int, int]):
    """The analyzer of the char vectorizer of a pipeline fitted with these n-gram lengths (once each)."""
    return text_parts(_fit({"char_ngram_range": ngram_range}))[1].transformer_list[1][1].build_analyzer()


@pytest.mark.parametrize("ngram_range", [(2, 5), (1, 3), (3, 6)])
@pytest.mark.parametrize("text", PROBES[:60])
def test_char_ngrams_match_sklearn_analyzer(text, ngram_range):
    norm = normalize(text)
    ours = [g for word in norm.split(" ") if word for g in char_wb_grams(word, *ngram_range)]
    assert ours == _char_analyzer(ngram_range)(norm)


@pytest.mark.parametrize(("style", "encoder"), [(None, None), (0.1, None), (0.1, 0.5), (None, 0.5)])
def test_category_logits_match_category_head(style, encoder):
    pipeline = _fit({"nb_alpha": 1.0, "style_weight": style, "encoder_weight": encoder})
    rows = [(t, c) for t, y, c in ROWS if y]
    features = pipeline[:-1].transform([t for t, _ in rows])
    head = build_category_head().fit(features, [c for _, c in rows])
    fast = FastScorer(pipeline, head)
    expected = head.decision_function(pipeline[:-1].transform(PROBES[:50]))
    got = [fast.category_logits(*fast.classify(t)[1]) for t in PROBES[:50]]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_explanations_are_spans_of_the_original_text():
    fast = FastScorer(_fit({}))
    for text in PROBES:
        _, _, spans = fast.explain(text)
        assert len(spans) == (len(normalize(text).split(" ")) if normalize(text) else 0)
        for start, end, weight in spans:
            assert 0 <= start < end <= len(text)
            assert isinstance(weight, float)


@pytest.mark.parametrize(("text", "originals"), [
    ("Du bist ein I d i o t!", ["Du", "bist", "ein", "I d i o t!"]),
    ("Typisch L-ü-g-e-n-p-r-e-s-s-e, echt", ["Typisch", "L-ü-g-e-n-p-r-e-s-s-e,", "echt"]),
    ("@USER du   1d10t 😡", ["@USER", "du", "1d10t", "😡"]),
])
def test_explanation_spans_cover_the_original_words(text, originals):
    _, _, spans = FastScorer(_fit({})).explain(text)
    assert [text[start:end] for start, end, _ in spans] == originals


def test_unsupported_pipeline_is_refused():
    pipeline = _fit({})
    text_parts(pipeline)[1].transformer_list[1][1].set_params(analyzer="char")
    with pytest.raises(UnsupportedPipeline, match="analyzer"):
        FastScorer(pipeline)


def test_restored_masks_score_like_the_word_on_both_paths():
    # Written for this test: "Arschloch" and "Fresse" in three offensive rows each, so masks resolve. (Unmasking is
    # off in the shipped recipe since 2026-12-07; models trained with it are still served.)
    rows = ROWS + [("Du Arschloch", 1, "profanity"), ("Halt die Fresse, Arschloch", 1, "profanity"),
                   ("Fresse, sonst gibts was", 1, "profanity"), ("Arschloch, halt die Fresse", 1, "profanity")]
    pipeline = build_pipeline({**TINY_PARAMS, "unmask": True}).fit([t for t, _, _ in rows], [y for _, y, _ in rows])
    assert text_parts(pipeline)[0].transform(["Du A****loch", "Fr***e"]) == ["du arschloch", "fresse"]
    fast = FastScorer(pipeline)
    masked = ["Du A****loch", "Halt die Fr***e, A*loch!", "Lehrer*innen", "Ar***", "So ein Arsch****"]
    probes = masked + PROBES
    expected = pipeline.predict_proba(probes)[:, 1]
    np.testing.assert_allclose([fast.probability(t) for t in probes], expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose([fast.explain(t)[0] for t in probes], expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose([fast.classify(t)[0] for t in probes], expected, rtol=0, atol=1e-9)
    stored = pickle.loads(pickle.dumps(pipeline))  # as joblib stores the artifact
    np.testing.assert_allclose(stored.predict_proba(probes)[:, 1], expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose([FastScorer(stored).probability(t) for t in probes], expected, rtol=0, atol=1e-9)
    assert fast.probability("Du A****loch") == pytest.approx(fast.probability("Du Arschloch"), abs=0.05)
    assert fast.probability("Du A****loch") > fast.probability("Du a*b*c")
    _, _, spans = fast.explain("Halt die Fr***e, A*loch!")
    assert [text for text in ("Halt die Fr***e, A*loch!"[s:e] for s, e, _ in spans)] == [
        "Halt", "die", "Fr***e,", "A*loch!"]
