"""The scikit-learn pipeline that is the model artifact: normalise, vectorise, classify."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.utils.validation import check_is_fitted

from moderation.ml.normalize import normalize

# Chosen on grouped 5-fold CV (3 seeds) of GermEval 2018, checked on 2021 and on both files
# (benchmarks/cv_germeval.py). Char n-grams carry most of the signal: at full weight the word
# block drowns them (76.5 macro-F1 at 0.5), at 0.4 it adds to them (78.3; char n-grams alone 77.8).
DEFAULT_PARAMS: dict[str, Any] = {
    "word_ngram_range": (1, 2),
    "char_ngram_range": (2, 5),
    "min_df": 1,
    "max_df": 0.9,
    "nb_alpha": 0.07,
    "C": 3.0,
    "class_weight": "balanced",
    "normalize": True,
    "word_weight": 0.4,
}


class TextNormalizer(TransformerMixin, BaseEstimator):
    """Map raw comments to their normalised form (see `moderation.ml.normalize`)."""

    def __init__(self, full: bool = True):
        self.full = full

    def fit(self, X, y=None):
        """Learn nothing; normalisation is rule-based."""
        self.n_features_in_ = 1
        return self

    def transform(self, X) -> list[str]:
        """Return the normalised texts."""
        if not self.full:  # plain lowercasing, for baseline comparisons only
            return [text.lower() for text in X]
        return [normalize(text) for text in X]


class NBScaler(TransformerMixin, BaseEstimator):
    """Scale each feature by its naive-Bayes log-count ratio (NB-SVM, Wang & Manning 2012)."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def fit(self, X, y):
        """Learn r = log((p / |p|_1) / (q / |q|_1)) from positive and negative feature sums."""
        y = np.asarray(y)
        X = sparse.csr_matrix(X)
        p = self.alpha + np.asarray(X[y == 1].sum(axis=0)).ravel()
        q = self.alpha + np.asarray(X[y != 1].sum(axis=0)).ravel()
        self.ratio_ = np.log((p / p.sum()) / (q / q.sum()))
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        """Multiply every column by its ratio."""
        check_is_fitted(self, "ratio_")
        return sparse.csr_matrix(X).multiply(self.ratio_).tocsr()


def build_pipeline(params: dict[str, Any] | None = None, *, seed: int = 0) -> Pipeline:
    """Return an unfitted pipeline for the given hyper-parameters (defaults filled in)."""
    p = {**DEFAULT_PARAMS, **(params or {})}
    word = TfidfVectorizer(
        analyzer="word", ngram_range=tuple(p["word_ngram_range"]), lowercase=False,
        min_df=p["min_df"], max_df=p["max_df"], sublinear_tf=True, dtype=np.float64,
    )
    char = TfidfVectorizer(
        analyzer="char_wb", ngram_range=tuple(p["char_ngram_range"]), lowercase=False,
        min_df=p["min_df"], max_df=p["max_df"], sublinear_tf=True, dtype=np.float64,
    )
    # Scaling a block's features changes how hard the classifier's penalty bears on it.
    weights = None if p["word_weight"] == 1.0 else {"word": p["word_weight"], "char": 1.0}
    nb = "passthrough" if p["nb_alpha"] is None else NBScaler(alpha=p["nb_alpha"])
    clf = LogisticRegression(
        C=p["C"], class_weight=p["class_weight"], solver="liblinear", random_state=seed,
        max_iter=1000,
    )
    return Pipeline([
        ("normalize", TextNormalizer(full=p["normalize"])),
        ("features", FeatureUnion([("word", word), ("char", char)], transformer_weights=weights)),
        ("nb", nb),
        ("clf", clf),
    ])


def build_category_head(C: float = 2.0, *, seed: int = 0) -> LogisticRegression:
    """Return the unfitted multinomial classifier that names the kind of offence."""
    return LogisticRegression(C=C, class_weight="balanced", max_iter=2000, random_state=seed)


def strip_for_storage(pipeline: Pipeline) -> None:
    """Drop fitted attributes that are only diagnostics (the pruned-term sets can be huge)."""
    for _, vectorizer in pipeline.named_steps["features"].transformer_list:
        if hasattr(vectorizer, "stop_words_"):
            del vectorizer.stop_words_
