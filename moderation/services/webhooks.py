"""Deliver the outbox to the news site's webhook endpoints: signed, retried with backoff, logged.

Several workers may run at once: each delivery row is claimed under a row lock (SKIP LOCKED on
PostgreSQL, the write lock on SQLite) with a lease, so no two workers send the same event at once.
Only a 2xx answer delivers. A redirect is a failed attempt like any other and is never followed: a
client that follows it would send the signed event to another address (as a GET, for a 302).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType

import urllib3
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from moderation.db import begin_write, utcnow
from moderation.models import WebhookDelivery, WebhookEvent

log = logging.getLogger(__name__)
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
SIGNATURE_HEADER = "X-Moderation-Signature"


@dataclass(frozen=True)
class WebhookSettings:
    urls: tuple[str, ...]
    secrets: tuple[str, ...]
    timeout: float = 5.0  # for each read of the answer
    connect_timeout: float = 3.0
    max_attempts: int = 12
    base_backoff: float = 10.0
    max_backoff: float = 3600.0


def sign(body: bytes, secrets: tuple[str, ...]) -> str:
    """Return the signature header: `sha256=<hex HMAC>` for each secret, comma-separated (for rotation)."""
    return ",".join("sha256=" + hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in secrets)


def backoff(attempts: int, settings: WebhookSettings) -> timedelta:
    """Delay before the next try: doubling from `base_backoff`, capped."""
    return timedelta(seconds=min(settings.base_backoff * 2 ** (attempts - 1), settings.max_backoff))


def fan_out(session: Session, settings: WebhookSettings, *, batch: int = 200) -> int:
    """Turn new events into one delivery per configured endpoint; return how many events."""
    begin_write(session)
    query = select(WebhookEvent).where(WebhookEvent.fanned_out.is_(False)).order_by(WebhookEvent.id).limit(batch)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    events = list(session.scalars(query))
    for event in events:
        for url in settings.urls:
            session.add(WebhookDelivery(event_id=event.id, url=url, next_attempt_at=event.created_at))
        event.fanned_out = True
    session.commit()
    return len(events)


def claim(session: Session, worker: str, *, batch: int, lease: timedelta, now: datetime) -> list[int]:
    """Lease due deliveries to `worker`; return their ids."""
    begin_write(session)
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.state == PENDING, WebhookDelivery.next_attempt_at <= now,
               or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now))
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(batch)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    deliveries = list(session.scalars(query))
    for delivery in deliveries:
        delivery.locked_by, delivery.locked_until = worker, now + lease
    session.commit()
    return [d.id for d in deliveries]


def event_body(event: WebhookEvent, now: datetime) -> bytes:
    """The signed body: the event, and the time of this attempt (receivers refuse old replays)."""
    return json.dumps({
        "id": event.event_id, "type": event.type, "created_at": event.created_at.isoformat(),
        "timestamp": int(now.timestamp()), "data": event.payload,
    }, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Answer:
    """What an endpoint answered: the status and, for a redirect, where it pointed."""

    status: int
    location: str | None = None


Sender = Callable[[str, bytes, dict[str, str]], Answer]
# An answer body this small is read so that the connection can carry the next delivery; a larger (or
# chunked) one is not read at all: the connection is closed instead.
MAX_ANSWER_BYTES = 64 * 1024


class HttpClient:
    """Keep-alive connections to the endpoints, with connect and read timeouts; never redirects or retries."""

    def __init__(self, settings: WebhookSettings) -> None:
        self._pools = urllib3.PoolManager(
            num_pools=max(len(settings.urls), 1), maxsize=1, retries=False,
            timeout=urllib3.Timeout(connect=settings.connect_timeout, read=settings.timeout),
        )

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """POST and return the answer (an error status is an answer; a network failure raises)."""
        response = self._pools.request("POST", url, body=body, headers=headers, redirect=False, retries=False,
                                       preload_content=False)
        try:
            if response.length_remaining is not None and response.length_remaining <= MAX_ANSWER_BYTES:
                response.drain_conn()
            else:
                response.close()
        finally:
            response.release_conn()
        return Answer(response.status, response.headers.get("Location"))

    def close(self) -> None:
        """Close every connection."""
        self._pools.clear()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def attempt(session: Session, delivery_id: int, worker: str, settings: WebhookSettings, *, now: datetime,
            send: Sender) -> str:
    """Send one leased delivery and record the outcome; return its new state."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.locked_by != worker or delivery.state != PENDING:
        return "skipped"
    event = session.get(WebhookEvent, delivery.event_id)
    body = event_body(event, now)
    headers = {"Content-Type": "application/json", "User-Agent": "kommentare-moderation-webhooks/1",
               SIGNATURE_HEADER: sign(body, settings.secrets), "X-Moderation-Event": event.type,
               "X-Moderation-Delivery": str(delivery.id)}
    url, comment_id = delivery.url, event.payload.get("comment_id")
    session.rollback()  # hold no transaction (and on SQLite no lock) while waiting on the network
    status, error = None, None
    try:
        answer = send(url, body, headers)
    except (OSError, ValueError, urllib3.exceptions.HTTPError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    else:
        status = answer.status
        if 300 <= status < 400:
            error = f"redirect to {answer.location!r} not followed: webhooks are never redirected"[:500]
    begin_write(session)
    delivery = session.get(WebhookDelivery, delivery_id)
    delivery.attempts += 1
    delivery.last_status_code, delivery.last_error = status, error
    delivery.locked_by = delivery.locked_until = None
    if status is not None and 200 <= status < 300:
        delivery.state, delivery.delivered_at = DELIVERED, utcnow()
    elif delivery.attempts >= settings.max_attempts:
        delivery.state = DEAD
    else:
        delivery.next_attempt_at = now + backoff(delivery.attempts, settings)
    session.commit()
    log.info("webhook_attempt", extra={"comment_id": comment_id, "status": status,
                                       "error": error, "detail": delivery.state})
    return delivery.state


def deliver_once(session: Session, settings: WebhookSettings, worker: str, *, batch: int = 50,
                 now: datetime | None = None, send: Sender | None = None) -> dict[str, int]:
    """Fan out new events, then try every due delivery once; return counts by outcome.

    Without `send`, this round opens its own HttpClient; a long-running worker passes one it keeps.
    """
    if send is None:
        with HttpClient(settings) as client:
            return deliver_once(session, settings, worker, batch=batch, now=now, send=client.post)
    now = now or utcnow()
    fan_out(session, settings)
    lease = timedelta(seconds=(settings.connect_timeout + settings.timeout) * 2 + 30)
    outcomes: dict[str, int] = {}
    for delivery_id in claim(session, worker, batch=batch, lease=lease, now=now):
        state = attempt(session, delivery_id, worker, settings, now=now, send=send)
        outcomes[state] = outcomes.get(state, 0) + 1
    return outcomes


def delivery_log(session: Session, *, limit: int) -> list[tuple[WebhookDelivery, WebhookEvent]]:
    """Return the latest deliveries with their events, newest first."""
    rows = session.execute(
        select(WebhookDelivery, WebhookEvent).join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .order_by(WebhookDelivery.id.desc()).limit(limit)
    )
    return [(d, e) for d, e in rows]
