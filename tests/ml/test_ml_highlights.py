"""Highlights that explain a held comment: only the words that carried its score over the approve threshold."""

from __future__ import annotations

import math

import pytest

from .conftest import random_texts


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def word_weights(model, text: str) -> dict[tuple[int, int], float]:
    """Every word's logit contribution, merged per span as the model merges them."""
    _, _, spans = model._fast.explain(text)
    merged: dict[tuple[int, int], float] = {}
    for start, end, weight in spans:
        merged[(start, end)] = merged.get((start, end), 0.0) + weight
    return merged


@pytest.mark.parametrize("text", ["Du bist ein Idiot", "So ein dummer Vollidiot", "Verpiss dich, du Penner",
                                  "Halt die Fresse, du Arschloch", "Du Trottel hast keine Ahnung"])
def test_highlights_are_the_fewest_strongest_words_that_cross_the_threshold(tiny_model, text):
    toxicity = tiny_model.score(text).toxicity
    threshold = toxicity * 0.8  # held, with a margin that some but not all of its words make up
    shown = tiny_model.score(text, above=threshold).highlights
    assert shown, "a comment above the threshold because of its words shows them"
    margin = logit(toxicity) - logit(threshold)
    weights = sorted(word_weights(tiny_model, text).values(), reverse=True)
    positive = [w for w in weights if w > 0]
    assert sum(positive) > margin
    shown_weights = sorted((h.weight for h in shown), reverse=True)
    # Without the shown words the comment would fall below the threshold; without all but the weakest, not.
    assert sum(shown_weights) > margin - 1e-3
    assert sum(shown_weights[:-1]) <= margin + 1e-3
    assert shown_weights == pytest.approx(positive[:len(shown_weights)], abs=1e-3)
    for h in shown:
        assert text[h.start:h.end] == h.text and h.weight > 0


def crossing_weights(model, text: str, threshold: float) -> list[float]:
    """The weights of the fewest strongest words without which the score falls below `threshold`."""
    toxicity = model.score(text).toxicity
    if threshold <= 0 or toxicity < threshold:
        return []
    margin = logit(toxicity) - logit(threshold)
    chosen, removed = [], 0.0
    for weight in sorted((w for w in word_weights(model, text).values() if w > 0), reverse=True):
        if removed > margin:
            break
        chosen.append(weight)
        removed += weight
    return chosen if removed > margin else []


def test_below_the_threshold_nothing_is_highlighted(tiny_model):
    text = "Du bist ein Idiot"
    toxicity = tiny_model.score(text).toxicity
    assert tiny_model.score(text).highlights, "the unconditioned highlights are not empty"
    assert tiny_model.score(text, above=min(0.999, toxicity + 0.05)).highlights == ()


@pytest.mark.parametrize("case", ["zero_threshold", "words_not_needed"])
def test_where_no_word_carried_it_over_the_words_that_make_it_offensive_are_shown(tiny_model, case):
    text = "Du bist ein Idiot"
    toxicity = tiny_model.score(text).toxicity
    assert toxicity >= tiny_model.decision_threshold
    positive = sum(w for w in word_weights(tiny_model, text).values() if w > 0)
    threshold = {
        # An approve threshold of 0 publishes nothing: the comment waits whatever its words.
        "zero_threshold": 0.0,
        # Still above the threshold with every positive word removed: the words did not put it there.
        "words_not_needed": 1 / (1 + math.exp(-(logit(toxicity) - positive - 0.5))),
    }[case]
    shown = sorted((h.weight for h in tiny_model.score(text, above=threshold).highlights), reverse=True)
    expected = crossing_weights(tiny_model, text, tiny_model.decision_threshold)
    assert expected and shown == pytest.approx(expected, abs=1e-3)


def test_harmless_comments_show_no_highlights_at_any_threshold(tiny_model):
    for text in ["Danke für den guten Artikel", "Wann kommt die nächste Folge?", *random_texts(30, seed=5)]:
        toxicity = tiny_model.score(text).toxicity
        for threshold in (0.0, 0.05, toxicity, 0.5):
            shown = tiny_model.score(text, above=threshold).highlights
            if toxicity < tiny_model.decision_threshold and crossing_weights(tiny_model, text, threshold) == []:
                assert shown == ()
            for h in shown:
                assert toxicity >= threshold and h.weight > 0
