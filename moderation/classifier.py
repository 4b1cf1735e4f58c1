"""Flask extension that holds the serving model and the routing thresholds."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, current_app

from moderation.config import PREFIX, ConfigError
from moderation.metrics import MODEL, SCORING
from moderation.ml import LoadedModel, Score, load_model
from moderation.services.routing import Thresholds

log = logging.getLogger(__name__)


class TimedModel:
    """The serving model, recording how long each scoring takes."""

    def __init__(self, model: LoadedModel) -> None:
        self.wrapped = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)

    def score(self, text: str, *, explain: bool = True) -> Score:
        """Score one text with the wrapped model."""
        start = time.perf_counter()
        try:
            return self.wrapped.score(text, explain=explain)
        finally:
            SCORING.observe(time.perf_counter() - start)


class Classifier:
    """The model every request scores with, loaded once per process."""

    def init_app(self, app: Flask) -> None:
        """Load the model named by MODEL_DIR (hash-checked) and settle the routing thresholds."""
        model = load_model(app.config["MODEL_DIR"])
        if model.sklearn_version_mismatch:
            log.warning("model_sklearn_version_mismatch", extra={"detail": model.sklearn_version_mismatch})
        approve = app.config.get("APPROVE_THRESHOLD")
        reject = app.config.get("REJECT_THRESHOLD")
        thresholds = Thresholds(
            approve=model.approve_threshold if approve is None else approve,
            reject=model.reject_threshold if reject is None else reject,
        )
        if thresholds.approve > thresholds.reject:
            raise ConfigError(
                f"approve threshold {thresholds.approve} is above reject threshold {thresholds.reject}; "
                f"check {PREFIX}APPROVE_THRESHOLD / {PREFIX}REJECT_THRESHOLD"
            )
        app.extensions["moderation.classifier"] = (TimedModel(model), thresholds)
        MODEL.clear()
        MODEL.labels(model.version).set(1)

    @property
    def model(self) -> TimedModel:
        return current_app.extensions["moderation.classifier"][0]

    @property
    def thresholds(self) -> Thresholds:
        return current_app.extensions["moderation.classifier"][1]
