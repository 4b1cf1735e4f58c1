"""Request ids, structured JSON logs and Prometheus metrics.

Logs never carry comment texts, author names, request bodies, query strings or tokens: only the
route, status, timing and ids.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import traceback
import uuid
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.exc import DBAPIError

from moderation.extensions import db
from moderation.metrics import LATENCY, REQUESTS
from moderation.services.audit import queue_sizes

log = logging.getLogger("moderation.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Extra fields a log call may attach; anything else is dropped so nothing personal slips in.
LOG_FIELDS = ("request_id", "method", "route", "status", "duration_ms", "model_version", "detail", "comment_id",
              "key_id", "error", "path", "version", "workers")

# Database drivers whose messages may quote stored values (PostgreSQL's "DETAIL: Key (text)=(...)").
DRIVER_MODULES = {"sqlite3", "psycopg", "psycopg2"}


def _first_line(error: BaseException) -> str:
    primary = getattr(getattr(error, "diag", None), "message_primary", None)
    return primary or (str(error).splitlines() or [""])[0]


def _database_message(error: BaseException) -> str | None:
    """Return a database error's message without the values it may quote, or None for any other error."""
    if isinstance(error, DBAPIError):
        orig = error.orig
        return f"({type(orig).__module__}.{type(orig).__qualname__}) {_first_line(orig)}\n[SQL: {error.statement}]"
    if type(error).__module__.split(".")[0] in DRIVER_MODULES:
        return _first_line(error)
    return None


def _chain(error: BaseException) -> list[BaseException]:
    """Return the exception and the ones it came from, outermost first, as `traceback` would print them."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ if current.__cause__ is not None else (
            None if current.__suppress_context__ else current.__context__)
    return chain


def format_exception(error: BaseException) -> str:
    """Format an exception and its causes like `traceback`, but database errors with their first line only.

    SQLAlchemy's bound parameters are hidden by the engine (hide_parameters); this also drops the lines a
    driver adds about the offending row, such as PostgreSQL's DETAIL with a duplicate key's value.
    """
    blocks = []
    for item in reversed(_chain(error)):
        message = _database_message(item)
        last = ("".join(traceback.format_exception_only(type(item), item)) if message is None
                else f"{type(item).__module__}.{type(item).__qualname__}: {message}\n")
        blocks.append("Traceback (most recent call last):\n" + "".join(traceback.format_tb(item.__traceback__)) + last)
    return "\nThe above exception led to the following exception:\n\n".join(blocks).rstrip("\n")


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    _second = -1
    _stamp = ""

    def _timestamp(self, record: logging.LogRecord) -> str:
        # One strftime per second, not per line (handlers format under their lock).
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for name in LOG_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        """Format the exception; one that is or came from a database error without the values it quotes."""
        error = ei[1]
        if error is not None and any(_database_message(e) is not None for e in _chain(error)):
            return format_exception(error)
        return super().formatException(ei)


def configure_logging(level: str) -> None:
    """Send every log line to stderr as JSON."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.Formatter.converter = time.gmtime
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class _QueueCollector:
    """Queue sizes, read from the database during the scrape request."""

    def describe(self) -> list:
        return []

    def collect(self):
        family = GaugeMetricFamily("moderation_queue_size", "Comments waiting for a moderator", labels=["queue"])
        for name, size in queue_sizes(db.session).items():
            family.add_metric([name], size)
        yield family


# Label values come from this fixed set: any method a client sends (every token is allowed) or any path
# would otherwise become a new metric series, and /metrics grew from 64 KB to 3 MB in 2,000 requests.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method() -> str:
    return request.method if request.method in KNOWN_METHODS else "other"


def _endpoint() -> str:
    # The route's pattern, never the path: unknown paths and refused methods (405) are all "unmatched".
    return request.url_rule.rule if request.url_rule is not None else "unmatched"


def init_app(app: Flask) -> None:
    """Add request ids, the access log and `/metrics`."""

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex

    @app.after_request
    def _finish(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        endpoint, method = _endpoint(), _method()
        response.headers["X-Request-ID"] = g.get("request_id", "")
        if endpoint != "/metrics":
            REQUESTS.labels(method, endpoint, str(response.status_code)).inc()
            LATENCY.labels(method, endpoint).observe(elapsed)
        log.info("request", extra={"request_id": g.get("request_id"), "method": method, "route": endpoint,
                                   "status": response.status_code, "duration_ms": round(elapsed * 1000, 2)})
        return response

    multiproc = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    scrape_registry = CollectorRegistry()
    if multiproc:
        MultiProcessCollector(scrape_registry)
    else:
        from prometheus_client import REGISTRY
        scrape_registry = REGISTRY
    queue_registry = CollectorRegistry()
    queue_registry.register(_QueueCollector())

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus metrics of this instance (all workers)."""
        body = generate_latest(scrape_registry) + generate_latest(queue_registry)
        return Response(body, mimetype=CONTENT_TYPE_LATEST)
