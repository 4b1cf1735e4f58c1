"""Start real gunicorn servers for end-to-end tests, and stop them however the test ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


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
