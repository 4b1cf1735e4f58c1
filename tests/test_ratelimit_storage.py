"""Where limit counts live: shared by the workers of one machine by default, and a Redis outage is no outage."""

from __future__ import annotations

import logging
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import redis
import requests

from moderation.config import ConfigError, finalize, load_config
from tests.conftest import FRIENDLY
from tests.servers import ROOT, free_port, running, service_env
from tests.test_bad_input import assert_error
from tests.test_rate_limits import post

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
needs_redis_server = pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="redis-server is not installed")
# Where limits are counted does not depend on the database: these run on SQLite only.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@contextmanager
def redis_server(port: int):
    """Run a throwaway Redis on `port` (nothing saved to disk) until the block ends."""
    process = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=1)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=20)


def counts_in_redis(client: redis.Redis, prefix: str) -> list[int]:
    """The rate-limit counters this test's app keeps in `client` (limits stores them as LIMITS:LIMITER/...)."""
    return sorted(int(client.get(key)) for key in client.scan_iter(f"LIMITS:LIMITER/{prefix}/*"))


def metric(client, name: str) -> float:
    """Read one unlabelled sample from the app's /metrics."""
    found = re.search(rf"^{name} (\S+)$", client.get("/metrics").get_data(as_text=True), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def storage_events(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("ratelimit_storage_")]


@pytest.fixture
def redis_app(app_config, make_app):
    """An app counting in a Redis on a port of its own, built before the test (so caplog sees its logs)."""
    port, prefix = free_port(), f"test-{uuid.uuid4().hex}"
    app = make_app({**app_config, "RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URL": f"redis://127.0.0.1:{port}/0",
                    "RATELIMIT_PER_AUTHOR": "3/minute", "RATELIMIT_KEY_PREFIX": prefix,
                    "RATELIMIT_STORAGE_RETRY_SECONDS": 0.0})
    return app, port, prefix


@sqlite_only
@needs_redis_server
def test_a_redis_outage_falls_back_to_memory_and_recovers(redis_app, auth_for, count_rows, caplog):
    app, port, prefix = redis_app
    caplog.set_level(logging.INFO)
    web, auth = app.test_client(), auth_for(app)
    with redis_server(port) as client:
        assert post(web, auth["backend"], "vorher", 0).status_code == 201
        assert counts_in_redis(client, prefix) == [1, 1]  # the backend key's count and the author's
    failovers = metric(web, "moderation_ratelimit_storage_failovers_total")

    # Redis is gone: submissions go on, limited in this worker's memory, and /readyz stays 200 but says so.
    assert [post(web, auth["backend"], "waehrend", i).status_code for i in range(3)] == [201] * 3
    before = count_rows()
    assert_error(post(web, auth["backend"], "waehrend", 3), 429, "rate_limited")
    assert count_rows() == before
    ready = web.get("/readyz")
    assert ready.status_code == 200
    assert (ready.json["status"], ready.json["limiter"]) == ("ready", "degraded: in-memory fallback")
    assert metric(web, "moderation_ratelimit_storage_failovers_total") == failovers + 1
    assert metric(web, "moderation_ratelimit_storage_degraded") == 1
    assert storage_events(caplog) == ["ratelimit_storage_unreachable"]  # once per outage, not per request

    # Redis is back (empty): counting goes back to it.
    with redis_server(port) as client:
        assert [post(web, auth["backend"], "nachher", i).status_code for i in range(3)] == [201] * 3
        assert post(web, auth["backend"], "nachher", 3).status_code == 429
        assert counts_in_redis(client, prefix) == [4, 4]
        assert web.get("/readyz").json["limiter"] == "ok"
        assert metric(web, "moderation_ratelimit_storage_degraded") == 0
    assert storage_events(caplog) == ["ratelimit_storage_unreachable", "ratelimit_storage_recovered"]


@sqlite_only
def test_readyz_reports_a_down_storage_before_any_limited_request(app_config, make_app):
    """A probe alone finds the outage, so a worker that served no submission yet does not claim `ok`."""
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app = make_app({**app_config, "RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URL": dead})
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 200
    assert ready.json["limiter"] == "degraded: in-memory fallback"


@sqlite_only
@pytest.mark.parametrize(("enabled", "storage", "state"), [
    (False, "memory://", "disabled"), (True, "memory://", "ok"), (True, None, "ok"),
])
def test_readyz_names_the_limiter_state(app_config, make_app, enabled, storage, state):
    app = make_app({**app_config, "RATELIMIT_ENABLED": enabled, "RATELIMIT_STORAGE_URL": storage})
    assert app.test_client().get("/readyz").json["limiter"] == state


@sqlite_only
def test_a_redis_that_never_answers_costs_a_timeout_not_a_hang(app_config, auth_for, make_app):
    """A Redis behind a dead network (it accepts connections and never answers) must not hang submissions."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes connections; nobody ever reads or answers
        app = make_app({**app_config, "RATELIMIT_ENABLED": True,
                        "RATELIMIT_STORAGE_URL": f"redis://127.0.0.1:{silent.getsockname()[1]}/0"})
        web, auth = app.test_client(), auth_for(app)
        answers: list[int] = []
        worker = threading.Thread(target=lambda: answers.append(post(web, auth["backend"], "x", 0).status_code))
        worker.start()
        worker.join(timeout=30)  # generous: the storage timeout is about a second
        alive = worker.is_alive()
    worker.join()  # closing the socket above ends a hung request
    assert not alive and answers == [201]


# --- The default: a SQLite file beside the database, shared by the workers of one machine ---

@pytest.mark.parametrize(("database", "expected"), [
    ("sqlite:////srv/data/moderation.db", "sqlite:////srv/data/moderation.ratelimits.db"),
    ("sqlite:///relative/comments.sqlite", "sqlite:///relative/comments.ratelimits.db"),
    ("postgresql+psycopg://u@db/moderation", "instance/ratelimits.db"),
    ("sqlite://", "instance/ratelimits.db"),
])
def test_default_storage_is_a_file_beside_the_database(database, expected):
    config = load_config({"MODERATION_DATABASE_URL": database})
    finalize(config)
    assert config["RATELIMIT_STORAGE_URL"].endswith(expected)
    assert config["RATELIMIT_STORAGE_URL"].startswith("sqlite:///")


def test_the_limit_storage_must_not_be_the_database():
    config = load_config({"MODERATION_DATABASE_URL": "sqlite:////srv/m.db",
                          "MODERATION_RATELIMIT_STORAGE_URL": "sqlite:////srv/m.db"})
    with pytest.raises(ConfigError, match="MODERATION_RATELIMIT_STORAGE_URL"):
        finalize(config)


def test_file_storage_counts_expires_and_clears(tmp_path, monkeypatch):
    from moderation import ratelimit_storage
    from moderation.ratelimit_storage import SQLiteStorage

    now = [1000.0]
    monkeypatch.setattr(ratelimit_storage.time, "time", lambda: now[0])
    first = SQLiteStorage(f"sqlite:///{tmp_path / 'deep' / 'limits.db'}")
    second = SQLiteStorage(f"sqlite:///{tmp_path / 'deep' / 'limits.db'}")  # another worker, same file
    assert first.check() and second.check()
    assert [first.incr("k", 60), second.incr("k", 60), first.incr("k", 60, amount=3)] == [1, 2, 5]
    assert (second.get("k"), second.get_expiry("k"), second.get("other")) == (5, 1060.0, 0)
    now[0] = 1060.0  # the window is over: the count starts again, with a new expiry
    assert (first.get("k"), first.get_expiry("k")) == (0, 1060.0)
    assert first.incr("k", 60) == 1 and second.get_expiry("k") == 1120.0
    second.clear("k")
    assert first.get("k") == 0
    first.incr("a", 60)
    first.incr("b", 60)
    assert second.reset() == 2 and first.get("a") == 0


@sqlite_only
def test_file_storage_in_an_unwritable_place_degrades_instead_of_failing(app_config, auth_for, make_app, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    app = make_app({**app_config, "RATELIMIT_ENABLED": True, "RATELIMIT_PER_AUTHOR": "2/minute",
                    "RATELIMIT_STORAGE_URL": f"sqlite:///{blocker / 'limits.db'}"})
    web, auth = app.test_client(), auth_for(app)
    assert [post(web, auth["backend"], "x", i).status_code for i in range(3)] == [201, 201, 429]
    assert web.get("/readyz").json["limiter"] == "degraded: in-memory fallback"


@pytest.mark.slow
def test_two_gunicorn_workers_let_exactly_the_limit_through(tmp_path, tiny_model_dir):
    """With the default storage, 5 a minute means 5, however the requests spread over the workers."""
    port = free_port()
    access_log = tmp_path / "access.log"
    env = service_env(PORT=str(port), MODERATION_DATABASE_URL=f"sqlite:///{tmp_path / 'two.db'}",
                      MODERATION_MODEL_DIR=str(tiny_model_dir), WEB_CONCURRENCY="2",
                      MODERATION_RATELIMIT_PER_AUTHOR="5/minute", SERVER_LOG=str(tmp_path / "server.log"),
                      GUNICORN_CMD_ARGS=f"--access-logfile {access_log} --access-logformat '%(p)s %(s)s'")
    base = f"http://127.0.0.1:{port}"
    with running(["./boot.sh"], env, f"{base}/readyz"):
        token = subprocess.run([sys.executable, "-m", "moderation", "keys", "create", "--role", "backend",
                                "--name", "website"], cwd=ROOT, env=env, capture_output=True, text=True,
                               check=True).stdout.strip()
        headers = {"Authorization": f"Bearer {token}"}

        def send(i: int) -> int:
            return requests.post(f"{base}/v1/articles/a/comments", headers=headers, timeout=30, json={
                "author_id": "vielschreiber", "author_name": "V", "text": f"{FRIENDLY[1]} {i}"}).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = Counter(pool.map(send, range(40)))
    assert statuses == {201: 5, 429: 35}
    served_by = {line.split()[0] for line in access_log.read_text().splitlines() if line.endswith((" 201", " 429"))}
    assert len(served_by) == 2, served_by  # both workers took submissions


@pytest.mark.slow
@needs_redis_server
def test_gunicorn_keeps_taking_submissions_through_a_redis_outage(tmp_path, tiny_model_dir):
    """The outage as the audit saw it (real gunicorn, two workers): no 500, /readyz degraded, then Redis again."""
    port, redis_port = free_port(), free_port()
    server_log = tmp_path / "server.log"
    env = service_env(PORT=str(port), MODERATION_DATABASE_URL=f"sqlite:///{tmp_path / 'outage.db'}",
                      MODERATION_MODEL_DIR=str(tiny_model_dir), WEB_CONCURRENCY="2", SERVER_LOG=str(server_log),
                      MODERATION_RATELIMIT_STORAGE_URL=f"redis://127.0.0.1:{redis_port}/0",
                      MODERATION_RATELIMIT_STORAGE_RETRY_SECONDS="0", MODERATION_RATELIMIT_PER_AUTHOR="3/minute")
    base = f"http://127.0.0.1:{port}"
    first_redis = ExitStack()
    first_redis.enter_context(redis_server(redis_port))  # up before gunicorn, so that startup probes find it
    with first_redis, running(["./boot.sh"], env, f"{base}/readyz"):
        token = subprocess.run([sys.executable, "-m", "moderation", "keys", "create", "--role", "backend",
                                "--name", "website"], cwd=ROOT, env=env, capture_output=True, text=True,
                               check=True).stdout.strip()
        headers = {"Authorization": f"Bearer {token}"}

        def send(author: str, i: int) -> int:
            return requests.post(f"{base}/v1/articles/a/comments", headers=headers, timeout=30, json={
                "author_id": author, "author_name": "A", "text": f"{FRIENDLY[2]} {i}"}).status_code

        assert send("vorher", 0) == 201
        assert requests.get(f"{base}/readyz", timeout=10).json()["limiter"] == "ok"
        first_redis.close()  # Redis is gone
        with ThreadPoolExecutor(4) as pool:
            during = Counter(pool.map(lambda i: send("waehrend", i), range(12)))
        assert set(during) == {201, 429} and 3 <= during[201] <= 6  # counted per worker meanwhile
        ready = requests.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["limiter"] == "degraded: in-memory fallback"
        scrape = requests.get(f"{base}/metrics", timeout=10).text
        assert re.search(r"^moderation_ratelimit_storage_degraded 1\.0$", scrape, re.MULTILINE), scrape[-2000:]
        with redis_server(redis_port) as client:
            assert [send("nachher", i) for i in range(4)] == [201, 201, 201, 429]  # shared again
            assert any(key.startswith(b"LIMITS:LIMITER/moderation/author:") for key in client.scan_iter())
            assert requests.get(f"{base}/readyz", timeout=10).json()["limiter"] == "ok"
    outages = server_log.read_text().count('"event": "ratelimit_storage_unreachable"')
    assert 1 <= outages <= 2  # once per worker, not once per request
