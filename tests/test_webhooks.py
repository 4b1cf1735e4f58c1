"""Signed status webhooks from the outbox to a real local HTTP receiver: retries, backoff, two workers."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from moderation.db import utcnow
from moderation.extensions import db
from moderation.models import WebhookDelivery, WebhookEvent
from moderation.services import webhooks
from tests.moderation_helpers import pending_comments
from tests.receiver import Receiver
from tests.servers import ROOT, free_port, service_env


def settings(url: str, **extra) -> webhooks.WebhookSettings:
    return webhooks.WebhookSettings((url,), ("neues-geheimnis", "altes-geheimnis"), timeout=2.0, **extra)


def run_worker(app, config, worker="w1", now=None):
    with Session(app.extensions["moderation.db"][0], expire_on_commit=False) as session:
        return webhooks.deliver_once(session, config, worker, now=now)


def deliveries(app) -> list[WebhookDelivery]:
    with app.app_context():
        return list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def approve(client, auth, comment_id):
    response = client.post(f"/v1/moderation/comments/{comment_id}/decision", headers=auth["moderator"],
                           json={"decision": "approve"})
    assert response.status_code == 200


def test_decision_is_delivered_signed_with_every_secret(app, client, auth):
    comment = pending_comments(client, auth, 1)[0]
    approve(client, auth, comment["id"])
    with Receiver(free_port()) as receiver:
        assert run_worker(app, settings(receiver.url)) == {"delivered": 1}
    (headers, body), = receiver.received
    expected = [hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in ("neues-geheimnis", "altes-geheimnis")]
    assert headers["X-Moderation-Signature"] == ",".join(f"sha256={h}" for h in expected)
    event = json.loads(body)
    assert event["type"] == "comment.approved" == headers["X-Moderation-Event"]
    assert event["data"] | {"changed_at": None} == {
        "comment_id": comment["id"], "article_id": "artikel-1", "old_status": "pending", "new_status": "approved",
        "decided_by": "moderator", "reasons": ["moderator_approve"], "changed_at": None}
    assert abs(event["timestamp"] - utcnow().timestamp()) < 300
    assert [d.state for d in deliveries(app)] == ["delivered"]


def test_retries_with_backoff_after_the_endpoint_was_down(app, client, auth):
    comment = pending_comments(client, auth, 1)[0]
    approve(client, auth, comment["id"])
    port = free_port()
    config = settings(f"http://127.0.0.1:{port}/hooks")
    now = utcnow()
    assert run_worker(app, config, now=now) == {"pending": 1}  # nothing listens yet
    first = deliveries(app)[0]
    assert first.attempts == 1 and first.last_error and first.next_attempt_at >= now + timedelta(seconds=10)
    assert run_worker(app, config, now=now + timedelta(seconds=5)) == {}  # not due yet
    with Receiver(port, statuses=[503]) as receiver:
        assert run_worker(app, config, now=now + timedelta(seconds=11)) == {"pending": 1}
        second = deliveries(app)[0]
        assert second.attempts == 2 and second.last_status_code == 503
        assert second.next_attempt_at >= now + timedelta(seconds=11 + 20)
        assert run_worker(app, config, now=now + timedelta(seconds=40)) == {"delivered": 1}
    assert len(receiver.received) == 2
    assert deliveries(app)[0].attempts == 3


def test_gives_up_after_max_attempts(app, client, auth):
    comment = pending_comments(client, auth, 1)[0]
    approve(client, auth, comment["id"])
    config = settings(f"http://127.0.0.1:{free_port()}/nobody", max_attempts=2)
    now = utcnow()
    run_worker(app, config, now=now)
    assert run_worker(app, config, now=now + timedelta(hours=2)) == {"dead": 1}
    assert run_worker(app, config, now=now + timedelta(hours=4)) == {}


def test_reports_and_takedowns_emit_events(app, client, auth):
    comment = pending_comments(client, auth, 1)[0]
    approve(client, auth, comment["id"])
    client.post(f"/v1/moderation/comments/{comment['id']}/decision", headers=auth["moderator"],
                json={"decision": "reject"})
    with app.app_context():
        types = db.session.scalars(select(WebhookEvent.type).order_by(WebhookEvent.id)).all()
    assert types == ["comment.approved", "comment.rejected"]


@pytest.mark.slow
def test_two_worker_processes_never_send_an_event_twice(app, client, auth, database_url):
    comments = pending_comments(client, auth, 24)
    for comment in comments:
        approve(client, auth, comment["id"])
    with Receiver(free_port()) as receiver:
        env = service_env(MODERATION_DATABASE_URL=database_url, MODERATION_WEBHOOK_URLS=receiver.url,
                          MODERATION_WEBHOOK_SECRETS="geheim")
        command = [sys.executable, "-m", "moderation", "webhooks", "deliver", "--interval", "0.05", "--batch", "3"]
        workers = [subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL) for _ in range(2)]
        try:
            deadline = time.monotonic() + 60
            while len(receiver.received) < 24 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)  # let a duplicate, if any, arrive
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait(timeout=10)
    ids = [json.loads(body)["id"] for _, body in receiver.received]
    assert len(ids) == 24 and len(set(ids)) == 24
    assert {d.state for d in deliveries(app)} == {"delivered"}
    log = subprocess.run([sys.executable, "-m", "moderation", "webhooks", "log", "--limit", "3"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert log.count("delivered") == 3


def test_worker_refuses_to_run_unconfigured(cli_runner):
    from moderation.cli import cli
    result = cli_runner.invoke(cli, ["webhooks", "deliver", "--once"])
    assert result.exit_code != 0 and "MODERATION_WEBHOOK_URLS" in result.output


# --- redirects, pooled connections, timeouts ---

@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failed_delivery_and_is_never_followed(app, client, auth, status):
    comment = pending_comments(client, auth, 1)[0]
    approve(client, auth, comment["id"])
    now = utcnow()
    with Receiver(free_port()) as elsewhere, Receiver(free_port(), [status], location=elsewhere.url) as endpoint:
        assert run_worker(app, settings(endpoint.url), now=now) == {"pending": 1}
        failed = deliveries(app)[0]
        assert elsewhere.received == []  # neither the POST nor a GET carrying the signature went elsewhere
        assert endpoint.methods == ["POST"]
        assert (failed.state, failed.attempts, failed.last_status_code) == ("pending", 1, status)
        assert failed.delivered_at is None and "redirect" in failed.last_error and elsewhere.url in failed.last_error
        assert failed.next_attempt_at >= now + timedelta(seconds=10)  # retried with backoff like any failure
        assert run_worker(app, settings(endpoint.url), now=now + timedelta(seconds=11)) == {"delivered": 1}
    assert elsewhere.received == [] and endpoint.methods == ["POST", "POST"]


def test_deliveries_share_one_keep_alive_connection(app, client, auth):
    for comment in pending_comments(client, auth, 3):
        approve(client, auth, comment["id"])
    with Receiver(free_port()) as receiver:
        assert run_worker(app, settings(receiver.url)) == {"delivered": 3}
    assert len(receiver.peers) == 3 and len(set(receiver.peers)) == 1


def test_an_endpoint_that_never_answers_times_out_as_a_failed_delivery(app, client, auth):
    comment = pending_comments(client, auth, 1)[0]
    approve(client, auth, comment["id"])
    with socket.socket() as silent:  # accepts the connection (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        config = webhooks.WebhookSettings((f"http://127.0.0.1:{silent.getsockname()[1]}/h",), ("geheim",),
                                          timeout=0.5, connect_timeout=0.5)
        started = time.monotonic()
        assert run_worker(app, config) == {"pending": 1}
        assert time.monotonic() - started < 30  # generous: the point is that it does not hang
    failed = deliveries(app)[0]
    assert failed.last_status_code is None and "timed out" in failed.last_error.lower()


@pytest.mark.parametrize("url", ["ftp://site.example/hook", "file:///etc/passwd", "https://user:pw@site.example/h"])
def test_worker_refuses_to_start_with_a_url_that_is_not_http(cli_runner, monkeypatch, url):
    from moderation.cli import cli
    monkeypatch.setenv("MODERATION_WEBHOOK_URLS", url)
    monkeypatch.setenv("MODERATION_WEBHOOK_SECRETS", "geheim")
    result = cli_runner.invoke(cli, ["webhooks", "deliver", "--once"])
    assert result.exit_code != 0 and "MODERATION_WEBHOOK_URLS" in result.output
