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
    assert config["MODEL_DIR"] == str(ROOT / "model")
    assert config["MODEL_STORE"] == str(ROOT / "instance" / "models")  # ignored by git, like the database


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
