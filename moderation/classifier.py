"""Flask extension holding the serving model, its routing thresholds under the site's policy, and their hot reload.

The serving model is the model store's CURRENT version, or the shipped model while the store names
none. Each process polls the store's CURRENT pointer (at most every MODEL_RELOAD_SECONDS, on a request)
and loads a newly promoted version in a background thread; requests keep scoring with the old model
until the new one is loaded and verified, then switch between two requests. A version that fails to
load (missing, tampered, broken) is refused: the old model keeps serving and the error is logged and
shown by /readyz.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app
from sqlalchemy.orm import Session

from moderation.config import PREFIX, ConfigError
from moderation.metrics import MODEL, POLICY, SCORING
from moderation.ml import LoadedModel, ModelError, Score
from moderation.ml.calibration import Calibration, CurvePoint, Evidence, calibrate
from moderation.ml.registry import POINTER, ModelStore
from moderation.services.policy import RoutingPolicy, StoredPolicy, current_policy, default_policy
from moderation.services.routing import Thresholds

log = logging.getLogger(__name__)
# A version name as `train_and_save` writes them: shown in /readyz; anything else in CURRENT is not echoed.
_SHOWABLE_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
POINTER_UNREADABLE = f"cannot read the model pointer {POINTER}; the loaded version keeps serving"


def refusal(pointer: str, exc: ModelError | ConfigError) -> str:
    """Say which promoted version was refused and why, without paths or hashes (those go to the log)."""
    name = f"version {pointer}" if _SHOWABLE_VERSION.match(pointer) else f"the version named in {POINTER}"
    reason = exc.reason if isinstance(exc, ModelError) else str(exc)
    return f"refused model {name}: {reason}; the loaded version keeps serving"


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
class Settled:
    """The thresholds a policy gives the serving model, the calibration behind them, and where each comes from."""

    thresholds: Thresholds
    calibration: Calibration | None
    approve_source: str  # "manual" (configuration), "calibration" or "model" (metadata.json, no calibration)
    reject_source: str


class Serving:
    """What one request scores and routes with; swapped as a whole when a new version is promoted.

    The thresholds follow the site's routing policy: computed from the model's calibration data for each
    policy (cheap, and kept per policy), unless MODERATION_APPROVE_THRESHOLD / REJECT_THRESHOLD fix them.
    """

    def __init__(self, model: TimedModel, config: dict) -> None:
        self.model = model
        self.manual = (config.get("APPROVE_THRESHOLD"), config.get("REJECT_THRESHOLD"))
        stored = model.metadata.get("calibration")
        try:
            self.evidence = Evidence.from_metadata(stored) if stored is not None else None
        except ValueError as exc:
            raise ModelError(f"model {model.version} has unreadable calibration data: {exc}") from exc
        self._settled: dict[RoutingPolicy, Settled] = {}
        self._lock = threading.Lock()
        self.thresholds = self.settle(default_policy(config)).thresholds  # also checks the configuration

    def settle(self, policy: RoutingPolicy) -> Settled:
        """Return the thresholds for `policy` (computed once per policy)."""
        settled = self._settled.get(policy)
        if settled is None:
            settled = settle_thresholds(self.model, self.evidence, self.manual, policy)
            with self._lock:
                if len(self._settled) >= 32:  # policies change rarely; never let this grow without bound
                    self._settled.clear()
                self._settled[policy] = settled
        return settled

    def curve(self, policy: RoutingPolicy, leaks: tuple[float, ...]) -> tuple[CurvePoint, ...]:
        """Return the automation each leak budget in `leaks` would buy under `policy` (empty without calibration)."""
        if self.evidence is None:
            return ()
        decision = self.model.decision_threshold
        return calibrate(self.evidence, policy.for_calibration(self.evidence.measured_removal_rate),
                         curve_leaks=leaks, approve_at_most=decision, reject_at_least=decision).curve


def settle_thresholds(model: LoadedModel, evidence: Evidence | None, manual: tuple[float | None, float | None],
                      policy: RoutingPolicy) -> Settled:
    """Return the routing thresholds for `policy`: calibrated on `evidence`, overridden where `manual` sets them.

    The calibrated band keeps the model's decision threshold inside it: what the model takes for offensive is
    never published by score alone. A manual threshold wins over the calibrated other side where they cross.
    """
    approve, reject = manual
    decision = model.decision_threshold
    calibration = None
    if evidence is not None:
        # The site's removal rate as its decisions measured it (retrain) wins over the one it expects.
        calibration = calibrate(evidence, policy.for_calibration(evidence.measured_removal_rate),
                                approve_at_most=decision, reject_at_least=decision)
        auto_approve, auto_reject, source = calibration.approve_threshold, calibration.reject_threshold, "calibration"
    else:
        auto_approve, auto_reject, source = model.approve_threshold, model.reject_threshold, "model"
    if approve is not None and reject is not None and approve > reject:
        raise ConfigError(f"approve threshold {approve} is above reject threshold {reject}; "
                          f"check {PREFIX}APPROVE_THRESHOLD / {PREFIX}REJECT_THRESHOLD")
    final_approve = approve if approve is not None else min(auto_approve, reject if reject is not None else 1.0)
    final_reject = reject if reject is not None else max(auto_reject, final_approve)
    return Settled(
        Thresholds(approve=final_approve, reject=final_reject, decision=decision, audit_rate=policy.audit_rate),
        calibration, "manual" if approve is not None else source, "manual" if reject is not None else source)


class ModelHolder:
    """One app's serving model and the state of its reloads."""

    def __init__(self, store: ModelStore, config: dict) -> None:
        self.store, self.config = store, dict(config)
        self.interval = float(config.get("MODEL_RELOAD_SECONDS", 2))
        self.pointer = store.pointer()
        model = store.load_serving()
        self.serving = Serving(TimedModel(model), config)
        self.error: str | None = None
        self.applied_policy: RoutingPolicy | None = None  # the last policy this process routed with (metrics)
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
        try:
            pointer = self.store.pointer()
        except (OSError, UnicodeDecodeError) as exc:  # a directory, no permission, garbage: not this request's fault
            if self.error != POINTER_UNREADABLE:
                log.error("model_pointer_unreadable",
                          extra={"error": f"{type(exc).__name__}: {exc}", "detail": str(self.store.root / POINTER)})
            self.error = POINTER_UNREADABLE
            return
        if self.error == POINTER_UNREADABLE:
            self.error = None
        if pointer in (self.pointer, self._failed_pointer) or pointer is None:
            return
        if self._loading.acquire(blocking=False):
            threading.Thread(target=self._load, args=(pointer,), name="model-reload", daemon=True).start()

    def reload_now(self) -> None:
        """Load the pointer's version in this thread (used by tests and the CLI)."""
        pointer = self.store.pointer()
        if pointer and pointer != self.pointer:
            with self._loading:
                self._load(pointer, locked=True)

    def _load(self, pointer: str, locked: bool = False) -> None:
        try:
            model = self.store.load_version(pointer)
            serving = Serving(TimedModel(model), self.config)
        except (ModelError, ConfigError) as exc:
            self.error, self._failed_pointer = refusal(pointer, exc), pointer
            log.error("model_reload_refused",
                      extra={"version": pointer, "error": str(exc), "detail": str(self.store.root)})
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
        """Load the serving model (hash-checked) and poll the model store for promotions on requests."""
        holder = ModelHolder(ModelStore(app.config["MODEL_STORE"], app.config["MODEL_DIR"]), app.config)
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
        """The thresholds at the environment's policy (routing reads the stored policy: see `pair`)."""
        return self.holder.serving.thresholds

    def settled(self, session: Session) -> tuple[Serving, StoredPolicy, Settled]:
        """Return the serving model, the site's policy in force and the thresholds it gives, consistently."""
        holder = self.holder
        serving = holder.serving
        stored = current_policy(session, current_app.config)
        if stored.policy != holder.applied_policy:
            holder.applied_policy = stored.policy
            for setting, value in stored.policy.as_dict().items():
                POLICY.labels(setting).set(value)
        return serving, stored, serving.settle(stored.policy)

    def pair(self, session: Session) -> tuple[TimedModel, Thresholds]:
        """Return the model and the thresholds of this moment, under the site's current routing policy."""
        serving, _, settled = self.settled(session)
        return serving.model, settled.thresholds
