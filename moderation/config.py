"""Configuration from `MODERATION_*` environment variables, with safe development defaults."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PREFIX = "MODERATION_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE_DIR = PROJECT_ROOT / "instance"
DEFAULT_MODEL_DIR = PROJECT_ROOT / "model"
DEV_SECRET_KEY = "dev-only-not-secret"


class ConfigError(Exception):
    """A configuration value is missing or malformed."""


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def _fraction(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a number between 0 and 1")
    return value


def _positive_seconds(raw: str) -> float:
    value = float(raw)
    if not 0 < value < float("inf"):
        raise ValueError("expected a number of seconds above 0")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("expected a whole number of at least 1")
    return value


def split_list(raw: str) -> tuple[str, ...]:
    """Return the non-empty items of a comma-separated setting, stripped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _checked_http_url(url: str) -> str:
    """Return `url` if it is an absolute http(s) URL with a host and port and no user info, else raise ValueError."""
    if re.search(r"[\s\x00-\x1f\x7f]", url):
        raise ValueError(f"{url!r} contains whitespace or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    if "@" in parts.netloc:
        raise ValueError(f"{url!r} carries user info; it would not be sent")
    try:
        parts.port  # noqa: B018 (raises for a malformed port)
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    return url


def _http_urls(raw: str) -> str:
    """Comma-separated http(s) URLs, kept as given."""
    return ",".join(_checked_http_url(url) for url in split_list(raw))


def _public_url(raw: str) -> str:
    """An http(s) URL without query or fragment, ending in "/"."""
    url = _checked_http_url(raw.strip())
    parts = urlsplit(url)
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError(f"{url!r} has a query or fragment")
    return url if url.endswith("/") else url + "/"


@dataclass(frozen=True)
class Setting:
    """One environment variable: its Flask config key, parser, default and meaning."""

    key: str
    parse: Callable[[str], Any]
    default: Any
    doc: str

    @property
    def env(self) -> str:
        return PREFIX + self.key


def default_database_url() -> str:
    """Return the embedded SQLite database under `instance/`."""
    return f"sqlite:///{DEFAULT_INSTANCE_DIR / 'moderation.db'}"


# The README's configuration table is checked against this list by a test.
SETTINGS: tuple[Setting, ...] = (
    Setting("ENV", str, "development", "`production` refuses to start without a secret key and a database URL."),
    Setting("DATABASE_URL", str, None, "SQLAlchemy URL; default `sqlite:///instance/moderation.db`. "
            "PostgreSQL: `postgresql+psycopg://user@host/db`."),
    Setting("MODEL_DIR", str, None, "Folder of the serving model (artifact + metadata.json); default `model/`."),
    Setting("SECRET_KEY", str, None, "Signs session cookies; required in production."),
    Setting("PUBLIC_URL", _public_url, None,
            "The service's public http(s) URL (e.g. `https://kommentare.example/`); links it hands out, such as "
            "the Perspective discovery document's rootUrl, use it instead of the request's Host."),
    Setting("SESSION_COOKIE_SECURE", _bool, False,
            "Send the moderators' session cookie over HTTPS only; set 1 behind TLS."),
    Setting("MODEL_RELOAD_SECONDS", float, 2.0,
            "How often each worker checks MODEL_DIR/CURRENT for a promoted version (0: never)."),
    Setting("APPROVE_THRESHOLD", _fraction, None,
            "Toxicity below this publishes at once; default: the model's calibrated value."),
    Setting("REJECT_THRESHOLD", _fraction, None,
            "Toxicity at or above this rejects; default: the model's calibrated value."),
    Setting("MAX_TEXT_LENGTH", _positive_int, 5000, "Longest comment text in characters."),
    Setting("MAX_AUTHOR_NAME_LENGTH", _positive_int, 100, "Longest author display name in characters."),
    Setting("MAX_BODY_BYTES", _positive_int, 65536, "Largest request body; larger answers 413."),
    Setting("DUPLICATE_WINDOW_SECONDS", _positive_int, 300,
            "The same text by the same author under the same article within this many seconds is refused (409)."),
    Setting("LISTING_CACHE_SECONDS", float, 1.0,
            "Each worker reuses a public listing answer this long (dropped at once on its own changes; 0: off)."),
    Setting("REPORT_THRESHOLD", _positive_int, 3,
            "Distinct reader reports that pull a published comment into the `reported` queue."),
    Setting("CLAIM_MINUTES", _positive_int, 5, "How long a moderator's claim on queued comments lasts."),
    Setting("RATELIMIT_ENABLED", _bool, True, "`0` turns every rate limit off (load tests)."),
    Setting("RATELIMIT_STORAGE_URL", str, "memory://",
            "Where limit counters live; `redis://127.0.0.1:6379/0` shares them between instances."),
    Setting("RATELIMIT_PER_AUTHOR", str, "5/minute", "Submissions per author id (per backend key)."),
    Setting("RATELIMIT_PER_READER_IP", str, "30/minute",
            "Submissions per reader IP, when the backend forwards it in the `X-Reader-IP` header."),
    Setting("RATELIMIT_PER_KEY", str, "6000/minute",
            "All requests per API key (per client address for requests without a key)."),
    Setting("WEBHOOK_URLS", _http_urls, "",
            "Comma-separated http(s) URLs of the news site that receive signed status events."),
    Setting("WEBHOOK_SECRETS", str, "",
            "Comma-separated secrets; each event is signed with all of them (rotate by adding the new one first)."),
    Setting("WEBHOOK_TIMEOUT", _positive_seconds, 5.0,
            "Seconds to wait for a webhook endpoint's answer (for each read of it)."),
    Setting("WEBHOOK_CONNECT_TIMEOUT", _positive_seconds, 3.0,
            "Seconds to wait for a connection to a webhook endpoint."),
    Setting("WEBHOOK_MAX_ATTEMPTS", _positive_int, 12, "Tries per event and endpoint before it is marked dead."),
    Setting("CORAL_SIGNING_SECRETS", str, "",
            "Comma-separated secrets of Coral's external moderation phase; any may match (rotation)."),
    Setting("DB_POOL_SIZE", _positive_int, 5, "Connections each worker keeps open to PostgreSQL."),
    Setting("LOG_LEVEL", str, "INFO", "Python logging level."),
)


def load_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every setting from the environment and return Flask config keys."""
    environ = os.environ if environ is None else environ
    config: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.env)
        if raw is None or raw == "":
            config[setting.key] = setting.default
            continue
        try:
            config[setting.key] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{setting.env}={raw!r} is invalid: {exc}") from None
    return config


def finalize(config: dict[str, Any]) -> None:
    """Fill derived defaults and refuse an unsafe production configuration."""
    if config.get("ENV") == "production":
        missing = [PREFIX + key for key in ("SECRET_KEY", "DATABASE_URL") if not config.get(key)]
        if missing:
            raise ConfigError("production needs " + " and ".join(missing) + " to be set")
    config["DATABASE_URL"] = config.get("DATABASE_URL") or default_database_url()
    config["MODEL_DIR"] = str(config.get("MODEL_DIR") or DEFAULT_MODEL_DIR)
    config["SECRET_KEY"] = config.get("SECRET_KEY") or DEV_SECRET_KEY
    approve, reject = config.get("APPROVE_THRESHOLD"), config.get("REJECT_THRESHOLD")
    if approve is not None and reject is not None and approve > reject:
        raise ConfigError(
            f"{PREFIX}APPROVE_THRESHOLD ({approve}) must not be above {PREFIX}REJECT_THRESHOLD ({reject})"
        )
    config["MAX_CONTENT_LENGTH"] = config["MAX_BODY_BYTES"]
    if config.get("PUBLIC_URL"):  # also when given directly (create_app's test_config), not through the environment
        try:
            config["PUBLIC_URL"] = _public_url(config["PUBLIC_URL"])
        except ValueError as exc:
            raise ConfigError(f"{PREFIX}PUBLIC_URL is invalid: {exc}") from None
