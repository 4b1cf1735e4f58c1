"""Toxicity classifier: normalisation, training, the model folder and fast scoring.

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
