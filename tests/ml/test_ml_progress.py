"""Progress of the long phases: each reports (phase, done, total) from 0 up to total, as the work gets done."""

from __future__ import annotations

import numpy as np
import pytest

from moderation.ml import encoder as encoder_module
from moderation.ml import train
from moderation.ml.progress import counted, score_in_batches

from .conftest import TINY

TEXTS = [text for text, _, _ in TINY]
LABELS = np.array([label for _, label, _ in TINY])
GROUPS = [f"g{i}" for i in range(len(TEXTS))]
NO_ENCODER = {"min_df": 1, "max_df": 1.0, "encoder_weight": None}


def _recorder() -> tuple[list[tuple[str, int | None, int | None]], object]:
    calls = []

    def progress(message: str, done: int | None = None, total: int | None = None) -> None:
        calls.append((message, done, total))

    return calls, progress


def _counts(calls, phase: str) -> list[tuple[int, int]]:
    """The (done, total) reports of the counted phase whose name starts with `phase`."""
    return [(done, total) for message, done, total in calls if done is not None and message.startswith(phase)]


@pytest.mark.parametrize(("total", "steps", "expected"), [
    (0, 100, [0]),
    (3, 100, [0, 1, 2, 3]),
    (10, 5, [0, 2, 4, 6, 8, 10]),
    (7, 3, [0, 2, 4, 6, 7]),
])
def test_counted_reports_the_start_at_most_steps_times_and_the_end(total, steps, expected):
    calls, progress = _recorder()
    assert list(counted(list(range(total)), progress, "zählen", steps=steps)) == list(range(total))
    assert calls == [("zählen", done, total) for done in expected]


def test_counted_reports_an_item_done_only_once_it_was_handled():
    calls, progress = _recorder()
    for item in counted(["a", "b"], progress, "p"):
        assert calls[-1][1] == ["a", "b"].index(item)  # not yet counted while the caller works on it


def test_score_in_batches_keeps_the_order_and_counts_rows():
    calls, progress = _recorder()
    texts = ["a", "bb", "ccc", "", "eeeee", "ffffff", "g"]
    scores = score_in_batches(lambda batch: np.array([len(t) for t in batch], dtype=float), texts, progress,
                              "scoring", size=3)
    assert scores.tolist() == [1, 2, 3, 0, 5, 6, 1]
    assert calls == [("scoring", done, 7) for done in (0, 3, 6, 7)]


def test_cross_fit_in_this_process_reports_each_finished_fit():
    calls, progress = _recorder()
    oof, folds, final = train.cross_fit(TEXTS, LABELS, GROUPS, NO_ENCODER, seed=0, n_jobs=1, progress=progress)
    assert folds == 5 and final is not None and not np.isnan(oof).any()
    assert [m for m, d, _ in calls if d is not None] == ["fitting the final model and 5 folds"] * 7
    assert _counts(calls, "fitting") == [(done, 6) for done in range(7)]
    calls.clear()
    train.out_of_fold_scores(TEXTS, LABELS, GROUPS, NO_ENCODER, seed=0, n_jobs=1, progress=progress)
    assert calls == [("fitting 5 folds", done, 5) for done in range(6)]


def test_cross_fit_in_two_workers_reports_the_encoder_in_each_worker_then_every_fit(monkeypatch):
    """Each worker process distils the encoder once (several seconds): that shows as its own phase."""
    params = {"min_df": 1, "max_df": 1.0, "encoder_weight": 0.3}  # not in the shipped recipe, still supported
    expected, _ = train.out_of_fold_scores(TEXTS, LABELS, GROUPS, params, seed=0, n_jobs=1)
    monkeypatch.setattr(train, "SMALL_DATA_ROWS", 0)  # two real worker processes even for these few rows
    calls, progress = _recorder()
    oof, folds, final = train.cross_fit(TEXTS, LABELS, GROUPS, params, seed=0, n_jobs=2, progress=progress)
    assert folds == 5 and np.allclose(oof, expected, atol=1e-6) and final is not None
    counted_calls = [(m, d) for m, d, _ in calls if d is not None]
    warm = [d for m, d in counted_calls if m == "distilling the sentence encoder in each worker"]
    fits = [d for m, d in counted_calls if m == "fitting the final model and 5 folds"]
    # A worker that distilled in an earlier run of this process is quick, so the phases may overlap.
    assert warm == [0, 1, 2] and fits == list(range(7)) and len(counted_calls) == 10
    assert counted_calls[0] == ("distilling the sentence encoder in each worker", 0)


def test_distilling_the_encoder_reports_its_word_pieces_once_per_process(monkeypatch):
    monkeypatch.setattr(encoder_module, "_DISTILLED", None)  # restored afterwards: other tests keep the real one
    # The token network's arithmetic is tested in test_ml_encoder; here only the counting matters.
    monkeypatch.setattr(encoder_module, "_piece_vectors",
                        lambda backend, module, ids: np.zeros((len(ids), 512), dtype=np.float32))
    calls, progress = _recorder()
    base = encoder_module.distilled(progress)
    pieces = base.source["pieces"]
    counts = _counts(calls, "distilling the sentence encoder")
    assert counts[0] == (0, pieces) and counts[-1] == (pieces, pieces) and len(counts) > 10
    assert [d for d, _ in counts] == sorted({d for d, _ in counts})
    calls.clear()
    assert encoder_module.distilled(progress) is base and calls == []  # done once per process
