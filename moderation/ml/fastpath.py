"""Score one comment with dictionary lookups and small vector sums from a fitted linear pipeline.

The pipeline is TextNormalizer -> FeatureUnion(TfidfVectorizer, ...) -> NBScaler or
passthrough -> LogisticRegression, optionally beside StyleFeatures of the raw text (see
`moderation.ml.pipeline.text_parts`) and EncoderFeatures (`moderation.ml.encoder`). Style
features add a constant plus one weight per count to the logit, encoder features one dot product
with the comment's encoding. Everything after normalisation is linear in the l2-normalised tf-idf values,
so per vectorizer block the logit is

    sum_j s(tf_j) * idf_j * w_j / sqrt(sum_j s(tf_j)**2 * idf_j**2)

with s(tf) = 1 + log(tf) for sublinear tf and w_j the classifier weight times the NB ratio
times the union weight. `idf * w` and `idf**2` are precomputed per feature at load time, so
scoring a text is a few dictionary lookups and vector sums, and gives the same probability
as `predict_proba` without building sparse matrices.

Both analyzers work word by word (char_wb n-grams never cross a space, word tokens never
contain one), so a word's feature ids and tokens are computed once and kept in a bounded
LRU cache: frequent words ("die", "und", "nicht") are then never sliced again. Only word
n-grams of two or more tokens, which reach across words, are looked up per text.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import accumulate

import numpy as np
from sklearn.pipeline import Pipeline

from moderation.ml.encoder import EncoderFeatures
from moderation.ml.normalize import normalize, normalize_with_offsets
from moderation.ml.pipeline import StyleFeatures, encoder_part, style_counts, text_parts

# Distinct normalised words whose analysis is kept (about 650 bytes each: some 10 MiB
# when full). Read when a scorer is built; 0 turns the cache off.
WORD_CACHE_SIZE = 16384

_NO_IDS = np.zeros(0, dtype=np.intp)


class UnsupportedPipeline(ValueError):
    """The fitted pipeline is not the linear shape the fast path understands."""


@dataclass
class _Block:
    analyzer: str  # "word" or "char_wb"
    ngram_range: tuple[int, int]
    token_re: re.Pattern | None
    vocabulary: dict[str, int]
    sublinear: bool
    offset: int  # id of the block's first feature in the scorer's numbering (char blocks first)
    size: int


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UnsupportedPipeline(message)


def char_wb_grams(word: str, min_n: int, max_n: int) -> list[str]:
    """Return sklearn's char_wb n-grams of one whitespace-free word, in its order."""
    padded = f" {word} "
    size = len(padded)
    grams = []
    for n in range(min_n, max_n + 1):
        if n >= size:  # a short word counts once, as a whole (sklearn's `offset == 0` break)
            grams.append(padded)
            break
        grams += [padded[i:i + n] for i in range(size - n + 1)]
    return grams


def _analyse_word(blocks: list[_Block], word: str) -> tuple[np.ndarray, tuple[tuple[str, ...], ...]]:
    """Return the ids of the word's own features and, per phrase block, its tokens.

    A word's own features are its char n-grams and its single tokens; word n-grams of
    two or more tokens may reach into the next word and are looked up per text.
    """
    ids: list[int] = []
    tokens = []
    for block in blocks:
        get = block.vocabulary.get
        min_n, max_n = block.ngram_range
        if block.analyzer == "word":
            toks = block.token_re.findall(word)
            if max_n > 1:
                tokens.append(tuple(toks))
            found = [feature for feature in map(get, toks) if feature is not None] if min_n == 1 else []
        else:
            padded = f" {word} "
            size = len(padded)
            if size > max_n:  # every length fits: sklearn's windows, without a list per length
                found = [feature for n in range(min_n, max_n + 1) for i in range(size - n + 1)
                         if (feature := get(padded[i:i + n])) is not None]
            else:
                found = [feature for feature in map(get, char_wb_grams(word, min_n, max_n))
                         if feature is not None]
        if block.offset and found:
            found = [feature + block.offset for feature in found]
        ids += found
    # Shared by every text that contains the word: read, never written to.
    return (np.array(ids, dtype=np.intp) if ids else _NO_IDS), tuple(tokens)


class FastScorer:
    """Pure-Python equivalent of `pipeline.predict_proba` for one text, with attributions."""

    def __init__(self, pipeline: Pipeline, category_head=None, threat_head=None, *,
                 word_cache_size: int | None = None):
        names = [name for name, _ in pipeline.steps]
        _check(names in (["normalize", "features", "nb", "clf"], ["features", "clf"]), f"unexpected steps {names}")
        if names == ["features", "clf"]:
            outer = pipeline.named_steps["features"]
            parts = [name for name, _ in outer.transformer_list]
            _check(parts in (["text", "style"], ["text", "encoder"], ["text", "style", "encoder"])
                   and not outer.transformer_weights, f"unexpected feature parts {parts}")
            _check([name for name, _ in outer.transformer_list[0][1].steps] == ["normalize", "features", "nb"],
                   "the text part must be normalize, features, nb")
            for name, part in outer.transformer_list[1:]:
                kind = {"style": StyleFeatures, "encoder": EncoderFeatures}[name]
                _check(isinstance(part, kind), f"the {name} part must be {kind.__name__}")
        normalizer, union, nb, style = text_parts(pipeline)
        encoder = encoder_part(pipeline)
        _check(getattr(normalizer, "full", True), "the normalize step must apply the full normalisation")
        self._unmask = getattr(normalizer, "unmask_", None)
        clf = pipeline.named_steps["clf"]
        _check(clf.coef_.shape[0] == 1, "the classifier must be binary")
        _check(list(clf.classes_) == [0, 1], "classes must be 0 and 1")
        n_style = 0 if style is None else style.mean_.shape[0]
        n_encoder = 0 if encoder is None else encoder.encoder_.layers["d3"].shape[1]
        n_text = clf.coef_.shape[1] - n_style - n_encoder
        scale = np.ones(n_text)
        if nb not in (None, "passthrough"):
            scale = np.asarray(nb.ratio_, dtype=np.float64)
        coef = clf.coef_[0, :n_text] * scale
        # The category head's rows and the threat head's row are stacked into one matrix of head weights:
        # their logits then cost one product with the features found, whichever heads the model has.
        heads = []
        self.category_labels = []
        if category_head is not None:
            _check(category_head.coef_.shape[1] == clf.coef_.shape[1],
                   "the category head must see the classifier's features")
            heads.append((category_head.coef_, category_head.intercept_))
            self.category_labels = [str(c) for c in category_head.classes_]
        self.has_threat = threat_head is not None
        if threat_head is not None:
            _check(threat_head.coef_.shape == (1, clf.coef_.shape[1]) and list(threat_head.classes_) == [0, 1],
                   "the threat head must be binary and see the classifier's features")
            heads.append((threat_head.coef_, threat_head.intercept_))
        self._n_categories = len(category_head.coef_) if category_head is not None else 0
        head_coef = np.vstack([np.asarray(c, dtype=np.float64) for c, _ in heads]) if heads else None
        cat_coef = None if head_coef is None else head_coef[:, :n_text] * scale
        self.category_intercepts = (np.concatenate([np.asarray(i, dtype=np.float64) for _, i in heads]) if heads
                                    else np.zeros(0))
        self.intercept = float(clf.intercept_[0])
        # Style features are linear in their counts c: weight * (c - mean) / scale. Their part of a
        # logit is a constant plus one weight per count (the category head's likewise, per category).
        self._style = None
        if style is not None:
            factor = style.weight / np.asarray(style.scale_, dtype=np.float64)
            mean = np.asarray(style.mean_, dtype=np.float64)
            per_count = clf.coef_[0, n_text:n_text + n_style] * factor
            self._style = (per_count.tolist(), float(-(per_count * mean).sum()))
            if head_coef is not None:
                cat_per_count = head_coef[:, n_text:n_text + n_style] * factor
                self._category_style = (cat_per_count, -(cat_per_count @ mean))
        # Encoder features are weight * z for the comment's 512-dimensional encoding z: their part of
        # a logit is one dot product (the category head's, one per category).
        self._encoder = None
        if encoder is not None:
            at = n_text + n_style
            self._encoder = (encoder.encoder_, clf.coef_[0, at:] * encoder.weight)
            if head_coef is not None:
                self._category_encoder = head_coef[:, at:] * encoder.weight
        weights = union.transformer_weights or {}
        vectorizers = []
        union_offset = 0
        for name, vec in union.transformer_list:
            _check(vec.analyzer in ("word", "char_wb"), f"{name}: analyzer {vec.analyzer!r}")
            _check(vec.analyzer == "word" or vec.ngram_range[0] <= 3,
                   f"{name}: char n-grams must start at length 3 or less")
            _check(not vec.lowercase and vec.strip_accents is None, f"{name}: must not preprocess")
            _check(vec.preprocessor is None and vec.tokenizer is None, f"{name}: custom callables")
            _check(vec.stop_words is None and vec.norm == "l2", f"{name}: stop words or norm")
            _check(vec.use_idf and not vec.binary, f"{name}: needs use_idf and binary=False")
            vectorizers.append((vec, union_offset, float(weights.get(name, 1.0))))
            union_offset += len(vec.vocabulary_)
        _check(union_offset == coef.shape[0], "feature count does not match the classifier")
        # Our own feature numbering puts char blocks first: the most frequent lookups (a
        # word's char n-grams) then need no offset added.
        vectorizers.sort(key=lambda item: item[0].analyzer != "char_wb")
        self.blocks: list[_Block] = []
        logit_weight, idf_squared, category_weight = [], [], []
        offset = 0
        for vec, start, factor in vectorizers:
            size = len(vec.vocabulary_)
            idf = np.asarray(vec.idf_, dtype=np.float64)
            # The union weight scales a block's values after its l2 norm, so it joins the
            # classifier weights but not the squared idf of the norm.
            logit_weight.append(coef[start:start + size] * idf * factor)
            idf_squared.append(idf * idf)
            if cat_coef is not None:
                category_weight.append(cat_coef[:, start:start + size] * idf * factor)
            self.blocks.append(_Block(
                analyzer=vec.analyzer,
                ngram_range=tuple(vec.ngram_range),
                token_re=re.compile(vec.token_pattern) if vec.analyzer == "word" else None,
                vocabulary=vec.vocabulary_,
                sublinear=bool(vec.sublinear_tf),
                offset=offset,
                size=size,
            ))
            offset += size
        self._logit_weight = np.concatenate(logit_weight)
        self._idf_squared = np.concatenate(idf_squared)
        # Feature-major, so that the rows of the features found are adjacent in memory.
        self._category_weight = (np.zeros((offset, 0)) if cat_coef is None
                                 else np.ascontiguousarray(np.concatenate(category_weight, axis=1).T))
        self._block_starts = np.array([b.offset for b in self.blocks[1:]], dtype=np.intp)
        self._linear_blocks = [b for b in self.blocks if not b.sublinear]
        # Word blocks whose n-grams cross tokens, and so words, are built per text.
        self._phrase_blocks = [b for b in self.blocks if b.analyzer == "word" and b.ngram_range[1] > 1]
        self._scratch = threading.local()
        if word_cache_size is None:
            word_cache_size = WORD_CACHE_SIZE
        # Over the blocks, not a bound method: the scorer then holds no reference to itself and is
        # freed as soon as its model is dropped (gunicorn workers freeze the cyclic collector).
        self._analyse = lru_cache(maxsize=word_cache_size)(partial(_analyse_word, self.blocks))

    def _phrases(self, analysed, ids: list[int], spread: list[tuple[int, list[int], list[int]]] | None):
        """Append the ids of word n-grams of two or more tokens; note who shares each."""
        for slot, block in enumerate(self._phrase_blocks):
            if spread is None:
                tokens = [token for _, word_tokens in analysed for token in word_tokens[slot]]
            else:
                tokens = []
                owners: list[int] = []
                for word_index, (_, word_tokens) in enumerate(analysed):
                    toks = word_tokens[slot]
                    if toks:
                        tokens += toks
                        owners += [word_index] * len(toks)
            get = block.vocabulary.get
            min_n, max_n = block.ngram_range
            for n in range(max(min_n, 2), min(max_n, len(tokens)) + 1):
                # n shifted copies of the tokens; the shortest ends the n-grams.
                grams = map(" ".join, zip(*[tokens[j:] for j in range(n)], strict=False))
                found = list(map(get, grams))
                starts = [i for i, feature in enumerate(found) if feature is not None]
                if not starts:
                    continue
                if spread is not None:
                    spread.append((n, starts, owners))
                if block.offset:
                    ids += [found[i] + block.offset for i in starts]
                else:
                    ids += [found[i] for i in starts]

    def score_normalized(self, text: str, explain: bool = False):
        """Return (logit, hits, per-word contributions or None) for normalised text.

        `hits` describes the features found, for `category_logits`.
        """
        if not text:
            return self.intercept, None, [] if explain else None
        words = text.split(" ")
        size = len(words)
        analysed = list(map(self._analyse, words))
        phrase_ids: list[int] = []
        spread = [] if explain else None
        if self._phrase_blocks:
            self._phrases(analysed, phrase_ids, spread)
        parts = [own for own, _ in analysed]
        if phrase_ids:
            parts.append(np.array(phrase_ids, dtype=np.intp))
        occurrences = np.concatenate(parts)
        count = occurrences.size
        if not count:
            return self.intercept, None, [0.0] * size if explain else None
        # Count each feature: sort, find where each run of equal ids starts.
        if explain:
            ordered = np.sort(occurrences)
        else:
            ordered = occurrences  # a fresh array, ours to sort
            ordered.sort()
        first = np.empty(count, dtype=bool)
        first[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
        run_start = np.flatnonzero(first)
        index = ordered[run_start]
        tf = np.empty(index.size, dtype=np.intp)
        np.subtract(run_start[1:], run_start[:-1], out=tf[:-1])
        tf[-1] = count - run_start[-1]
        scaled = np.log(tf)
        scaled += 1.0
        for block in self._linear_blocks:  # rare: a block without sublinear tf
            inside = (index >= block.offset) & (index < block.offset + block.size)
            scaled[inside] = tf[inside]
        weighted = self._logit_weight[index]
        squares = scaled * scaled
        squares *= self._idf_squared[index]
        # Each block is l2-normalised on its own; its features are a contiguous run of `index`.
        if len(self.blocks) == 1:
            block_start = [0]
        else:
            block_start = [0, *np.searchsorted(index, self._block_starts).tolist()]
            block_start = [lo for lo, hi in zip(block_start, [*block_start[1:], index.size], strict=True) if lo < hi]
        norms = np.sqrt(np.add.reduceat(squares, block_start))
        logit = self.intercept + float((np.add.reduceat(scaled * weighted, block_start) / norms).sum())
        hits = (index, scaled, norms, block_start)
        if not explain:
            return logit, hits, None
        # Each occurrence carries an equal share of its feature's contribution.
        factor = scaled * weighted
        factor /= tf
        for lo, hi, norm in zip(block_start, [*block_start[1:], index.size], norms.tolist(), strict=True):
            factor[lo:hi] /= norm
        # Map each occurrence to its feature's factor through a per-thread scratch vector
        # over all features: only the entries just written are read back.
        dense = getattr(self._scratch, "dense", None)
        if dense is None:
            dense = self._scratch.dense = np.empty(self._logit_weight.size)
        dense[index] = factor
        share = dense[occurrences]
        offset = count - len(phrase_ids)
        lengths = [own.size for own in parts[:size]]
        if all(lengths):  # each word's own features are one run of `occurrences`
            contributions = np.add.reduceat(share[:offset], list(accumulate(lengths, initial=0))[:-1])
        else:
            owner = np.repeat(np.arange(size), lengths)
            contributions = np.bincount(owner, weights=share[:offset], minlength=size)
        for n, starts, owners in spread:
            # A word n-gram's share is split evenly over the n tokens it is made of.
            part = share[offset:offset + len(starts)] / n
            offset += len(starts)
            token_owner = np.array(owners, dtype=np.intp)
            first_token = np.array(starts, dtype=np.intp)
            for j in range(n):
                contributions += np.bincount(token_owner[first_token + j], weights=part, minlength=size)
        return logit, hits, contributions.tolist()

    def category_logits(self, hits, counts: tuple[float, ...] | None = None,
                        encoded: np.ndarray | None = None) -> list[float]:
        """Return the category head's logits for the features found by `score_normalized`
        (and, for a model with style or encoder features, the text's `style_counts` and encoding)."""
        return self.head_logits(hits, counts, encoded)[:self._n_categories]

    def threat_logit(self, hits, counts: tuple[float, ...] | None = None,
                     encoded: np.ndarray | None = None) -> float | None:
        """Return the threat head's logit for the same inputs as `category_logits` (None without a threat head)."""
        return self.head_logits(hits, counts, encoded)[-1] if self.has_threat else None

    def head_logits(self, hits, counts: tuple[float, ...] | None = None,
                    encoded: np.ndarray | None = None) -> list[float]:
        """Return the category head's logits followed by the threat head's, in one pass (see `category_logits`)."""
        if not self.category_intercepts.size:
            return []
        logits = self.category_intercepts
        if hits is not None:
            index, scaled, norms, block_start = hits
            values = scaled.copy()
            for lo, hi, norm in zip(block_start, [*block_start[1:], index.size], norms.tolist(), strict=True):
                values[lo:hi] /= norm
            logits = logits + values @ self._category_weight[index]
        if self._style is not None:
            per_count, constant = self._category_style
            logits = logits + constant + per_count @ np.asarray(counts, dtype=np.float64)
        if self._encoder is not None:
            logits = logits + self._category_encoder @ encoded
        return logits.tolist()

    def style_logit(self, text: str) -> tuple[float, tuple[float, ...] | None]:
        """Return the style features' part of the logit of a raw text and its counts (0 and None without)."""
        if self._style is None:
            return 0.0, None
        per_count, constant = self._style
        counts = style_counts(text)
        return constant + sum(w * c for w, c in zip(per_count, counts, strict=True)), counts

    def encoder_logit(self, text: str) -> tuple[float, np.ndarray | None]:
        """Return the encoder features' part of the logit of a raw text and its encoding (0 and None without)."""
        if self._encoder is None:
            return 0.0, None
        encoder, weights = self._encoder
        encoded = encoder.encode(text).astype(np.float64)
        return float(weights @ encoded), encoded

    def probability(self, text: str) -> float:
        """Return the offensive-class probability of a raw text, as predict_proba would."""
        logit, _, _ = self.score_normalized(normalize(text, self._unmask))
        return _sigmoid(logit + self.style_logit(text)[0] + self.encoder_logit(text)[0])

    def explain(self, text: str):
        """Return (probability, hits, [(start, end, weight)] in the original text).

        `hits` is what `category_logits` takes: (n-gram hits, style counts, encoding). The words'
        weights add up to the n-gram part of the logit; the style and encoder parts belong to no word.
        """
        norm, starts, ends = normalize_with_offsets(text, self._unmask)
        logit, hits, contributions = self.score_normalized(norm, explain=True)
        style, counts = self.style_logit(text)
        encoder, encoded = self.encoder_logit(text)
        spans = []
        begin = 0
        for word, weight in zip(norm.split(" ") if norm else (), contributions, strict=True):
            end = begin + len(word)
            # Offsets are non-decreasing, so a word's original span runs from its first
            # character's start to its last character's end.
            spans.append((starts[begin], ends[end - 1], weight))
            begin = end + 1
        return _sigmoid(logit + style + encoder), (hits, counts, encoded), spans

    def classify(self, text: str):
        """Return (probability, hits) for a raw text without attributions (hits as for `explain`)."""
        logit, hits, _ = self.score_normalized(normalize(text, self._unmask))
        style, counts = self.style_logit(text)
        encoder, encoded = self.encoder_logit(text)
        return _sigmoid(logit + style + encoder), (hits, counts, encoded)


def _sigmoid(z: float) -> float:
    # Same formula as scipy.special.expit, stable for large |z|.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)
