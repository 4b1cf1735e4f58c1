"""The scikit-learn pipeline that is the model artifact: normalise, vectorise, classify."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.utils.validation import check_is_fitted

from moderation.ml.encoder import EncoderFeatures
from moderation.ml.normalize import EMOJI_RE, Unmasker, normalize

# Chosen on the shift table (benchmarks/shift_eval.py: held-out corpora and the functional suite), by the
# rule fixed before: a block stays only if it wins by more than 2.5 points of the primary figure; of recipes
# that tie, the simpler ships (docs/decisions/0012-recipe-on-the-shift-table.md, seed 0, 2026-12-07). This
# recipe ("lean") scores 72.1; the one before it ("2026-12-06": word 1-2, char 3-5, NB scaling, style counts,
# sentence encoder, unmasking) 72.9, a tie, for a seventh of the fitting time.
DEFAULT_PARAMS: dict[str, Any] = {
    # Word bigrams and char 5-grams dropped with the other blocks (the 2026-12-06 recipe, a tie above).
    "word_ngram_range": (1, 1),
    "char_ngram_range": (3, 4),
    "min_df": 1,
    "max_df": 0.9,
    # NB scaling (log-count ratios, alpha 0.07) loses: 68.8 with it, 72.1 without. None leaves it out.
    "nb_alpha": None,
    "C": 3.0,
    "class_weight": "balanced",
    # The full normalisation (lowercasing, umlauts, leetspeak, spaced letters, emoji and URL tokens). Lowercasing
    # alone ties (70.6), but the fast path's highlights need the normaliser's offsets (fastpath.py).
    "normalize": True,
    # The word block weighted 0.4 beside the char n-grams (grouped CV of GermEval 2018, 2026-11).
    "word_weight": 0.4,
    # Three counts of the raw comment beside the n-grams (StyleFeatures), weighted so; None leaves them out.
    # Dropped with the 2026-12-06 recipe (a tie).
    "style_weight": None,
    # Rows of another genre than the served one (GermEval 2018 tweets) train through feature augmentation
    # (DomainAdaptedLogisticRegression): 72.1 with it, 69.1 without, a win by more than the margin. False
    # trains one classifier for all rows alike.
    "domain_adaptation": True,
    # A pretrained multilingual sentence encoder distilled to word pieces (moderation.ml.encoder), its 512
    # features times this weight beside the others; None leaves it out. On the lean recipe 72.5 with it at
    # 0.3, 72.1 without: a tie, so the simpler model ships (it ranked the held-out corpora 1 AUC point
    # better, GermEval 2019 1.7 points: record 12).
    "encoder_weight": None,
    "encoder_dims": 128,
    # Masked words ("A****loch") restored to the training word they stand for (normalize.Unmasker).
    # Dropped with the 2026-12-06 recipe (a tie).
    "unmask": False,
}

# What the service scores: readers' comments. Training rows are of this domain unless a reader says
# otherwise (GermEval 2018 is tweets).
SERVED_DOMAIN = "comment"


def served_rows(domains, labels) -> np.ndarray:
    """Mask of the rows that figures and thresholds should come from: the served domain's rows when they
    hold both classes, else all rows."""
    served = np.asarray(domains) == SERVED_DOMAIN
    return served if len(set(np.asarray(labels)[served].tolist())) == 2 else np.ones(len(served), dtype=bool)


class TextNormalizer(TransformerMixin, BaseEstimator):
    """Map raw comments to their normalised form (see `moderation.ml.normalize`).

    With `unmask`, fitting on labelled texts also learns an `Unmasker` from their words, so that
    "A****loch" reads as the "arschloch" of the training texts.
    """

    unmask = False  # models stored before unmasking existed have no such attribute

    def __init__(self, full: bool = True, unmask: bool = False):
        self.full = full
        self.unmask = unmask

    def _learn(self, X, y) -> list[str] | None:
        """Learn the unmasker when asked to; return the texts it learnt from (normalised without it) or None."""
        self.unmask_ = None
        self.n_features_in_ = 1
        if not (self.full and self.unmask and y is not None):
            return None
        plain = [normalize(text) for text in X]
        self.unmask_ = Unmasker.learn(plain, y)
        return plain

    def fit(self, X, y=None):
        """Learn the masked-word vocabulary when asked to; the rest is rule-based."""
        self._learn(X, y)
        return self

    def fit_transform(self, X, y=None) -> list[str]:
        """Fit and return the normalised texts, normalising each text once for both."""
        plain = self._learn(X, y)
        if plain is None:
            return self.transform(X)
        # Unmasking changes only texts that hold an asterisk (no earlier step writes one).
        return [normalize(text, self.unmask_) if "*" in text else done for text, done in zip(X, plain, strict=True)]

    def transform(self, X) -> list[str]:
        """Return the normalised texts."""
        if not self.full:  # plain lowercasing, for baseline comparisons only
            return [text.lower() for text in X]
        unmask = getattr(self, "unmask_", None)
        return [normalize(text, unmask) for text in X]


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


_WORD_RE = re.compile(r"\w+")
_PUNCT_RUN_RE = re.compile(r"[!?]{2,}")


def style_counts(text: str) -> tuple[float, float, float]:
    """log1p of the raw comment's words, emoji and runs of two or more '!'/'?'.

    GermEval's line-break marker `|LBR|` is a line break, not a word: served comments have "\n".
    """
    text = text.replace("|LBR|", "\n")
    return (math.log1p(len(_WORD_RE.findall(text))), math.log1p(len(EMOJI_RE.findall(text))),
            math.log1p(len(_PUNCT_RUN_RE.findall(text))))


class StyleFeatures(TransformerMixin, BaseEstimator):
    """`style_counts` of each raw comment, standardised on the training texts and times `weight`.

    Normalisation removes what these count (emoji become words, punctuation goes), so they are
    read from the raw text. Mocking laugh emoji and shouted "!!!" mark toxic Facebook comments
    (GermEval 2021) far more than tweets; the word count lets the score depend on length.
    """

    def __init__(self, weight: float = 0.1):
        self.weight = weight

    @staticmethod
    def _counts(X) -> np.ndarray:
        return np.array([style_counts(text) for text in X], dtype=np.float64).reshape(-1, 3)

    def fit(self, X, y=None):
        """Learn each count's mean and standard deviation (1 where it does not vary)."""
        counts = self._counts(X)
        self.mean_ = counts.mean(axis=0)
        scale = counts.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        self.n_features_in_ = 1
        return self

    def transform(self, X):
        """Return the weighted standard scores, one row per text."""
        check_is_fitted(self, "scale_")
        return (self._counts(X) - self.mean_) / self.scale_ * self.weight


class DomainAdaptedLogisticRegression(LogisticRegression):
    """Logistic regression trained across domains by feature augmentation, served as one plain model.

    Daumé's "frustratingly easy domain adaptation" (2007): each training row's features x appear
    twice, once in a shared block and once in the block of its own domain (blocks in name order:
    [x, x, 0] for a comment, [x, 0, x] for a tweet). The penalty lets a weight live in the shared
    block when the domains agree and in a domain's block when they do not. After fitting, the shared
    and the served domain's blocks are added up, so the fitted model is an ordinary
    LogisticRegression over x (`coef_`, `intercept_`, `predict_proba` as usual) that scores every
    text as `served_domain`. Fitted without `domain`, or with one domain only, it is exactly
    LogisticRegression.
    """

    _parameter_constraints = {**LogisticRegression._parameter_constraints, "served_domain": [str]}

    def __init__(self, C=1.0, class_weight=None, solver="liblinear", random_state=None, max_iter=1000, tol=1e-4,
                 fit_intercept=True, intercept_scaling=1, served_domain=SERVED_DOMAIN):
        super().__init__(C=C, class_weight=class_weight, solver=solver, random_state=random_state,
                         max_iter=max_iter, tol=tol, fit_intercept=fit_intercept,
                         intercept_scaling=intercept_scaling)
        self.served_domain = served_domain

    def fit(self, X, y, sample_weight=None, domain=None):
        """Fit on X; with `domain` (one label per row, two or more distinct), fit the augmented model."""
        if domain is not None:
            domain = np.asarray([str(name) for name in domain])
            if len(domain) != X.shape[0]:
                raise ValueError(f"{X.shape[0]} rows but {len(domain)} domain labels")
        names = sorted(set(domain.tolist())) if domain is not None else []
        if len(names) < 2:
            self.domains_ = names
            return super().fit(X, y, sample_weight=sample_weight)
        X = sparse.csr_matrix(X)
        width = X.shape[1]
        blocks = [X] + [sparse.diags((domain == name).astype(np.float64)) @ X for name in names]
        super().fit(sparse.hstack(blocks, format="csr"), y, sample_weight=sample_weight)
        coef = self.coef_[:, :width].copy()
        if self.served_domain in names:
            at = 1 + names.index(self.served_domain)
            coef += self.coef_[:, at * width:(at + 1) * width]
        self.coef_, self.n_features_in_, self.domains_ = coef, width, names
        return self


def text_parts(pipeline: Pipeline) -> tuple[Any, FeatureUnion, Any, StyleFeatures | None]:
    """Return the (normalize, n-gram union, nb, style or None) steps of a pipeline of either shape.

    With style or encoder features the pipeline is FeatureUnion(text=(normalize, features, nb),
    style, encoder) -> clf; without (models trained before them, and both weights None) it is
    normalize, features, nb, clf. `encoder_part` returns the encoder step.
    """
    steps = dict(pipeline.steps)
    style = None
    if [name for name, _ in pipeline.steps] == ["features", "clf"]:
        parts = dict(steps["features"].transformer_list)
        steps, style = dict(parts["text"].steps), parts.get("style")
    return steps["normalize"], steps["features"], steps["nb"], style


def encoder_part(pipeline: Pipeline) -> EncoderFeatures | None:
    """Return the pipeline's encoder step, or None."""
    if [name for name, _ in pipeline.steps] != ["features", "clf"]:
        return None
    return dict(pipeline.named_steps["features"].transformer_list).get("encoder")


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
    classifier = DomainAdaptedLogisticRegression if p.get("domain_adaptation") else LogisticRegression
    clf = classifier(C=p["C"], class_weight=p["class_weight"], solver="liblinear", random_state=seed, max_iter=1000)
    text = [
        ("normalize", TextNormalizer(full=p["normalize"], unmask=p["unmask"])),
        ("features", FeatureUnion([("word", word), ("char", char)], transformer_weights=weights)),
        ("nb", nb),
    ]
    extra = []
    if p.get("style_weight") is not None:
        extra.append(("style", StyleFeatures(weight=p["style_weight"])))
    if p.get("encoder_weight") is not None:
        extra.append(("encoder", EncoderFeatures(weight=p["encoder_weight"], dims=p.get("encoder_dims", 128))))
    if not extra:
        return Pipeline([*text, ("clf", clf)])
    return Pipeline([("features", FeatureUnion([("text", Pipeline(text)), *extra])), ("clf", clf)])


def build_category_head(C: float = 2.0, *, seed: int = 0) -> LogisticRegression:
    """Return the unfitted multinomial classifier that names the kind of offence."""
    return LogisticRegression(C=C, class_weight="balanced", max_iter=2000, random_state=seed)


def build_threat_head(C: float = 2.0, *, seed: int = 0) -> LogisticRegression:
    """Return the unfitted binary classifier that gives P(threat) for any comment (rows are weighted instead
    of classes: see `moderation.ml.threat`)."""
    return LogisticRegression(C=C, solver="liblinear", max_iter=2000, random_state=seed)


def strip_for_storage(pipeline: Pipeline) -> None:
    """Drop fitted attributes that are only diagnostics (the pruned-term sets can be huge)."""
    for _, vectorizer in text_parts(pipeline)[1].transformer_list:
        if hasattr(vectorizer, "stop_words_"):
            del vectorizer.stop_words_
