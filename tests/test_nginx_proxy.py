"""deploy/nginx/kommentare.conf in front of a real gunicorn: requests pass, the client address is set, slow
clients stay with nginx.

nginx runs from a temporary folder on free ports with a throwaway certificate (non-root paths; only the
file's ADAPT lines are replaced). Behind it, boot.sh runs on purpose with ONE sync worker, the old
configuration that a single slow client starves: whatever keeps it answering here is nginx's buffering.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.conftest import FRIENDLY
from tests.servers import ANSWER_BOUND, ROOT, free_port, running, service_env, slow_body, slow_clients, trickled_head

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
SITE = ROOT / "deploy" / "nginx" / "kommentare.conf"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run installs it)")]

# What gunicorn received, one line per request: peer | X-Forwarded-For | X-Forwarded-Proto | Host | request line.
ACCESS_FORMAT = "%(h)s|%({x-forwarded-for}i)s|%({x-forwarded-proto}i)s|%({host}i)s|%(r)s"


def site_config(upstream: int, http_port: int, https_port: int, cert: Path, key: Path) -> str:
    """The shipped site file with its ADAPT lines pointed at this test's ports and certificate."""
    text = SITE.read_text()
    for old, new in [
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};"),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen [::]:80;", ""),
        ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
        ("listen [::]:443 ssl;", ""),
        ("/etc/ssl/kommentare/fullchain.pem", str(cert)),
        ("/etc/ssl/kommentare/privkey.pem", str(key)),
    ]:
        assert text.count(old) == 1, f"{SITE.name} no longer has exactly one {old!r}"
        text = text.replace(old, new)
    return text


def main_config(folder: Path) -> str:
    """A minimal nginx.conf that keeps everything (pid, logs, temp files) in `folder`."""
    # A root master would switch its workers to `nobody`, who cannot enter pytest's private folders.
    user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
    temp = " ".join(f"{kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                       "scgi"))
    return (f"daemon off; worker_processes 1; pid {folder / 'nginx.pid'}; error_log {folder / 'error.log'} notice;"
            f" {user}\nevents {{ worker_connections 256; }}\n"
            f"http {{ access_log {folder / 'access.log'}; {temp}\n include {folder / 'kommentare.conf'}; }}\n")


@contextmanager
def nginx(folder: Path, https_port: int) -> Iterator[None]:
    """Run nginx with the config in `folder` until the block ends."""
    command = [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", str(folder / "error.log")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (folder / "error.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not listen within 20 s"
                time.sleep(0.1)
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory, tiny_model_dir):
    """boot.sh with one sync worker behind nginx; yields the https URL, ports, CA file, key headers and logs."""
    folder = tmp_path_factory.mktemp("nginx")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    upstream, http_port, https_port = free_port(), free_port(), free_port()
    (folder / "kommentare.conf").write_text(site_config(upstream, http_port, https_port, cert, key))
    (folder / "nginx.conf").write_text(main_config(folder))
    access = folder / "gunicorn-access.log"
    env = service_env(PORT=str(upstream), MODERATION_DATABASE_URL=f"sqlite:///{folder / 'proxied.db'}",
                      MODERATION_MODEL_DIR=str(tiny_model_dir), SERVER_LOG=str(folder / "server.log"),
                      MODERATION_APPROVE_THRESHOLD="0.35", MODERATION_REJECT_THRESHOLD="0.65",
                      GUNICORN_CMD_ARGS=f"--worker-class sync --threads 1 --workers 1 --access-logfile {access} "
                                        f"--access-logformat '{ACCESS_FORMAT}'")
    with running(["./boot.sh"], env, f"http://127.0.0.1:{upstream}/healthz"), nginx(folder, https_port):
        created = subprocess.run(
            [sys.executable, "-m", "moderation", "keys", "create", "--role", "backend", "--name", "website"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        )
        yield {"base": f"https://localhost:{https_port}", "https": https_port, "http": http_port,
               "upstream": upstream, "ca": str(cert), "access": access,
               "headers": {"Authorization": f"Bearer {created.stdout.strip()}"}}


def received(access: Path, marker: str) -> list[list[str]]:
    """The access-log fields of the requests whose request line contains `marker`."""
    time.sleep(0.2)  # gunicorn writes its access log after the answer
    return [line.split("|") for line in access.read_text().splitlines() if marker in line]


def test_requests_pass_with_the_client_address_and_scheme(proxied):
    base, ca, headers = proxied["base"], proxied["ca"], proxied["headers"]
    assert requests.get(f"{base}/healthz", verify=ca, timeout=ANSWER_BOUND).json() == {"status": "ok"}
    # A client's own X-Forwarded-For is replaced, not passed on: the service would take it for the truth.
    spoofed = {**headers, "X-Forwarded-For": "203.0.113.66"}
    created = requests.post(f"{base}/v1/articles/proxied/comments", headers=spoofed, verify=ca,
                            timeout=ANSWER_BOUND, json={"author_id": "p", "author_name": "P", "text": FRIENDLY[1]})
    assert created.status_code == 201, created.text
    listing = requests.get(f"{base}/v1/articles/proxied/comments", verify=ca, timeout=ANSWER_BOUND)
    assert listing.json()["total"] == 1
    assert listing.headers["Cache-Control"] == "public, max-age=1"
    assert listing.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "nginx/" not in listing.headers.get("Server", "")
    [[peer, forwarded_for, proto, host, _]] = received(proxied["access"], "POST /v1/articles/proxied/comments")
    assert (peer, forwarded_for, proto, host) == ("127.0.0.1", "127.0.0.1", "https", "localhost")
    assert requests.get(f"{base}/metrics", verify=ca, timeout=ANSWER_BOUND).status_code == 404
    assert not received(proxied["access"], "/metrics")
    plain = requests.get(f"http://127.0.0.1:{proxied['http']}/healthz", allow_redirects=False, timeout=ANSWER_BOUND)
    assert plain.status_code == 308 and plain.headers["Location"].startswith("https://")


def test_slow_clients_stay_with_nginx(proxied):
    base, ca, headers = proxied["base"], proxied["ca"], proxied["headers"]
    # Without nginx, one slow client starves this upstream (one sync worker): the control.
    with slow_clients(proxied["upstream"], [trickled_head()], pause=0.5):
        time.sleep(0.5)
        with pytest.raises(requests.ReadTimeout):
            requests.get(f"http://127.0.0.1:{proxied['upstream']}/healthz", timeout=3)
    tls = ssl.create_default_context(cafile=ca)
    held = [trickled_head()] * 8 + [slow_body(headers)] * 4
    with slow_clients(proxied["https"], held, pause=0.5, tls=tls) as clients:
        time.sleep(1)
        for i in range(3):
            assert requests.get(f"{base}/healthz", verify=ca, timeout=ANSWER_BOUND).json() == {"status": "ok"}
            created = requests.post(f"{base}/v1/articles/fast/comments", headers=headers, verify=ca,
                                    timeout=ANSWER_BOUND,
                                    json={"author_id": f"f{i}", "author_name": "F", "text": FRIENDLY[2]})
            assert created.status_code == 201, created.text
        assert not [c for c in clients if c.ended.is_set()], "nginx let the slow clients go before the checks ran"
        # A request head has 10 s in all (client_header_timeout); a body that keeps trickling stays with
        # nginx, which holds it for a few kilobytes and no thread.
        heads = clients[:8]
        assert all(c.ended.wait(30) for c in heads)
        assert all(c.sent < len(held[0][0]) for c in heads)
        assert not [c for c in clients[8:] if c.ended.is_set()]
    assert not received(proxied["access"], "slow")  # none of them ever reached gunicorn
