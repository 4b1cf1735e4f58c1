"""End to end with real gunicorn (two workers): forged cookies open nothing, a real sign-in works on
both workers and ends at logout; boot.sh refuses an unsafe production configuration."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from tests.servers import ROOT, free_port, running, service_env

pytestmark = pytest.mark.slow

OLD_DEV_SECRET = "dev-only-not-secret"
# gunicorn's access log with the worker's pid (`<1234>`), so the test sees which worker answered.
ACCESS_LOG = "--access-logfile=- --access-logformat='%(p)s %(m)s %(U)s %(s)s'"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FETCH = {"X-Requested-With": "fetch"}


def forge(secret: str, payload: dict) -> str:
    forger = Flask("forger")
    forger.secret_key = secret
    return SecureCookieSessionInterface().get_signing_serializer(forger).dumps(payload)


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "moderation", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def workers_that_answered(log: Path, path: str, status: int) -> set[str]:
    return set(re.findall(rf"^<(\d+)> \w+ {re.escape(path)} {status}$", log.read_text(), re.M))


def test_forged_cookie_refused_and_real_sign_in_works_on_both_workers(tmp_path, tiny_model_dir):
    port, log = free_port(), tmp_path / "server.log"
    env = service_env(PORT=str(port), WEB_CONCURRENCY="2", SERVER_LOG=str(log), GUNICORN_CMD_ARGS=ACCESS_LOG,
                      MODERATION_DATABASE_URL=f"sqlite:///{tmp_path / 'sessions.db'}",
                      MODERATION_MODEL_DIR=str(tiny_model_dir), MODERATION_RATELIMIT_ENABLED="0",
                      MODERATION_APPROVE_THRESHOLD="0.35", MODERATION_REJECT_THRESHOLD="0.65")
    base = f"http://127.0.0.1:{port}"
    with running(["./boot.sh"], env, f"{base}/readyz"):
        admin = cli(env, "keys", "create", "--role", "admin", "--name", "chefin")
        backend = cli(env, "keys", "create", "--role", "backend", "--name", "website")
        admin_id = int(re.search(r"^\s*(\d+)\s+admin\b", cli(env, "keys", "list"), re.M).group(1))
        as_admin, as_backend = ({"Authorization": f"Bearer {token}"} for token in (admin, backend))
        assert requests.put(f"{base}/v1/articles/e2e-1/settings", headers=as_admin, timeout=10,
                            json={"comments_open": True, "premoderation": True}).status_code == 200
        comment = requests.post(f"{base}/v1/articles/e2e-1/comments", headers=as_backend, timeout=10, json={
            "author_id": "leser-1", "author_name": "Anna", "text": "Wann wird die Brücke endlich saniert?"}).json()
        assert comment["status"] == "pending"

        # What opened /moderation/ as an admin before: a cookie signed with the old development key.
        forged = forge(OLD_DEV_SECRET, {"key_id": admin_id, "key_name": "chefin", "csrf_token": "t"})
        for _ in range(6):  # whichever worker answers
            page = requests.get(f"{base}/moderation/", cookies={"session": forged}, allow_redirects=False,
                                timeout=10)
            assert page.status_code == 302 and page.headers["Location"].startswith("/moderation/login")
            decision = requests.post(f"{base}/moderation/comments/{comment['id']}/decision",
                                     cookies={"session": forged}, data={"decision": "approve"},
                                     headers={**FETCH, "X-CSRF-Token": "t"}, allow_redirects=False, timeout=10)
            assert decision.status_code in (400, 401)
        stored = requests.get(f"{base}/v1/comments/{comment['id']}", headers=as_backend, timeout=10).json()
        assert stored["status"] == "pending"

        # A real sign-in through the form, then requests until both workers have answered it.
        browser = requests.Session()
        login = browser.get(f"{base}/moderation/login", timeout=10)
        signed = browser.post(f"{base}/moderation/login", allow_redirects=False, timeout=10,
                              data={"api_key": admin, "csrf_token": CSRF.search(login.text).group(1)})
        assert signed.status_code == 302 and signed.headers["Location"] == "/moderation/"
        for attempt in range(200):
            # A new connection each time: a kept-alive one stays with the worker that accepted it.
            page = browser.get(f"{base}/moderation/", allow_redirects=False, timeout=10,
                               headers={"Connection": "close"})
            assert page.status_code == 200 and "chefin" in page.text, attempt
            if attempt >= 10 and len(workers_that_answered(log, "/moderation/", 200)) == 2:
                break
        assert len(workers_that_answered(log, "/moderation/", 200)) == 2, log.read_text()[-2000:]

        token = CSRF.search(page.text).group(1)
        approved = browser.post(f"{base}/moderation/comments/{comment['id']}/decision", data={"decision": "approve"},
                                headers={**FETCH, "X-CSRF-Token": token}, timeout=10)
        assert approved.status_code == 200 and approved.json()["status"] == "approved"

        # Logout ends the session on the server: a copy of the cookie opens nothing on either worker.
        copied = browser.cookies.get("session")
        assert browser.post(f"{base}/moderation/logout", data={"csrf_token": token}, allow_redirects=False,
                            timeout=10).status_code == 302
        for _ in range(6):
            page = requests.get(f"{base}/moderation/", cookies={"session": copied}, allow_redirects=False,
                                timeout=10)
            assert page.status_code == 302


@pytest.mark.parametrize(("extra", "message"), [
    ({}, "production needs MODERATION_SECRET_KEY and MODERATION_DATABASE_URL"),
    ({"MODERATION_SECRET_KEY": "kurz", "MODERATION_DATABASE_URL": "sqlite:///DB"},
     "MODERATION_SECRET_KEY is too short"),
    ({"MODERATION_SECRET_KEY": OLD_DEV_SECRET, "MODERATION_DATABASE_URL": "sqlite:///DB"},
     "MODERATION_SECRET_KEY is a known default"),
    ({"MODERATION_ENV": "Production", "MODERATION_SECRET_KEY": "x" * 40, "MODERATION_DATABASE_URL": "sqlite:///DB"},
     "MODERATION_ENV='Production' is invalid"),
    ({"MODERATION_DEMO": "1", "MODERATION_SECRET_KEY": "x" * 40, "MODERATION_DATABASE_URL": "sqlite:///DB"},
     "MODERATION_DEMO"),
])
def test_boot_refuses_an_unsafe_production_configuration(tmp_path, tiny_model_dir, extra, message):
    """The image's mode (MODERATION_ENV=production): boot.sh stops before migrating or serving, and says why."""
    database = tmp_path / "never.db"
    extra = {k: v.replace("DB", str(database)) for k, v in extra.items()}
    env = service_env(PORT=str(free_port()), MODERATION_MODEL_DIR=str(tiny_model_dir),
                      **{"MODERATION_ENV": "production", **extra})
    process = subprocess.Popen(["./boot.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("boot.sh started a server with an unsafe production configuration")
    assert process.returncode != 0
    assert message in err, err
    assert not database.exists()
