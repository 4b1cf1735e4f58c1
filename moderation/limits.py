"""Rate limits (Flask-Limiter): per reader for submissions, per key for everything else.

The site's backend is one client speaking for many readers, so submissions are limited per author id
(cleaned exactly as intake stores it) and per reader IP (when the backend forwards it in `X-Reader-IP`;
IPv6 per /64); every other request is limited per API key (or per client address where no key is sent;
behind proxies that address comes from `MODERATION_TRUSTED_PROXY_HOPS`). Counts live in a SQLite file
shared by the workers of one machine by default, or in Redis (`MODERATION_RATELIMIT_STORAGE_URL`) so
that several instances share them; when that storage fails, each worker counts in memory meanwhile
(see `moderation.ratelimit_storage`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from functools import partial

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter
from marshmallow import ValidationError
from redis.backoff import NoBackoff
from redis.retry import Retry

from moderation import ratelimit_storage
from moderation.api.schemas import CommentIn
from moderation.errors import InvalidInput

SUBMISSION_ENDPOINT = "comments.ArticleComments"
DEMO_ENDPOINT = "demo.submit"
# Intake's own field, so that the author limit keys on exactly the id that would be stored.
_AUTHOR_ID_FIELD = CommentIn().fields["author_id"]
# One subscriber or LAN gets a /64 and a host can use any address in it (privacy extensions).
IPV6_PREFIX = 64
# A Redis that does not answer must cost a request about a second, not the client's default of 5 s with
# 10 retries; one immediate retry still covers a connection that went stale when Redis restarted.
REDIS_OPTIONS = {"socket_connect_timeout": 1.0, "socket_timeout": 1.0, "retry": Retry(NoBackoff(), 1)}
DEGRADED = "degraded: in-memory fallback"


def _digest(value: str) -> str:
    # Keys, and Flask-Limiter's log line on a breach, carry no author id or address in clear (not
    # anonymisation: an IPv4 address is quickly found from its hash).
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def address_bucket(address: str) -> str:
    """Return what an address is limited as: the IPv4 address, or the /64 network of an IPv6 one."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return f"{ipaddress.IPv6Address(int(ip) >> (128 - IPV6_PREFIX) << (128 - IPV6_PREFIX))}/{IPV6_PREFIX}"
    return str(ip)


def _peer_bucket() -> str:
    try:
        return address_bucket(request.remote_addr or "")
    except ValueError:
        return request.remote_addr or "unknown"


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
    return "addr:" + _digest(_peer_bucket())


def _author_id() -> str | None:
    """Return the author id as intake would store it, or None where intake refuses it (nothing to count)."""
    body = request.get_json(silent=True)
    raw = body.get("author_id") if isinstance(body, dict) else None
    try:
        return _AUTHOR_ID_FIELD.deserialize(raw)
    except ValidationError:
        return None


def _author_key() -> str:
    return f"author:{_client_key()}:{_digest(_author_id() or '')}"


def _reader_ip() -> str | None:
    """Return the bucket of the reader the backend names in X-Reader-IP, None if it names none or is malformed."""
    raw = request.headers.get("X-Reader-IP", "").strip()
    try:
        return address_bucket(raw) if raw else None
    except ValueError:
        return None


def check_reader_ip() -> None:
    """Refuse a submission whose X-Reader-IP is not one IP address (before anything is stored)."""
    if request.endpoint != SUBMISSION_ENDPOINT or request.method != "POST":
        return
    raw = request.headers.get("X-Reader-IP", "").strip()
    if raw and _reader_ip() is None:
        # A malformed header must not exempt the request from the reader limit, and a backend that forwards
        # a list or an address with a port should learn it now rather than run without reader limits.
        raise InvalidInput("X-Reader-IP must be one IPv4 or IPv6 address, such as 192.0.2.1 or 2001:db8::1",
                           fields={"X-Reader-IP": ["Not an IP address."]})


def _reader_ip_key() -> str:
    return f"reader-ip:{_client_key()}:{_digest(_reader_ip() or '')}"



def init_app(app: Flask) -> Limiter | None:
    """Give `app` its own limiter (state is per app) and wrap the submission endpoint with reader limits.

    With `MODERATION_RATELIMIT_ENABLED=0` no limiter is installed at all, so its hooks cost nothing; a
    malformed `X-Reader-IP` is refused either way, so that a backend's bug shows before production.
    """
    if not app.config["RATELIMIT_ENABLED"]:
        app.before_request(check_reader_ip)
        return None
    url = app.config["RATELIMIT_STORAGE_URL"]
    app.config["RATELIMIT_STORAGE_URI"] = ratelimit_storage.FallbackStorage.STORAGE_SCHEME[0] + "://"
    app.config["RATELIMIT_STORAGE_OPTIONS"] = {
        "primary": url, "retry_seconds": app.config["RATELIMIT_STORAGE_RETRY_SECONDS"],
        **(REDIS_OPTIONS if url.split("://")[0] in {"redis", "rediss", "redis+unix"} else {}),
    }
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
            key_func=lambda: "demo:" + _digest(_peer_bucket()),
        )(app.view_functions[DEMO_ENDPOINT])
    # Health checks and scrapes must never be throttled.
    for endpoint in ("health.Alive", "health.Ready", "metrics"):
        if endpoint in app.view_functions:
            limiter.exempt(app.view_functions[endpoint])
    app.after_request(partial(_retry_after, limiter))
    app.extensions["moderation.limiter"] = limiter
    # After the limiter's own hook, so that refused requests still count against the key's budget.
    app.before_request(check_reader_ip)
    return limiter


def storage_state(app: Flask) -> str:
    """Probe the limit storage and say `ok`, `degraded: in-memory fallback` or `disabled`, for /readyz."""
    limiter = app.extensions.get("moderation.limiter")
    if limiter is None:
        return "disabled"
    return "ok" if limiter.storage.check() else DEGRADED


def close_storage(app: Flask) -> None:
    """Release the limit storage's connections (tests build many apps in one process)."""
    limiter = app.extensions.get("moderation.limiter")
    if limiter is not None:
        limiter.storage.close()


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
