"""Start real gunicorn servers for end-to-end tests, and stop them however the test ends; slow clients to
hold against them."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Longest a healthy request may take while slow clients are held (it takes milliseconds when not starved).
ANSWER_BOUND = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this venv first on PATH, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODERATION_")}
    if "MODERATION_MODEL_STORE" in os.environ:  # the test session's empty store, not the developer's own
        env["MODERATION_MODEL_STORE"] = os.environ["MODERATION_MODEL_STORE"]
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    # No random audit sample unless a test asks for one: routing assertions stay deterministic.
    env["MODERATION_AUDIT_RATE"] = "0"
    env.update(extra)
    return env


@contextmanager
def running(command: list[str], env: dict[str, str], url: str, timeout: float = 60.0) -> Iterator[subprocess.Popen]:
    """Run `command` in its own process group until `url` answers 200; kill the group afterwards."""
    log = open(Path(env.get("SERVER_LOG", os.devnull)), "wb")  # noqa: SIM115
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command} exited with {process.returncode}")
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout}s")
            time.sleep(0.2)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


class SlowClient:
    """One connection that sends `data` `step` bytes at a time, `pause` seconds apart, in its own thread
    (the first `at_once` bytes right away).

    It stops when everything is sent, when told to, or when the server answers or closes the connection:
    `ended` is then set, and `sent` says how far it got.
    """

    def __init__(self, port: int, data: bytes, *, pause: float = 0.5, step: int = 1, at_once: int = 0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
        self.sock.sendall(data[:at_once])  # e.g. a whole request head before a slow body
        self.sock.setblocking(False)
        self.data, self.pause, self.step = data, pause, step
        self.sent = at_once
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        while self.sent < len(self.data) and not self._server_spoke():
            try:
                self.sent += self.sock.send(self.data[self.sent:self.sent + self.step])
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass
            except OSError:
                self.ended.set()
                return
            if self._stop.wait(self.pause):
                return
        while not self._server_spoke() and not self._stop.wait(0.05):
            pass

    def _server_spoke(self) -> bool:
        """Whether the server has answered or closed the connection (never blocks)."""
        try:
            self.sock.recv(1)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False  # nothing yet (for TLS: nothing but the handshake's own messages)
        except OSError:
            pass
        self.ended.set()
        return True

    def close(self) -> None:
        """Stop sending and close the connection."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@contextmanager
def slow_clients(port: int, requests_: list[tuple[bytes, int]], **kwargs) -> Iterator[list[SlowClient]]:
    """Hold one `SlowClient` per (raw request, bytes sent at once) open for the duration of the block."""
    clients: list[SlowClient] = []
    try:
        for raw, at_once in requests_:
            clients.append(SlowClient(port, raw, at_once=at_once, **kwargs))
        yield clients
    finally:
        for client in clients:
            client.close()


def trickled_head(path: str = "/healthz") -> tuple[bytes, int]:
    """A request whose head would take minutes to arrive at a byte per pause."""
    return f"GET {path} HTTP/1.1\r\nHost: slow\r\nX-Padding: {'a' * 400}\r\n\r\n".encode(), 0


def slow_body(headers: dict[str, str]) -> tuple[bytes, int]:
    """A submission whose head arrives at once and whose body would take minutes."""
    text = "Ein langsamer Kommentar. " + "x" * 300
    body = json.dumps({"author_id": "langsam", "author_name": "L", "text": text}).encode()
    head = (f"POST /v1/articles/slow/comments HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
            f"Authorization: {headers['Authorization']}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body, len(head)


def never_closing() -> tuple[bytes, int]:
    """A whole request sent at once, asking the server to close after its answer."""
    raw = b"GET /healthz HTTP/1.1\r\nHost: slow\r\nConnection: close\r\n\r\n"
    return raw, len(raw)
