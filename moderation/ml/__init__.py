"""Toxicity classifier: normalisation, training, the model folder and fast scoring.

A model folder holds `model.joblib` (a dict with the fitted sklearn Pipeline
TextNormalizer -> FeatureUnion(word 1-2, char_wb 3-5 tf-idf) -> NBScaler -> LogisticRegression
and the category head, a multinomial LogisticRegression on the same features) and
`metadata.json` (version, library versions, training files with hashes, cross-validated
metrics, decision and routing thresholds). `load_model` checks the artifact's SHA-256
before unpickling it. `LoadedModel.score` derives plain-Python lookups from the pipeline
(see `fastpath`), which give `predict_proba`'s probability without sklearn overhead.

This package imports neither Flask nor the database; the web layer calls into it.
"""

from moderation.ml.model import Highlight, LoadedModel, ModelError, Score, load_model
from moderation.ml.normalize import normalize, normalize_with_offsets
from moderation.ml.train import train_and_save

__all__ = [
    "Highlight",
    "LoadedModel",
    "ModelError",
    "Score",
    "load_model",
    "normalize",
    "normalize_with_offsets",
    "train_and_save",
]
