"""A policy change through the API reaches both workers of a running gunicorn, without a restart."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from moderation.services.policy import CACHE_SECONDS
from tests.conftest import FRIENDLY
from tests.servers import ROOT, free_port, running, service_env

pytestmark = pytest.mark.slow

PID_VALUE = re.compile(r'^moderation_routing_policy\{([^}]*)\} (\S+)$', re.M)


def max_leak_by_worker(base: str) -> dict[str, float]:
    """Return each live worker's applied max_leak from /metrics (a gauge per worker pid)."""
    text = requests.get(f"{base}/metrics", timeout=10).text
    found = {}
    for labels, value in PID_VALUE.findall(text):
        parts = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if parts.get("setting") == "max_leak":
            found[parts["pid"]] = float(value)
    return found


def key(env: dict[str, str], role: str) -> dict[str, str]:
    token = subprocess.run([sys.executable, "-m", "moderation", "keys", "create", "--role", role, "--name",
                            f"{role}-key"], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    return {"Authorization": f"Bearer {token.strip()}"}


def submit(base: str, headers: dict[str, str], i: int) -> dict:
    # A fresh connection per request, so that the kernel hands requests to both workers.
    response = requests.post(f"{base}/v1/articles/live/comments", headers={**headers, "Connection": "close"},
                             timeout=10, json={"author_id": f"l{i}", "author_name": "L",
                                               "text": f"{FRIENDLY[i % len(FRIENDLY)]} ({i})"})
    assert response.status_code == 201, response.text
    return response.json()


def test_policy_change_reaches_every_worker_without_restart(tmp_path: Path, calibrated_model_dir: Path):
    port = free_port()
    env = service_env(PORT=str(port), WEB_CONCURRENCY="2", SERVER_LOG=str(tmp_path / "server.log"),
                      MODERATION_DATABASE_URL=f"sqlite:///{tmp_path / 'policy.db'}",
                      MODERATION_MODEL_DIR=str(calibrated_model_dir), MODERATION_RATELIMIT_ENABLED="0")
    subprocess.run([sys.executable, "-m", "moderation", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    admin, backend = key(env, "admin"), key(env, "backend")
    base = f"http://127.0.0.1:{port}"
    with running([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], env, f"{base}/readyz"):
        # Before: the default policy (2 %) publishes the friendly comments, in both workers.
        i = 0
        deadline = time.monotonic() + 60
        while len(max_leak_by_worker(base)) < 2 and time.monotonic() < deadline and i < 400:
            assert submit(base, backend, i)["status"] == "approved"
            i += 1
        before = max_leak_by_worker(base)
        assert len(before) == 2 and set(before.values()) == {0.02}, before

        changed = requests.put(f"{base}/v1/moderation/policy", headers=admin, timeout=10, json={
            "max_leak": 0.01, "min_reject_precision": 0.95, "expected_removal_rate": 0.1, "audit_rate": 0.0})
        assert changed.status_code == 200 and changed.json()["thresholds"]["approve"] == 0.0
        changed_at = time.monotonic()

        # After at most CACHE_SECONDS every worker routes with the new policy: nothing is published by score.
        time.sleep(CACHE_SECONDS + 0.5)
        after: dict[str, float] = {}
        outcomes = []
        deadline = time.monotonic() + 60
        while (len(after) < 2 or set(after.values()) != {0.01}) and time.monotonic() < deadline and i < 800:
            outcomes.append(submit(base, backend, i))
            i += 1
            after = max_leak_by_worker(base)
        assert time.monotonic() - changed_at > CACHE_SECONDS
        assert after == dict.fromkeys(before, 0.01)  # the same two worker processes: no restart
        assert outcomes and {(c["status"], tuple(c["reasons"])) for c in outcomes} == {
            ("pending", ("toxicity_uncertain",))}
        # Any worker answers with the stored policy.
        for _ in range(6):
            read = requests.get(f"{base}/v1/moderation/policy", headers={**admin, "Connection": "close"}, timeout=10)
            assert read.json()["policy"]["max_leak"] == 0.01
