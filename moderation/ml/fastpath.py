"""Score one comment with plain Python lookups derived from a fitted linear pipeline.

The pipeline is TextNormalizer -> FeatureUnion(TfidfVectorizer, ...) -> NBScaler or
passthrough -> LogisticRegression. Everything after normalisation is linear in the
l2-normalised tf-idf values, so the logit is, per vectorizer block,
sum(tf * idf * weight) / ||tf * idf|| plus the intercept. Computing that from dicts
avoids building sparse matrices and gives the same probability as `predict_proba`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from itertools import chain, repeat
from dataclasses import dataclass

import numpy as np
from sklearn.pipeline import Pipeline

from moderation.ml.normalize import normalize, normalize_with_offsets


class UnsupportedPipeline(ValueError):
    """The fitted pipeline is not the linear shape the fast path understands."""


@dataclass
class _Block:
    analyzer: str  # "word" or "char_wb"
    ngram_range: tuple[int, int]
    token_re: re.Pattern | None
    vocabulary: dict[str, int]
    idf: np.ndarray
    sublinear: bool
    weight: np.ndarray  # per-feature logit weight (coef x NB ratio x union weight)
    category_weights: np.ndarray  # (n_categories, n_features), same layout as `weight`


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UnsupportedPipeline(message)


def _char_wb_grams(word: str, min_n: int, max_n: int) -> list[str]:
    # Mirrors sklearn's _VectorizerMixin._char_wb_ngrams for one whitespace-free word.
    w = " " + word + " "
    size = len(w)
    grams: list[str] = []
    for n in range(min_n, max_n + 1):
        if n >= size:
            grams.append(w)
            break
        grams.extend([w[i:i + n] for i in range(size - n + 1)])
    return grams


class FastScorer:
    """Pure-Python equivalent of `pipeline.predict_proba` for one text, with attributions."""

    def __init__(self, pipeline: Pipeline, category_head=None):
        names = [name for name, _ in pipeline.steps]
        _check(names == ["normalize", "features", "nb", "clf"], f"unexpected steps {names}")
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
            self.category_intercepts = [float(b) for b in category_head.intercept_]
            self.category_labels = [str(c) for c in category_head.classes_]
        else:
            self.category_intercepts = []
            self.category_labels = []
        self.intercept = float(clf.intercept_[0])
        weights = union.transformer_weights or {}
        self.blocks: list[_Block] = []
        offset = 0
        for name, vec in union.transformer_list:
            _check(vec.analyzer in ("word", "char_wb"), f"{name}: analyzer {vec.analyzer!r}")
            _check(not vec.lowercase and vec.strip_accents is None, f"{name}: must not preprocess")
            _check(vec.preprocessor is None and vec.tokenizer is None, f"{name}: custom callables")
            _check(vec.stop_words is None and vec.norm == "l2", f"{name}: stop words or norm")
            _check(vec.use_idf and not vec.binary, f"{name}: needs use_idf and binary=False")
            size = len(vec.vocabulary_)
            factor = float(weights.get(name, 1.0))
            block_coef = coef[offset:offset + size] * factor
            cats = (np.zeros((0, size)) if cat_coef is None
                    else np.ascontiguousarray(cat_coef[:, offset:offset + size] * factor))
            self.blocks.append(_Block(
                analyzer=vec.analyzer,
                ngram_range=tuple(vec.ngram_range),
                token_re=re.compile(vec.token_pattern) if vec.analyzer == "word" else None,
                vocabulary=vec.vocabulary_,
                idf=np.asarray(vec.idf_, dtype=np.float64),
                sublinear=bool(vec.sublinear_tf),
                weight=np.ascontiguousarray(block_coef),
                category_weights=cats,
            ))
            offset += size
        _check(offset == coef.shape[0], "feature count does not match the classifier")

    def _grams(self, block: _Block, text: str, words: list[str], word_starts: list[int]):
        """Return the block's n-grams and, per n-gram occurrence, the whitespace words it touches."""
        min_n, max_n = block.ngram_range
        if block.analyzer == "char_wb":
            per_word = [_char_wb_grams(w, min_n, max_n) for w in words]
            return per_word
        tokens = []
        owners = []
        word_index = 0
        for match in block.token_re.finditer(text):
            start = match.start()
            while word_index + 1 < len(word_starts) and word_starts[word_index + 1] <= start:
                word_index += 1
            tokens.append(match.group())
            owners.append(word_index)
        return tokens, owners

    def _word_ngrams(self, block: _Block, tokens: list[str]) -> list[str]:
        min_n, max_n = block.ngram_range
        grams = list(tokens) if min_n == 1 else []
        count = len(tokens)
        for n in range(max(min_n, 2), min(max_n, count) + 1):
            grams.extend([" ".join(tokens[i:i + n]) for i in range(count - n + 1)])
        return grams

    def score_normalized(self, text: str, explain: bool = False):
        """Return (logit, hits, per-word contributions) for normalised text."""
        words = text.split(" ") if text else []
        word_starts = []
        pos = 0
        for w in words:
            word_starts.append(pos)
            pos += len(w) + 1
        logit = self.intercept
        hits = []
        contributions = [0.0] * len(words) if explain else None
        for block in self.blocks:
            if block.analyzer == "char_wb":
                per_word = self._grams(block, text, words, word_starts)
                counts = Counter(chain.from_iterable(per_word))
            else:
                tokens, owners = self._grams(block, text, words, word_starts)
                counts = Counter(self._word_ngrams(block, tokens))
            grams = list(counts)
            found = [(i, k) for k, i in enumerate(map(block.vocabulary.get, grams))
                     if i is not None]
            if not found:
                continue
            index = np.fromiter((i for i, _ in found), dtype=np.intp, count=len(found))
            tf = np.fromiter((counts[grams[k]] for _, k in found), dtype=np.float64,
                             count=len(found))
            if block.sublinear:
                tf = np.log(tf) + 1.0
            values = tf * block.idf[index]
            values /= math.sqrt(float(values @ values))
            weighted = values * block.weight[index]
            logit += float(weighted.sum())
            hits.append((block, index, values))
            if explain and words:
                share = {grams[k]: c / counts[grams[k]]
                         for (_, k), c in zip(found, weighted.tolist())}
                if block.analyzer == "char_wb":
                    for i, word_grams in enumerate(per_word):
                        contributions[i] += sum(map(share.get, word_grams, repeat(0.0)))
                else:
                    self._attribute_words(block, tokens, owners, share, contributions)
        return logit, hits, contributions

    def category_logits(self, hits) -> list[float]:
        """Return the category head's logits for the features found by `score_normalized`."""
        if not self.category_labels:
            return []
        logits = np.array(self.category_intercepts)
        for block, index, values in hits:
            logits += block.category_weights[:, index] @ values
        return logits.tolist()

    def _attribute_words(self, block, tokens, owners, share, contributions) -> None:
        min_n, max_n = block.ngram_range
        count = len(tokens)
        for n in range(min_n, min(max_n, count) + 1):
            for i in range(count - n + 1):
                gram = tokens[i] if n == 1 else " ".join(tokens[i:i + n])
                part = share.get(gram)
                if part:
                    for j in range(i, i + n):
                        contributions[owners[j]] += part / n

    def probability(self, text: str) -> float:
        """Return the offensive-class probability of a raw text, as predict_proba would."""
        logit, _, _ = self.score_normalized(normalize(text))
        return _sigmoid(logit)

    def explain(self, text: str):
        """Return (probability, hits, [(start, end, weight)] in the original text)."""
        norm, starts, ends = normalize_with_offsets(text)
        logit, hits, contributions = self.score_normalized(norm, explain=True)
        spans = []
        pos = 0
        for word, weight in zip(norm.split(" ") if norm else [], contributions or []):
            begin, end = pos, pos + len(word)
            pos = end + 1
            if word:
                spans.append((min(starts[begin:end]), max(ends[begin:end]), weight))
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
