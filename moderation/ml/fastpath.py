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
from dataclasses import dataclass
from itertools import compress, repeat

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


class FastScorer:
    """Pure-Python equivalent of `pipeline.predict_proba` for one text, with attributions."""

    def __init__(self, pipeline: Pipeline, category_head=None):
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
            _check(vec.analyzer == "word" or vec.ngram_range[0] <= 3,
                   f"{name}: char n-grams must start at length 3 or less")
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

    def _tokens(self, block: _Block, text: str, words: list[str]):
        """Return the block's word tokens and, per token, the index of its whitespace word."""
        tokens = []
        owners = []
        word_index = 0
        next_start = len(words[0]) + 1 if words else 0
        for match in block.token_re.finditer(text):
            start = match.start()
            while start >= next_start and word_index + 1 < len(words):
                word_index += 1
                next_start += len(words[word_index]) + 1
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

    def _char_grams(self, block: _Block, text: str) -> tuple[list[str], int]:
        # Windows over " w1  w2  w3 " are exactly sklearn's padded per-word n-grams, plus a
        # few that straddle two words; those contain "  " and are never in the vocabulary.
        padded = " " + text.replace(" ", "  ") + " "
        size = len(padded)
        min_n, max_n = block.ngram_range
        return [padded[i:i + n] for n in range(min_n, max_n + 1)
                for i in range(size - n + 1)], size

    def _char_owners(self, block: _Block, words: list[str], size: int) -> np.ndarray:
        """Return, per char n-gram occurrence in `_char_grams` order, its word index."""
        owner = np.repeat(np.arange(len(words)), [len(w) + 2 for w in words])
        min_n, max_n = block.ngram_range
        return np.concatenate([owner[:max(size - n + 1, 0)] for n in range(min_n, max_n + 1)])

    @staticmethod
    def _values(block: _Block, index: np.ndarray, tf: np.ndarray):
        """Return the l2-normalised tf-idf values and their logit contributions."""
        if block.sublinear:
            tf = np.log(tf) + 1.0
        values = tf * block.idf[index]
        values /= math.sqrt(float(values @ values))
        return values, values * block.weight[index]

    def _explain_chars(self, block: _Block, text: str, words: list[str], contributions):
        grams, size = self._char_grams(block, text)
        occurrences = np.fromiter(map(block.vocabulary.get, grams, repeat(-1)), dtype=np.intp,
                                  count=len(grams))
        known = occurrences >= 0
        if not known.any():
            return None
        index, inverse, tf = np.unique(occurrences[known], return_inverse=True,
                                       return_counts=True)
        values, weighted = self._values(block, index, tf.astype(np.float64))
        per_word = np.bincount(self._char_owners(block, words, size)[known],
                               weights=(weighted / tf)[inverse], minlength=len(words))
        for i, value in enumerate(per_word.tolist()):
            contributions[i] += value
        return index, values, weighted

    def score_normalized(self, text: str, explain: bool = False):
        """Return (logit, hits, per-word contributions) for normalised text."""
        words = text.split(" ") if text else []
        logit = self.intercept
        hits = []
        contributions = [0.0] * len(words) if explain else None
        for block in self.blocks:
            if not words:
                break
            if block.analyzer == "char_wb":
                if explain:
                    found = self._explain_chars(block, text, words, contributions)
                    if found is not None:
                        index, values, weighted = found
                        logit += float(weighted.sum())
                        hits.append((block, index, values))
                    continue
                counts = Counter(self._char_grams(block, text)[0])
            else:
                tokens, owners = self._tokens(block, text, words)
                counts = Counter(self._word_ngrams(block, tokens))
                if not counts:
                    continue
            grams = list(counts)
            index = np.fromiter(map(block.vocabulary.get, grams, repeat(-1)), dtype=np.intp,
                                count=len(grams))
            known = index >= 0
            if not known.any():
                continue
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(grams))[known]
            index = index[known]
            values, weighted = self._values(block, index, tf)
            logit += float(weighted.sum())
            hits.append((block, index, values))
            if explain:
                kept = compress(grams, known.tolist())
                share = {g: c / counts[g] for g, c in zip(kept, weighted.tolist(), strict=True)}
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
        for word, weight in zip(norm.split(" ") if norm else [], contributions or [], strict=True):
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
