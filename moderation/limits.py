"""Rate limits (Flask-Limiter): per reader for submissions, per key for everything else.

The site's backend is one client speaking for many readers, so submissions are limited per author id
and per reader IP (when the backend forwards it in `X-Reader-IP`); every other request is limited per
API key (or per client address where no key is sent). Counts live in memory by default, or in Redis
(`MODERATION_RATELIMIT_STORAGE_URL`) so that several instances share them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from functools import partial

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter


def _token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer ") and header[7:].strip():
        return header[7:].strip()
    if request.path.startswith("/v1alpha1/"):  # Perspective clients send the key as ?key= or X-Goog-Api-Key
        return request.args.get("key") or request.headers.get("X-Goog-Api-Key") or None
    return None


def _client_key() -> str:
    token = _token()
    if token:
        return "key:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return "addr:" + (request.remote_addr or "unknown")


def _author_id() -> str | None:
    body = request.get_json(silent=True)
    author = body.get("author_id") if isinstance(body, dict) else None
    return author.strip()[:200] if isinstance(author, str) and author.strip() else None


def _author_key() -> str:
    return f"author:{_client_key()}:{_author_id()}"


def _reader_ip() -> str | None:
    raw = request.headers.get("X-Reader-IP", "").strip()
    try:
        return str(ipaddress.ip_address(raw)) if raw else None
    except ValueError:
        return None


def _reader_ip_key() -> str:
    return f"reader-ip:{_client_key()}:{_reader_ip()}"


SUBMISSION_ENDPOINT = "comments.ArticleComments"
DEMO_ENDPOINT = "demo.submit"


def init_app(app: Flask) -> Limiter | None:
    """Give `app` its own limiter (state is per app) and wrap the submission endpoint with reader limits.

    With `MODERATION_RATELIMIT_ENABLED=0` no limiter is installed at all, so its hooks cost nothing.
    """
    if not app.config["RATELIMIT_ENABLED"]:
        return None
    app.config["RATELIMIT_STORAGE_URI"] = app.config["RATELIMIT_STORAGE_URL"]
    # Flask-Limiter's headers put Retry-After on every answer (and over a 503's own), and its
    # X-RateLimit-* describe one of a submission's three limits, not the one about to refuse it: none.
    app.config["RATELIMIT_HEADERS_ENABLED"] = False
    app.config.setdefault("RATELIMIT_KEY_PREFIX", "moderation")
    limiter = Limiter(key_func=_client_key, default_limits=[lambda: current_app.config["RATELIMIT_PER_KEY"]])
    limiter.init_app(app)
    view = app.view_functions[SUBMISSION_ENDPOINT]
    view = limiter.limit(lambda: current_app.config["RATELIMIT_PER_AUTHOR"], key_func=_author_key,
                         methods=["POST"], exempt_when=lambda: _author_id() is None, override_defaults=False)(view)
    view = limiter.limit(lambda: current_app.config["RATELIMIT_PER_READER_IP"], key_func=_reader_ip_key,
                         methods=["POST"], exempt_when=lambda: _reader_ip() is None, override_defaults=False)(view)
    app.view_functions[SUBMISSION_ENDPOINT] = view
    # The public demo page writes comments too: limit it per visitor address like one author.
    if DEMO_ENDPOINT in app.view_functions:
        app.view_functions[DEMO_ENDPOINT] = limiter.limit(
            lambda: current_app.config["RATELIMIT_PER_AUTHOR"], methods=["POST"], override_defaults=False,
            key_func=lambda: "demo:" + (request.remote_addr or "unknown"),
        )(app.view_functions[DEMO_ENDPOINT])
    # Health checks and scrapes must never be throttled.
    for endpoint in ("health.Alive", "health.Ready", "metrics"):
        if endpoint in app.view_functions:
            limiter.exempt(app.view_functions[endpoint])
    app.after_request(partial(_retry_after, limiter))
    app.extensions["moderation.limiter"] = limiter
    return limiter


def _retry_after(limiter: Limiter, response: Response) -> Response:
    """Tell a refused client (429) in how many seconds the limits it broke let it through again."""
    if response.status_code != 429 or "Retry-After" in response.headers:
        return response
    breached = [limit for limit in limiter.current_limits if limit.breached]
    if not breached:
        return response
    window = max(limit.limit.get_expiry() for limit in breached)
    try:
        seconds = max(limit.reset_at for limit in breached) - time.time()
    except Exception:  # each storage backend raises its own errors; a whole window is a safe answer
        seconds = window
    # Storages round the reset time up to a whole second; never ask for more than a window.
    response.headers["Retry-After"] = str(min(max(1, math.ceil(seconds)), window))
    return response
