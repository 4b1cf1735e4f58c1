"""Flask extension holding the serving model, its routing thresholds, and their hot reload.

Each process polls the model root's CURRENT pointer (at most every MODEL_RELOAD_SECONDS, on a request)
and loads a newly promoted version in a background thread; requests keep scoring with the old model
until the new one is loaded and verified, then switch between two requests. A version that fails to
load (missing, tampered, broken) is refused: the old model keeps serving and the error is logged and
shown by /readyz.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, current_app

from moderation.config import PREFIX, ConfigError
from moderation.metrics import MODEL, SCORING
from moderation.ml import LoadedModel, ModelError, Score
from moderation.ml.registry import load_serving, load_version, read_pointer
from moderation.services.routing import Thresholds

log = logging.getLogger(__name__)


class TimedModel:
    """The serving model, recording how long each scoring takes."""

    def __init__(self, model: LoadedModel) -> None:
        self.wrapped = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)

    def score(self, text: str, *, explain: bool = True, above: float | None = None) -> Score:
        """Score one text with the wrapped model."""
        start = time.perf_counter()
        try:
            return self.wrapped.score(text, explain=explain, above=above)
        finally:
            SCORING.observe(time.perf_counter() - start)


@dataclass(frozen=True)
class Serving:
    """What one request scores and routes with; swapped as a whole."""

    model: TimedModel
    thresholds: Thresholds

    def pair(self) -> tuple[TimedModel, Thresholds]:
        return self.model, self.thresholds


def settle_thresholds(model: LoadedModel, config: dict) -> Thresholds:
    """Return the model's routing thresholds, overridden by configuration where set."""
    approve, reject = config.get("APPROVE_THRESHOLD"), config.get("REJECT_THRESHOLD")
    thresholds = Thresholds(approve=model.approve_threshold if approve is None else approve,
                            reject=model.reject_threshold if reject is None else reject,
                            decision=model.decision_threshold)
    if thresholds.approve > thresholds.reject:
        raise ConfigError(f"approve threshold {thresholds.approve} is above reject threshold {thresholds.reject}; "
                          f"check {PREFIX}APPROVE_THRESHOLD / {PREFIX}REJECT_THRESHOLD")
    return thresholds


class ModelHolder:
    """One app's serving model and the state of its reloads."""

    def __init__(self, root: Path, config: dict) -> None:
        self.root, self.config = root, dict(config)
        self.interval = float(config.get("MODEL_RELOAD_SECONDS", 2))
        self.pointer = read_pointer(root)
        model = load_serving(root)
        self.serving = Serving(TimedModel(model), settle_thresholds(model, config))
        self.error: str | None = None
        self._failed_pointer: str | None = None
        self._checked = time.monotonic()
        self._loading = threading.Lock()
        self._publish(model)

    def _publish(self, model: LoadedModel) -> None:
        if model.sklearn_version_mismatch:
            log.warning("model_sklearn_version_mismatch", extra={"detail": model.sklearn_version_mismatch})
        MODEL.clear()
        MODEL.labels(model.version).set(1)

    def poll(self) -> None:
        """Start loading a newly promoted version if the pointer moved (cheap; called per request)."""
        if self.interval <= 0 or time.monotonic() - self._checked < self.interval:
            return
        self._checked = time.monotonic()
        pointer = read_pointer(self.root)
        if pointer in (self.pointer, self._failed_pointer) or pointer is None:
            return
        if self._loading.acquire(blocking=False):
            threading.Thread(target=self._load, args=(pointer,), name="model-reload", daemon=True).start()

    def reload_now(self) -> None:
        """Load the pointer's version in this thread (used by tests and the CLI)."""
        pointer = read_pointer(self.root)
        if pointer and pointer != self.pointer:
            with self._loading:
                self._load(pointer, locked=True)

    def _load(self, pointer: str, locked: bool = False) -> None:
        try:
            model = load_version(self.root, pointer)
            serving = Serving(TimedModel(model), settle_thresholds(model, self.config))
        except (ModelError, ConfigError) as exc:
            self.error, self._failed_pointer = f"refused model {pointer}: {exc}", pointer
            log.error("model_reload_refused", extra={"version": pointer, "error": str(exc)})
        else:
            previous = self.serving.model.version
            self.serving, self.pointer, self.error, self._failed_pointer = serving, pointer, None, None
            self._publish(model)
            log.info("model_reloaded", extra={"version": model.version, "detail": f"from {previous}"})
        finally:
            if not locked:
                self._loading.release()


class Classifier:
    """The model every request scores with (hot-reloaded when a new version is promoted)."""

    def init_app(self, app: Flask) -> None:
        """Load the model named by MODEL_DIR (hash-checked) and poll it for promotions on requests."""
        holder = ModelHolder(Path(app.config["MODEL_DIR"]), app.config)
        app.extensions["moderation.classifier"] = holder
        app.before_request(holder.poll)

    @property
    def holder(self) -> ModelHolder:
        return current_app.extensions["moderation.classifier"]

    @property
    def serving(self) -> Serving:
        """The model and thresholds of this moment, as one consistent pair."""
        return self.holder.serving

    @property
    def model(self) -> TimedModel:
        return self.holder.serving.model

    @property
    def thresholds(self) -> Thresholds:
        return self.holder.serving.thresholds
