"""Configuration from MODERATION_* variables, and docs/configuration.md documents exactly these, with their defaults."""

from __future__ import annotations

import re

import pytest

from moderation.config import SETTINGS, ConfigError, finalize, load_config
from tests.conftest import ROOT


def test_defaults():
    config = load_config({})
    finalize(config)
    assert config["DATABASE_URL"].startswith("sqlite:///") and config["DATABASE_URL"].endswith("instance/moderation.db")
    assert config["MAX_TEXT_LENGTH"] == 5000
    assert config["MAX_CONTENT_LENGTH"] == 65536
    assert config["MODEL_DIR"] == str(ROOT / "model")
    assert config["MODEL_STORE"] == str(ROOT / "instance" / "models")  # ignored by git, like the database
    assert config["REPORT_DIR"] == str(ROOT / "instance" / "reports")  # retrain's reports: ignored by git too


def test_values_are_parsed():
    config = load_config({"MODERATION_MAX_TEXT_LENGTH": "300", "MODERATION_APPROVE_THRESHOLD": "0.2"})
    assert config["MAX_TEXT_LENGTH"] == 300 and config["APPROVE_THRESHOLD"] == 0.2


@pytest.mark.parametrize(("name", "value"), [
    ("MODERATION_MAX_TEXT_LENGTH", "viel"), ("MODERATION_MAX_TEXT_LENGTH", "0"),
    ("MODERATION_APPROVE_THRESHOLD", "1.5"), ("MODERATION_REJECT_THRESHOLD", "-0.1"),
])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        load_config({name: value})


CONFIGURATION_PAGE = ROOT / "docs" / "configuration.md"


def documented_rows(page: str) -> dict[str, str]:
    """Return the settings reference's table rows: variable name -> its default cell."""
    return dict(re.findall(r"^\| `([A-Z][A-Z0-9_]*)`(?:, `[A-Z0-9_]+`)* \| ([^|]*) \|", page, re.M))


def test_configuration_page_documents_every_setting():
    documented = documented_rows(CONFIGURATION_PAGE.read_text(encoding="utf-8"))
    assert sorted({s.env for s in SETTINGS} - set(documented)) == []


def test_configuration_page_documents_only_real_settings():
    documented = documented_rows(CONFIGURATION_PAGE.read_text(encoding="utf-8"))
    assert sorted({name for name in documented if name.startswith("MODERATION_")} - {s.env for s in SETTINGS}) == []


def _stated_default(cell: str) -> str | None:
    """The first `code` value of a default cell, or None when the cell describes the default in words."""
    match = re.match(r"\s*`([^`]*)`", cell)
    return match.group(1) if match else None


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.default not in (None, "")], ids=lambda s: s.env)
def test_documented_default_is_the_codes(setting):
    stated = _stated_default(documented_rows(CONFIGURATION_PAGE.read_text(encoding="utf-8"))[setting.env])
    assert stated is not None, f"{setting.env}: no default in the table"
    if isinstance(setting.default, bool):
        assert stated == ("1" if setting.default else "0")
    elif isinstance(setting.default, int | float):
        assert float(stated) == setting.default
    else:
        assert stated == setting.default


def test_settings_without_a_fixed_default_say_so_in_words():
    documented = documented_rows(CONFIGURATION_PAGE.read_text(encoding="utf-8"))
    for setting in SETTINGS:
        if setting.default is None:  # computed at start (a path, a random secret, the model's calibration)
            assert documented[setting.env].strip(), setting.env


def test_configuration_page_documents_every_server_variable():
    conf = (ROOT / "gunicorn.conf.py").read_text(encoding="utf-8")
    read = set(re.findall(r"os\.environ(?:\.get|\.setdefault)?\(\s*[\"']([A-Z_]+)[\"']", conf))
    read |= set(re.findall(r"os\.environ\[[\"']([A-Z_]+)[\"']\]", conf))
    assert {"PORT", "BIND", "WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_CLIENT_TIMEOUT"} <= read
    documented = documented_rows(CONFIGURATION_PAGE.read_text(encoding="utf-8"))
    documented |= dict.fromkeys(re.findall(r"^\| `[A-Z_]+`, `([A-Z_]+)`", CONFIGURATION_PAGE.read_text(), re.M), "")
    assert sorted(read - set(documented)) == []


def test_the_row_parser_reads_the_table():
    page = ("| variable | default | meaning |\n|---|---|---|\n| `MODERATION_X` | `5` | x |\n"
            "| `A_B`, `C_D` | `1` | both |\nA `MODERATION_Y` mentioned in prose is not a row.\n")
    assert documented_rows(page) == {"MODERATION_X": "`5`", "A_B": "`1`"}
    assert _stated_default("`0.10` or more") == "0.10" and _stated_default("(none)") is None


# --- production safety: mode, secret, demo ----------------------------------------------------------------------------

OLD_DEV_SECRET = "dev-only-not-secret"  # the fixed development key every earlier version signed with
STRONG_SECRET = "k3Rw9-vQ1xZp7LmN2sTb8YcH4dUe6FgJ0aWo5iKq"
PRODUCTION = {"MODERATION_ENV": "production", "MODERATION_DATABASE_URL": "postgresql+psycopg://db/moderation"}


@pytest.mark.parametrize("value", ["Production", "PRODUCTION", "prod", "staging", " production", "dev", "test"])
def test_env_accepts_only_known_values(value):
    with pytest.raises(ConfigError, match=r"MODERATION_ENV=.* is invalid: expected one of development, production"):
        finalize(load_config({"MODERATION_ENV": value, "MODERATION_SECRET_KEY": STRONG_SECRET}))


@pytest.mark.parametrize("value", ["development", "production"])
def test_env_known_values_are_accepted(value):
    config = load_config({**PRODUCTION, "MODERATION_ENV": value, "MODERATION_SECRET_KEY": STRONG_SECRET})
    finalize(config)
    assert config["ENV"] == value


def test_env_given_directly_is_checked_too():
    config = load_config({})
    config["ENV"] = "Production"
    with pytest.raises(ConfigError, match="MODERATION_ENV"):
        finalize(config)


@pytest.mark.parametrize(("secret", "reason"), [
    ("x", "at least 32 bytes"),
    ("a" * 31, "at least 32 bytes"),
    ("ä" * 15 + "a", "at least 32 bytes"),  # 31 bytes in UTF-8
    (OLD_DEV_SECRET, "known default"),
    (OLD_DEV_SECRET + " " * 13, "known default"),
    ("change-me-change-me-change-me-change-me", "known default"),
])
def test_production_refuses_weak_or_default_secret(secret, reason):
    with pytest.raises(ConfigError, match=f"MODERATION_SECRET_KEY .*{reason}"):
        finalize(load_config({**PRODUCTION, "MODERATION_SECRET_KEY": secret}))


@pytest.mark.parametrize("secret", [STRONG_SECRET, "ä" * 16])
def test_production_accepts_a_strong_secret(secret):
    config = load_config({**PRODUCTION, "MODERATION_SECRET_KEY": secret})
    finalize(config)
    assert config["SECRET_KEY"] == secret


def test_production_error_says_what_to_pass():
    with pytest.raises(ConfigError) as raised:
        finalize(load_config({"MODERATION_ENV": "production"}))
    message = str(raised.value)
    assert "MODERATION_SECRET_KEY and MODERATION_DATABASE_URL" in message
    assert "secrets.token_urlsafe" in message  # how to make a secret


def test_development_refuses_the_old_fixed_secret_too():
    with pytest.raises(ConfigError, match="MODERATION_SECRET_KEY .*known default"):
        finalize(load_config({"MODERATION_SECRET_KEY": OLD_DEV_SECRET}))


def test_development_makes_a_random_secret_per_start():
    first, second = load_config({}), load_config({})
    finalize(first)
    finalize(second)
    assert first["SECRET_KEY"] != second["SECRET_KEY"]
    assert OLD_DEV_SECRET not in (first["SECRET_KEY"], second["SECRET_KEY"])
    assert len(first["SECRET_KEY"].encode()) >= 32


def test_two_development_apps_sign_with_different_secrets(app_config, make_app):
    config = {key: value for key, value in app_config.items() if key != "SECRET_KEY"}
    first, second = make_app(config), make_app(config)
    assert first.secret_key and second.secret_key and first.secret_key != second.secret_key
    assert OLD_DEV_SECRET not in (first.secret_key, second.secret_key)


def test_demo_is_off_by_default():
    config = load_config({})
    finalize(config)
    assert config["DEMO"] is False


def test_demo_is_refused_in_production():
    with pytest.raises(ConfigError, match="MODERATION_DEMO=1 is refused in production"):
        finalize(load_config({**PRODUCTION, "MODERATION_SECRET_KEY": STRONG_SECRET, "MODERATION_DEMO": "1"}))


@pytest.mark.parametrize(("name", "value"), [
    ("MODERATION_SESSION_HOURS", "0"), ("MODERATION_SESSION_HOURS", "zehn"),
    ("MODERATION_SESSION_IDLE_MINUTES", "0"), ("MODERATION_SESSION_IDLE_MINUTES", "-5"),
    ("MODERATION_DEMO", "vielleicht"),
])
def test_bad_session_and_demo_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        load_config({name: value})


@pytest.mark.parametrize("value", [
    "ftp://site.example/hook", "file:///etc/passwd", "javascript:alert(1)", "site.example/hook", "http://",
    "https://:443/hook", "http://site.example:99999/hook", "https://user:pass@site.example/hook",
    "https://site.example/hook, gopher://site.example/", "http://site.example/ hook", "https://site.example/a\nb",
])
def test_webhook_urls_must_be_http_or_https(value):
    with pytest.raises(ConfigError, match="MODERATION_WEBHOOK_URLS"):
        load_config({"MODERATION_WEBHOOK_URLS": value})


def test_good_webhook_urls_are_kept():
    value = "https://site.example/hooks/kommentare?token=abc, http://127.0.0.1:8080/h"
    config = load_config({"MODERATION_WEBHOOK_URLS": value})
    assert tuple(u.strip() for u in config["WEBHOOK_URLS"].split(",")) == ("https://site.example/hooks/kommentare?token=abc",
                                                  "http://127.0.0.1:8080/h")


@pytest.mark.parametrize("value", ["kommentare.example", "ftp://kommentare.example/", "https://kommentare.example/?x=1",
                                   "https://kommentare.example/#top", "https://", "https://u@kommentare.example/"])
def test_public_url_must_be_a_plain_http_or_https_url(value):
    with pytest.raises(ConfigError, match="MODERATION_PUBLIC_URL"):
        load_config({"MODERATION_PUBLIC_URL": value})


@pytest.mark.parametrize(("value", "kept"), [
    ("https://kommentare.example", "https://kommentare.example/"),
    ("https://kommentare.example/", "https://kommentare.example/"),
    ("http://127.0.0.1:8000/moderation", "http://127.0.0.1:8000/moderation/"),
])
def test_public_url_is_kept_with_a_trailing_slash(value, kept):
    assert load_config({"MODERATION_PUBLIC_URL": value})["PUBLIC_URL"] == kept
