"""Score one comment with plain Python lookups derived from a fitted linear pipeline.

The pipeline is TextNormalizer -> FeatureUnion(TfidfVectorizer, ...) -> NBScaler or
passthrough -> LogisticRegression. Everything after normalisation is linear in the
l2-normalised tf-idf values, so per vectorizer block the logit is

    sum_j s(tf_j) * idf_j * w_j / sqrt(sum_j s(tf_j)**2 * idf_j**2)

with s(tf) = 1 + log(tf) for sublinear tf and w_j the classifier weight times the NB ratio
times the union weight. `idf * w` and `idf**2` are precomputed per feature at load time, so
scoring a text is a few dictionary lookups and vector sums, and gives the same probability
as `predict_proba` without building sparse matrices.

Both analyzers work word by word (char_wb n-grams never cross a space, word tokens never
contain one), so a word's char feature ids and tokens are computed once and kept in a
bounded LRU cache: frequent words ("die", "und", "nicht") are then never sliced again.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from sklearn.pipeline import Pipeline

from moderation.ml.normalize import normalize, normalize_with_offsets

# Distinct normalised words whose analysis is kept; ~1 KiB each at most, most far smaller.
WORD_CACHE_SIZE = 16384

_NO_IDS = np.zeros(0, dtype=np.intp)
_NO_IDS.flags.writeable = False


class UnsupportedPipeline(ValueError):
    """The fitted pipeline is not the linear shape the fast path understands."""


@dataclass
class _Block:
    analyzer: str  # "word" or "char_wb"
    ngram_range: tuple[int, int]
    token_re: re.Pattern | None
    vocabulary: dict[str, int]
    sublinear: bool
    logit_weight: np.ndarray  # idf x coef x NB ratio x union weight, per feature
    idf_squared: np.ndarray  # the squared norm's per-feature factor
    category_weight: np.ndarray  # (n_categories, n_features): idf x category coef x ratio x union weight


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


class FastScorer:
    """Pure-Python equivalent of `pipeline.predict_proba` for one text, with attributions."""

    def __init__(self, pipeline: Pipeline, category_head=None, *, word_cache_size: int = WORD_CACHE_SIZE):
        names = [name for name, _ in pipeline.steps]
        _check(names == ["normalize", "features", "nb", "clf"], f"unexpected steps {names}")
        _check(getattr(pipeline.named_steps["normalize"], "full", True),
               "the normalize step must apply the full normalisation")
        union = pipeline.named_steps["features"]
        nb = pipeline.named_steps["nb"]
        clf = pipeline.named_steps["clf"]
        _check(clf.coef_.shape[0] == 1, "the classifier must be binary")
        _check(list(clf.classes_) == [0, 1], "classes must be 0 and 1")
        scale = np.ones(clf.coef_.shape[1])
        if nb not in (None, "passthrough"):
            scale = np.asarray(nb.ratio_, dtype=np.float64)
        coef = clf.coef_[0] * scale
        cat_coef = None
        if category_head is not None:
            cat_coef = np.asarray(category_head.coef_, dtype=np.float64) * scale
            self.category_intercepts = np.array(category_head.intercept_, dtype=np.float64)
            self.category_labels = [str(c) for c in category_head.classes_]
        else:
            self.category_intercepts = np.zeros(0)
            self.category_labels = []
        self.intercept = float(clf.intercept_[0])
        weights = union.transformer_weights or {}
        self.blocks: list[_Block] = []
        offset = 0
        for name, vec in union.transformer_list:
            _check(vec.analyzer in ("word", "char_wb"), f"{name}: analyzer {vec.analyzer!r}")
            _check(vec.analyzer == "word" or vec.ngram_range[0] <= 3,
                   f"{name}: char n-grams must start at length 3 or less")
            _check(not vec.lowercase and vec.strip_accents is None, f"{name}: must not preprocess")
            _check(vec.preprocessor is None and vec.tokenizer is None, f"{name}: custom callables")
            _check(vec.stop_words is None and vec.norm == "l2", f"{name}: stop words or norm")
            _check(vec.use_idf and not vec.binary, f"{name}: needs use_idf and binary=False")
            size = len(vec.vocabulary_)
            factor = float(weights.get(name, 1.0))
            idf = np.asarray(vec.idf_, dtype=np.float64)
            cats = (np.zeros((0, size)) if cat_coef is None
                    else np.ascontiguousarray(cat_coef[:, offset:offset + size] * factor * idf))
            self.blocks.append(_Block(
                analyzer=vec.analyzer,
                ngram_range=tuple(vec.ngram_range),
                token_re=re.compile(vec.token_pattern) if vec.analyzer == "word" else None,
                vocabulary=vec.vocabulary_,
                sublinear=bool(vec.sublinear_tf),
                logit_weight=np.ascontiguousarray(coef[offset:offset + size] * factor * idf),
                idf_squared=idf * idf,
                category_weight=cats,
            ))
            offset += size
        _check(offset == coef.shape[0], "feature count does not match the classifier")
        self._analyse = lru_cache(maxsize=word_cache_size)(self._analyse_word)

    def _analyse_word(self, word: str) -> tuple:
        """Return, per block, the word's known char n-gram ids (array) or its tokens (tuple)."""
        out = []
        for block in self.blocks:
            if block.analyzer == "word":
                out.append(tuple(block.token_re.findall(word)))
                continue
            get = block.vocabulary.get
            ids = [i for i in map(get, char_wb_grams(word, *block.ngram_range)) if i is not None]
            if ids:
                array = np.array(ids, dtype=np.intp)
                array.flags.writeable = False  # shared by every text that contains the word
                out.append(array)
            else:
                out.append(_NO_IDS)
        return tuple(out)

    @staticmethod
    def _word_occurrences(block: _Block, token_lists: list[tuple[str, ...]]):
        """Return the known word n-gram ids, the token owners and per n the start tokens."""
        tokens: list[str] = []
        owners: list[int] = []
        for word_index, toks in enumerate(token_lists):
            if toks:
                tokens += toks
                owners += [word_index] * len(toks)
        get = block.vocabulary.get
        min_n, max_n = block.ngram_range
        count = len(tokens)
        ids: list[int] = []
        segments: list[tuple[int, list[int]]] = []
        for n in range(min_n, min(max_n, count) + 1):
            grams = tokens if n == 1 else [" ".join(tokens[i:i + n]) for i in range(count - n + 1)]
            found = list(map(get, grams))
            starts = [i for i, feature in enumerate(found) if feature is not None]
            ids += [found[i] for i in starts]
            segments.append((n, starts))
        return np.array(ids, dtype=np.intp), owners, segments

    def score_normalized(self, text: str, explain: bool = False):
        """Return (logit, hits, per-word contributions or None) for normalised text."""
        logit = self.intercept
        hits = []
        if not text:
            return logit, hits, [] if explain else None
        words = text.split(" ")
        size = len(words)
        analysed = list(map(self._analyse, words))
        contributions = np.zeros(size) if explain else None
        for k, block in enumerate(self.blocks):
            parts = [a[k] for a in analysed]
            if block.analyzer == "char_wb":
                occurrences = np.concatenate(parts)
            else:
                occurrences, owners, segments = self._word_occurrences(block, parts)
            count = occurrences.size
            if not count:
                continue
            # Count each feature: sort, mark the first of each run, number the runs.
            if explain:
                order = occurrences.argsort()
                ordered = occurrences[order]
            else:
                ordered = np.sort(occurrences)
            first = np.empty(count, dtype=bool)
            first[0] = True
            np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
            index = ordered[first]
            run = np.cumsum(first)
            run -= 1
            tf = np.bincount(run)
            scaled = np.log(tf) + 1.0 if block.sublinear else tf.astype(np.float64)
            scaled /= math.sqrt(float((scaled * scaled) @ block.idf_squared[index]))
            logit += float(scaled @ block.logit_weight[index])
            hits.append((block, index, scaled))
            if not explain:
                continue
            # Each occurrence carries an equal share of its feature's contribution.
            share = (scaled / tf)[run] * block.logit_weight[ordered]
            if block.analyzer == "char_wb":
                owner = np.repeat(np.arange(size), [p.size for p in parts])[order]
                contributions += np.bincount(owner, weights=share, minlength=size)
                continue
            # A word n-gram's share is split evenly over the n tokens it is made of.
            unsorted = np.empty(count)
            unsorted[order] = share
            token_owner = np.array(owners, dtype=np.intp)
            offset = 0
            for n, starts in segments:
                if not starts:
                    continue
                part = unsorted[offset:offset + len(starts)]
                if n > 1:
                    part = part / n
                offset += len(starts)
                first_token = np.array(starts, dtype=np.intp)
                for j in range(n):
                    contributions += np.bincount(token_owner[first_token + j], weights=part, minlength=size)
        return logit, hits, contributions.tolist() if explain else None

    def category_logits(self, hits) -> list[float]:
        """Return the category head's logits for the features found by `score_normalized`."""
        if not self.category_labels:
            return []
        logits = self.category_intercepts.copy()
        for block, index, scaled in hits:
            logits += block.category_weight[:, index] @ scaled
        return logits.tolist()

    def probability(self, text: str) -> float:
        """Return the offensive-class probability of a raw text, as predict_proba would."""
        logit, _, _ = self.score_normalized(normalize(text))
        return _sigmoid(logit)

    def explain(self, text: str):
        """Return (probability, hits, [(start, end, weight)] in the original text)."""
        norm, starts, ends = normalize_with_offsets(text)
        logit, hits, contributions = self.score_normalized(norm, explain=True)
        spans = []
        begin = 0
        for weight in contributions:
            end = norm.find(" ", begin)
            if end < 0:
                end = len(norm)
            # Offsets are non-decreasing, so a word's original span runs from its first
            # character's start to its last character's end.
            if end > begin:
                spans.append((starts[begin], ends[end - 1], weight))
            begin = end + 1
        return _sigmoid(logit), hits, spans

    def classify(self, text: str):
        """Return (probability, hits) for a raw text without attributions."""
        logit, hits, _ = self.score_normalized(normalize(text))
        return _sigmoid(logit), hits


def _sigmoid(z: float) -> float:
    # Same formula as scipy.special.expit, stable for large |z|.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)
