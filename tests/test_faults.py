"""Faults: the database goes away and comes back, a worker is killed mid-load, the model file is corrupt."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from sqlalchemy import select

from moderation.db import make_engine
from moderation.models import Comment
from tests.conftest import SHIPPED_MODEL
from tests.servers import ROOT, free_port, running, service_env
from tests.test_bad_input import assert_error

pytestmark = pytest.mark.slow


class TcpProxy:
    """A loopback TCP proxy to a real server that a test can cut and restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self.conns: list[socket.socket] = []
        self.listener: socket.socket | None = None

    def start(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(16)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def cut(self) -> None:
        """Refuse new connections and break the open ones, as a database crash would."""
        if self.listener is not None:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
            self.listener.close()
            self.listener = None
        for conn in self.conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass
        self.conns.clear()


@pytest.fixture
def proxied_postgres(postgres_schema):
    parts = urlsplit(postgres_schema)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    proxy.start()
    netloc = f"{parts.username + '@' if parts.username else ''}127.0.0.1:{proxy.port}"
    yield proxy, urlunsplit(parts._replace(netloc=netloc)), postgres_schema
    proxy.cut()


def test_database_outage_is_503_and_recovers_without_restart(proxied_postgres, tiny_model_dir, make_app):
    proxy, url, direct = proxied_postgres
    engine = make_engine(direct)
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE comments, moderation_actions, idempotency_keys, reports, articles, "
                             "api_keys RESTART IDENTITY CASCADE")
    engine.dispose()
    app = make_app({"DATABASE_URL": url, "MODEL_DIR": str(tiny_model_dir), "RATELIMIT_ENABLED": False})
    from moderation.extensions import db
    from moderation.services.keys import create_key
    with app.app_context():
        token = create_key(db.session, role="backend", name="outage")[1]
        db.session.commit()
    client, headers = app.test_client(), {"Authorization": f"Bearer {token}"}
    body = {"author_id": "l1", "author_name": "L", "text": "Vor dem Ausfall."}
    assert client.post("/v1/articles/a/comments", headers=headers, json=body).status_code == 201

    proxy.cut()
    down = client.post("/v1/articles/a/comments", headers=headers, json={**body, "text": "Während des Ausfalls."})
    assert_error(down, 503, "database_unavailable")
    assert int(down.headers["Retry-After"]) > 0
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["status"] == "not_ready"
    assert client.get("/v1/articles/a/comments").status_code == 503

    proxy.start()
    back = client.post("/v1/articles/a/comments", headers=headers, json={**body, "text": "Nach dem Ausfall."})
    assert back.status_code == 201, back.json
    assert client.get("/readyz").status_code == 200
    engine = make_engine(direct)
    with engine.connect() as conn:
        stored = conn.execute(select(Comment.text).order_by(Comment.id)).scalars().all()
    engine.dispose()
    assert stored == ["Vor dem Ausfall.", "Nach dem Ausfall."]


def _worker_pids(master: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_killed_worker_loses_no_acknowledged_comment(backend, tmp_path, request):
    if backend == "postgres":
        url = request.getfixturevalue("postgres_schema")
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE comments, moderation_actions, idempotency_keys, reports, articles, "
                                 "api_keys RESTART IDENTITY CASCADE")
        engine.dispose()
    else:
        url = f"sqlite:///{tmp_path / 'kill.db'}"
    port = free_port()
    env = service_env(PORT=str(port), MODERATION_DATABASE_URL=url, MODERATION_MODEL_DIR=str(SHIPPED_MODEL),
                      WEB_CONCURRENCY="2", MODERATION_RATELIMIT_ENABLED="0", SERVER_LOG=str(tmp_path / "log"))
    base = f"http://127.0.0.1:{port}"
    with running(["./boot.sh"], env, f"{base}/readyz") as server:
        token = subprocess.run([sys.executable, "-m", "moderation", "keys", "create", "--role", "backend",
                                "--name", "load"], cwd=ROOT, env=env, capture_output=True, text=True,
                               check=True).stdout.strip()
        headers = {"Authorization": f"Bearer {token}"}
        acknowledged: list[int] = []
        failures = 0

        def send(i: int) -> None:
            nonlocal failures
            try:
                response = requests.post(f"{base}/v1/articles/last/comments", headers=headers, timeout=10, json={
                    "author_id": f"a{i}", "author_name": "A", "text": f"Kommentar Nummer {i} zum Lasttest."})
                if response.status_code == 201:
                    acknowledged.append(response.json()["id"])
                else:
                    failures += 1
            except requests.RequestException:
                failures += 1

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(send, i) for i in range(240)]
            time.sleep(0.5)
            victims = _worker_pids(server.pid)
            assert victims, "gunicorn has no workers"
            os.kill(victims[0], signal.SIGKILL)
            for future in futures:
                future.result()
    engine = make_engine(url)
    with engine.connect() as conn:
        stored = set(conn.execute(select(Comment.id)).scalars())
    engine.dispose()
    assert len(acknowledged) > 100
    assert set(acknowledged) <= stored
    assert len(stored) - len(acknowledged) <= failures  # a reply lost in the kill may still have been stored


def test_corrupt_model_refuses_to_start(tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, broken)
    metadata = json.loads((broken / "metadata.json").read_text())
    artifact = broken / metadata["artifact"]["file"]
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    env = service_env(PORT=str(free_port()), MODERATION_DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
                      MODERATION_MODEL_DIR=str(broken))
    result = subprocess.run(["./boot.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "SHA-256" in result.stderr and str(artifact) in result.stderr
