"""Configuration from `MODERATION_*` environment variables, with safe development defaults."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PREFIX = "MODERATION_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE_DIR = PROJECT_ROOT / "instance"
DEFAULT_MODEL_DIR = PROJECT_ROOT / "model"
DEFAULT_MODEL_STORE = DEFAULT_INSTANCE_DIR / "models"
DEFAULT_REPORT_DIR = DEFAULT_INSTANCE_DIR / "reports"
ENVIRONMENTS = ("development", "production")
MIN_SECRET_BYTES = 32
MAKE_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
# Secrets that shipped with earlier versions or are typical placeholders: anyone who has read them can sign
# cookies. Compared with case, spaces and -_. ignored, also repeated to reach the length ("secret" * 6).
KNOWN_DEFAULT_SECRETS = ("devonlynotsecret", "changeme", "changethis", "replaceme", "secret", "secretkey",
                         "password", "moderation", "kommentare")


class ConfigError(Exception):
    """A configuration value is missing or malformed."""


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def _environment(raw: str) -> str:
    if raw not in ENVIRONMENTS:
        raise ValueError("expected one of " + ", ".join(ENVIRONMENTS))
    return raw


def _fraction(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a number between 0 and 1")
    return value


def _open_fraction(raw: str) -> float:
    value = float(raw)
    if not 0.0 < value < 1.0:
        raise ValueError("expected a number above 0 and below 1")
    return value


def _positive_fraction(raw: str) -> float:
    value = float(raw)
    if not 0.0 < value <= 1.0:
        raise ValueError("expected a number above 0 and at most 1")
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


def _count(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("expected a whole number of at least 0")
    return value


def _timezone(raw: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("expected an IANA time zone such as Europe/Berlin or UTC") from None
    return raw


def _seconds(raw: str) -> float:
    value = float(raw)
    if not value >= 0:  # also refuses nan
        raise ValueError("expected a number of seconds of at least 0")
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


# docs/configuration.md documents exactly these settings with their defaults (tests/test_config.py checks it).
SETTINGS: tuple[Setting, ...] = (
    Setting("ENV", _environment, "development",
            "`development` or `production` (anything else refuses to start). `production` refuses to start "
            "without a database URL and a secret key of at least 32 bytes that is not a known default."),
    Setting("DATABASE_URL", str, None, "SQLAlchemy URL; default `sqlite:///instance/moderation.db`. "
            "PostgreSQL: `postgresql+psycopg://user@host/db`."),
    Setting("MODEL_DIR", str, None, "Folder of the shipped model (artifact + metadata.json), read-only; it serves "
            "while the model store names no version; default `model/`."),
    Setting("MODEL_STORE", str, None, "Writable folder of retrained and promoted versions (`retrain`, `models`); "
            "its CURRENT serves; default `instance/models/`."),
    Setting("REPORT_DIR", str, None, "Folder that `retrain` writes its report into when `--report` is not given "
            "(one folder per run, `retrain-<time>`); default `instance/reports/`."),
    Setting("SECRET_KEY", str, None,
            "Signs session cookies; required in production (32 bytes or more). Development makes a random one "
            "per start, so a restart signs every moderator out."),
    Setting("SESSION_HOURS", _positive_int, 10,
            "A moderator's sign-in on the pages ends this many hours after it began, however active."),
    Setting("SESSION_IDLE_MINUTES", _positive_int, 60,
            "A moderator's sign-in ends after this many minutes without a page request."),
    Setting("DEMO", _bool, False,
            "`1` serves the demo article under /demo/ (articles whose id starts with `demo-` only); "
            "refused in production: anyone can write comments there."),
    Setting("PUBLIC_URL", _public_url, None,
            "The service's public http(s) URL (e.g. `https://kommentare.example/`); links it hands out, such as "
            "the Perspective discovery document's rootUrl, use it instead of the request's Host."),
    Setting("TIMEZONE", _timezone, "Europe/Berlin",
            "The newsroom's IANA time zone: every page shows times in it (the API keeps ISO 8601 in UTC). "
            "An unknown zone refuses to start."),
    Setting("SESSION_COOKIE_SECURE", _bool, False,
            "Send the moderators' session cookie over HTTPS only; set 1 behind TLS."),
    Setting("MODEL_RELOAD_SECONDS", float, 2.0,
            "How often each worker checks MODEL_STORE/CURRENT for a promoted version (0: never)."),
    Setting("APPROVE_THRESHOLD", _fraction, None,
            "Toxicity below this publishes at once; default: calibrated for the routing policy (manual override)."),
    Setting("REJECT_THRESHOLD", _fraction, None,
            "Toxicity at or above this rejects; default: calibrated for the routing policy (manual override)."),
    Setting("MAX_LEAK", _open_fraction, 0.02,
            "Routing policy: at most this share of automatically published comments would have been removed by the "
            "site's moderators (95% upper confidence bound); the dashboard's stored policy overrides it."),
    Setting("MIN_REJECT_PRECISION", _positive_fraction, 0.95,
            "Routing policy: at least this share of automatically rejected comments would have been removed by the "
            "site's moderators (95% lower confidence bound)."),
    Setting("EXPECTED_REMOVAL_RATE", _open_fraction, 0.10,
            "Routing policy: the share of comments the site's moderators remove; the thresholds are calibrated at it."),
    Setting("AUDIT_RATE", _fraction, 0.02,
            "Routing policy: this random share of the model's own decisions waits for a person (`audit_sample`) "
            "to measure the leak."),
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
    Setting("RATELIMIT_STORAGE_URL", str, None,
            "Where limit counters live. Default: a SQLite file beside the database (`sqlite:///…ratelimits.db`; "
            "`instance/ratelimits.db` with PostgreSQL), shared by the workers of one machine. "
            "`redis://127.0.0.1:6379/0` shares them between instances; `memory://` counts per worker process."),
    Setting("RATELIMIT_STORAGE_RETRY_SECONDS", _seconds, 5.0,
            "While the limit storage fails, each worker counts in its own memory (never a 500) and tries the "
            "storage again after this many seconds."),
    Setting("RATELIMIT_PER_AUTHOR", str, "5/minute", "Submissions per author id (per backend key)."),
    Setting("RATELIMIT_PER_READER_IP", str, "30/minute",
            "Submissions per reader IP, when the backend forwards it in the `X-Reader-IP` header."),
    Setting("RATELIMIT_PER_KEY", str, "6000/minute",
            "All requests per API key (per client address for requests without a key)."),
    Setting("TRUSTED_PROXY_HOPS", _count, 0,
            "Reverse proxies of yours in front of the service: the client address is taken from that many "
            "`X-Forwarded-For` entries, counted from the right. 0 trusts none (the peer is the client)."),
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


def default_ratelimit_storage_url(database_url: str) -> str:
    """Return a SQLite file for limit counters beside a SQLite database, else under `instance/`."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database not in {"", ":memory:"} and not database.startswith("file:"):
        path = Path(database)
        return f"sqlite:///{path.with_name(path.stem + '.ratelimits.db')}"
    return f"sqlite:///{DEFAULT_INSTANCE_DIR / 'ratelimits.db'}"


def _same_sqlite_file(first: str, second: str) -> bool:
    """Whether two `sqlite:///` URLs name one file."""
    prefix = "sqlite:///"
    if not (first.startswith(prefix) and second.startswith(prefix)):
        return False
    return Path(first[len(prefix):].split("?")[0]).resolve() == Path(second[len(prefix):].split("?")[0]).resolve()


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


def is_known_default_secret(secret: str) -> bool:
    """Whether `secret` is (a repetition of) a published or placeholder value."""
    squeezed = re.sub(r"[\s_.-]+", "", secret).lower()
    return bool(squeezed) and any(squeezed == word * (len(squeezed) // len(word)) for word in KNOWN_DEFAULT_SECRETS)


def _check_secret(secret: str | None, production: bool) -> None:
    if secret and is_known_default_secret(secret):
        raise ConfigError(f"{PREFIX}SECRET_KEY is a known default value that anyone can sign session cookies "
                          f"with; make a new one with {MAKE_SECRET}")
    if production and secret and len(secret.encode("utf-8", "surrogatepass")) < MIN_SECRET_BYTES:
        raise ConfigError(f"{PREFIX}SECRET_KEY is too short: production needs at least {MIN_SECRET_BYTES} bytes "
                          f"(it has {len(secret.encode('utf-8', 'surrogatepass'))}); make one with {MAKE_SECRET}")


def finalize(config: dict[str, Any]) -> None:
    """Fill derived defaults and refuse an unsafe production configuration."""
    env = config.get("ENV")
    if env not in ENVIRONMENTS:
        raise ConfigError(f"{PREFIX}ENV={env!r} is invalid: expected one of " + ", ".join(ENVIRONMENTS))
    production = env == "production"
    if production:
        missing = [PREFIX + key for key in ("SECRET_KEY", "DATABASE_URL") if not config.get(key)]
        if missing:
            raise ConfigError("production needs " + " and ".join(missing) + " to be set (MODERATION_ENV=production, "
                              "as the Docker image runs: pass them with `docker run -e NAME=value`); "
                              f"make a secret key with {MAKE_SECRET}")
        if config.get("DEMO"):
            raise ConfigError(f"{PREFIX}DEMO=1 is refused in production: anyone could write comments through the "
                              "demo page")
    _check_secret(config.get("SECRET_KEY"), production)
    config["DATABASE_URL"] = config.get("DATABASE_URL") or default_database_url()
    config["MODEL_DIR"] = str(config.get("MODEL_DIR") or DEFAULT_MODEL_DIR)
    storage = config.get("RATELIMIT_STORAGE_URL") or default_ratelimit_storage_url(config["DATABASE_URL"])
    if _same_sqlite_file(storage, config["DATABASE_URL"]):
        # Limit counts are written on every request: in the database they would queue behind its writer lock.
        raise ConfigError(f"{PREFIX}RATELIMIT_STORAGE_URL must not be the database itself; use a file of its own")
    config["RATELIMIT_STORAGE_URL"] = storage
    config["MODEL_STORE"] = str(config.get("MODEL_STORE") or DEFAULT_MODEL_STORE)
    config["REPORT_DIR"] = str(config.get("REPORT_DIR") or DEFAULT_REPORT_DIR)
    # No fixed fallback: whoever knows a shared key can sign cookies. gunicorn preloads the app in the
    # master, so every worker inherits this one.
    config["SECRET_KEY"] = config.get("SECRET_KEY") or secrets.token_urlsafe(48)
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
    try:  # also when given directly (tests, create_app(config)), not only through the environment
        config["TIMEZONE"] = _timezone(str(config.get("TIMEZONE") or "Europe/Berlin"))
    except ValueError as exc:
        raise ConfigError(f"{PREFIX}TIMEZONE={config.get('TIMEZONE')!r} is invalid: {exc}") from None
