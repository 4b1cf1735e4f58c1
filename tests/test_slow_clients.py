"""Slow clients against the service as `make run` and the image start it (boot.sh, gunicorn.conf.py).

A client that sends its request a byte at a time must cost the server no worker and no thread, and
must be cut off once it has taken longer than GUNICORN_CLIENT_TIMEOUT; everyone else keeps being
answered meanwhile. The bounds below are generous: they fail only when a request was starved.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.conftest import FRIENDLY
from tests.servers import (
    ANSWER_BOUND,
    ROOT,
    free_port,
    never_closing,
    running,
    service_env,
    slow_body,
    slow_clients,
    trickled_head,
)

pytestmark = pytest.mark.slow

# More slow connections than the two workers have threads between them: more threads alone cannot pass.
TRICKLED_HEADS = 24
SLOW_BODIES = 8
# Clients that take their answer but never close their end (gunicorn waits 2 s for each, in its event loop).
NEVER_CLOSING = 16


@contextmanager
def service(tmp_path: Path, model_dir: Path, **env: str) -> Iterator[tuple[str, int, dict[str, str]]]:
    """Run boot.sh on a free port; yield its base URL, port and a backend key's headers."""
    port = free_port()
    child_env = service_env(PORT=str(port), MODERATION_DATABASE_URL=f"sqlite:///{tmp_path / 'slow.db'}",
                            MODERATION_MODEL_DIR=str(model_dir), SERVER_LOG=str(tmp_path / "server.log"), **env)
    base = f"http://127.0.0.1:{port}"
    with running(["./boot.sh"], child_env, f"{base}/healthz"):
        created = subprocess.run(
            [sys.executable, "-m", "moderation", "keys", "create", "--role", "backend", "--name", "website"],
            cwd=ROOT, env=child_env, capture_output=True, text=True, check=True,
        )
        yield base, port, {"Authorization": f"Bearer {created.stdout.strip()}"}


def submit(base: str, headers: dict[str, str], author: str) -> requests.Response:
    return requests.post(f"{base}/v1/articles/fast/comments", headers=headers, timeout=ANSWER_BOUND,
                         json={"author_id": author, "author_name": "A", "text": FRIENDLY[1]})


def test_slow_clients_do_not_starve_health_or_submissions(tmp_path, tiny_model_dir):
    # A long client timeout: this test is about being answered while the slow clients are still held.
    with service(tmp_path, tiny_model_dir, GUNICORN_CLIENT_TIMEOUT="120") as (base, port, headers):
        held = [trickled_head()] * TRICKLED_HEADS + [slow_body(headers)] * SLOW_BODIES
        with slow_clients(port, held, pause=0.5) as clients, \
                slow_clients(port, [never_closing()] * NEVER_CLOSING) as lingering:
            time.sleep(2)  # every connection accepted and part-way through its request, or answered
            for i in range(3):
                assert requests.get(f"{base}/healthz", timeout=ANSWER_BOUND).json() == {"status": "ok"}
                created = submit(base, headers, f"schnell-{i}")
                assert created.status_code == 201, created.text
            assert not [c for c in clients if c.ended.is_set()], "slow clients were let go before the checks ran"
            assert all(c.ended.is_set() for c in lingering)
        listing = requests.get(f"{base}/v1/articles/slow/comments", timeout=ANSWER_BOUND).json()
        assert listing["total"] == 0  # no slow body was ever completed, so nothing was stored


@pytest.mark.parametrize("shape", ["trickled head", "slow body"])
def test_a_client_too_slow_to_send_its_request_is_cut_off(tmp_path, tiny_model_dir, shape):
    with service(tmp_path, tiny_model_dir, GUNICORN_CLIENT_TIMEOUT="2") as (base, port, headers):
        held = trickled_head() if shape == "trickled head" else slow_body(headers)
        with slow_clients(port, [held], pause=0.5) as (client,):
            assert client.ended.wait(15), "the server kept waiting for a request that never finished"
            assert client.sent < len(held[0])
        assert requests.get(f"{base}/v1/articles/slow/comments", timeout=ANSWER_BOUND).json()["total"] == 0


# --- the worker still speaks HTTP/1.1 correctly: requests in pieces, pipelined, chunked, 100-continue ---

def raw_exchange(port: int, pieces: list[bytes], pause: float = 0.2) -> list[int]:
    """Send `pieces` with pauses between them on one connection, read until the server closes it, and
    return the status codes of every answer (the last request must say `Connection: close`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_BOUND) as sock:
        for index, piece in enumerate(pieces):
            if index:
                time.sleep(pause)
            sock.sendall(piece)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    statuses = []
    while received:  # answer by answer: status line, headers, Content-Length bytes of body
        head, _, received = received.partition(b"\r\n\r\n")
        statuses.append(int(head.split(b" ")[1]))
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        received = received[int(length.group(1)) if length else 0:]
    return statuses


def _score(token: str, *, close: bool = True, extra: str = "", body: bytes | None = None) -> tuple[bytes, bytes]:
    body = body if body is not None else json.dumps({"text": FRIENDLY[2]}).encode()
    head = (f"POST /v1/score HTTP/1.1\r\nHost: t\r\nAuthorization: {token}\r\nContent-Type: application/json\r\n"
            f"{extra}{'Connection: close' + chr(13) + chr(10) if close else ''}").encode()
    if "Transfer-Encoding" not in extra:
        head += f"Content-Length: {len(body)}\r\n".encode()
    return head + b"\r\n", body


def _chunked(body: bytes) -> bytes:
    return b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:7], body[7:])) + b"0\r\n\r\n"


GET_CLOSE = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
GET_KEEP = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"


def _cases(token: str) -> dict[str, tuple[list[bytes], list[int]]]:
    head, body = _score(token)
    keep_head, keep_body = _score(token, close=False)
    chunked_head, _ = _score(token, extra="Transfer-Encoding: chunked\r\n")
    expect_head, _ = _score(token, extra="Expect: 100-continue\r\n")
    huge_head, _ = _score(token, body=b"{}" + b" " * 70_000)
    return {
        "whole request in one piece": ([GET_CLOSE], [200]),
        "request line and headers in pieces": ([GET_CLOSE[:5], GET_CLOSE[5:20], GET_CLOSE[20:]], [200]),
        "head, then the body in pieces": ([head, body[:10], body[10:]], [200]),
        "two requests pipelined in one piece": ([GET_KEEP + GET_CLOSE], [200, 200]),
        "next request already behind a body": ([keep_head + keep_body + GET_CLOSE], [200, 200]),
        "keep-alive, second request later": ([keep_head + keep_body, GET_CLOSE], [200, 200]),
        "chunked body in pieces": ([chunked_head, _chunked(body)[:9], _chunked(body)[9:]], [200]),
        "Expect: 100-continue": ([expect_head, body], [100, 200]),
        "body over the limit is refused without being read": ([huge_head], [413]),
        "a head that never ends": ([b"GET /healthz HTTP/1.1\r\n" + b"X-A: b\r\n" * 10_000], [431]),
    }


@pytest.fixture(scope="module")
def plain_service(tmp_path_factory, tiny_model_dir):
    with service(tmp_path_factory.mktemp("http11"), tiny_model_dir) as started:
        yield started


@pytest.mark.parametrize("case", list(_cases("x")))
def test_requests_in_any_shape_are_answered(plain_service, case):
    _base, port, headers = plain_service
    pieces, statuses = _cases(headers["Authorization"])[case]
    assert raw_exchange(port, pieces) == statuses
