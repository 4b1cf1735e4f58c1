"""End to end: boot.sh (migrate, then gunicorn) with the shipped model, over real HTTP."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from moderation.ml import load_model
from tests.conftest import SHIPPED_MODEL
from tests.servers import ROOT, free_port, running, service_env

pytestmark = pytest.mark.slow


def test_readme_walkthrough_against_real_gunicorn(tmp_path):
    port = free_port()
    env = service_env(PORT=str(port), MODERATION_DATABASE_URL=f"sqlite:///{tmp_path / 'e2e.db'}",
                      MODERATION_MODEL_DIR=str(SHIPPED_MODEL), WEB_CONCURRENCY="2",
                      SERVER_LOG=str(tmp_path / "server.log"))
    base = f"http://127.0.0.1:{port}"
    with running(["./boot.sh"], env, f"{base}/readyz"):
        created = subprocess.run(
            [sys.executable, "-m", "moderation", "keys", "create", "--role", "backend", "--name", "website"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        )
        headers = {"Authorization": f"Bearer {created.stdout.strip()}"}
        friendly = requests.post(f"{base}/v1/articles/politik-123/comments", headers=headers, timeout=10, json={
            "author_id": "leser-1", "author_name": "Anna",
            "text": "Vielen Dank für den informativen Artikel, ich habe viel gelernt.",
        })
        insult = requests.post(f"{base}/v1/articles/politik-123/comments", headers=headers, timeout=10, json={
            "author_id": "leser-2", "author_name": "Troll",
            "text": "Du bist ein widerlicher, dummer Drecksack. Halt endlich dein Maul, du Idiot!",
        })
        assert friendly.status_code == insult.status_code == 201
        # The shipped model publishes only what it is sure of; a friendly comment may wait for a person.
        assert friendly.json()["status"] in {"approved", "pending"}
        assert friendly.json()["toxicity"] < 0.5 < insult.json()["toxicity"]
        # Rejected by score alone only at or above the model's reject threshold (none: 1.0), else held
        # as likely offensive.
        reject_at = load_model(SHIPPED_MODEL).reject_threshold
        if insult.json()["toxicity"] >= reject_at:
            assert (insult.json()["status"], insult.json()["reasons"]) == ("rejected", ["toxicity_high"])
        else:
            assert (insult.json()["status"], insult.json()["reasons"]) == ("pending", ["toxicity_likely"])
        listing = requests.get(f"{base}/v1/articles/politik-123/comments", timeout=10).json()
        published = [friendly.json()["id"]] if friendly.json()["status"] == "approved" else []
        assert [c["id"] for c in listing["comments"]] == published
        assert listing["total"] == len(published)
        ready = requests.get(f"{base}/readyz", timeout=10).json()
        assert ready["model_version"] == friendly.json()["model_version"]
        bad = requests.post(f"{base}/v1/articles/politik-123/comments", timeout=10, data="{kaputt",
                            headers={**headers, "Content-Type": "application/json"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "malformed_json"
