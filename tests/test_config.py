"""Configuration from MODERATION_* variables, and the README documents every one."""

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
    assert config["MODEL_DIR"].endswith("model")


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


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`(MODERATION_[A-Z_]+)`", readme))
    assert {s.env for s in SETTINGS} <= documented


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
