"""Moderator sessions are server-side: forged cookies, logout, lifetime, idle timeout and revocation."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import select, update

from moderation.extensions import db
from moderation.models import PENDING, ApiKey, Comment, ModerationAction
from moderation.services.keys import revoke_key
from moderation.web import security
from tests.web.conftest import session_csrf, sign_in

OLD_DEV_SECRET = "dev-only-not-secret"  # what every development server signed its cookies with before
FETCH = {"X-Requested-With": "fetch"}
LOGIN_PAGE = "/moderation/login"


class Clock:
    """A settable clock for the session checks, so tests move time instead of sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    made = Clock()
    monkeypatch.setattr(security, "utcnow", made, raising=False)
    return made


def forge(secret: str, payload: dict) -> str:
    """Return a session cookie for `payload` signed with `secret`, as an attacker who knows it would make."""
    forger = Flask("forger")
    forger.secret_key = secret
    return SecureCookieSessionInterface().get_signing_serializer(forger).dumps(payload)


def cookie_of(client) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None, "no session cookie"
    return cookie.value


def copy_of(app, client):
    """A second browser holding a copy of `client`'s session cookie."""
    thief = app.test_client()
    thief.set_cookie("session", cookie_of(client))
    return thief


def key_id(app, name: str) -> int:
    with app.app_context():
        return db.session.scalar(select(ApiKey.id).where(ApiKey.name == name))


def session_rows(app) -> list[tuple[int, str, datetime, datetime]]:
    from moderation.models import WebSession

    with app.app_context():
        return [(s.key_id, s.token_hash, s.created_at, s.last_seen_at)
                for s in db.session.scalars(select(WebSession).order_by(WebSession.id))]


def signed_in(client) -> bool:
    response = client.get("/moderation/")
    assert response.status_code in (200, 302), response.status_code
    if response.status_code == 302:
        assert response.location.startswith(LOGIN_PAGE)
    return response.status_code == 200


# --- forged cookies --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("secret", ["old-dev-key", "the-app-secret"])
@pytest.mark.parametrize("payload", [
    {"key_id": "ADMIN", "key_name": "test-admin", "csrf_token": "t"},
    {"key_id": "ADMIN", "csrf_token": "t", "sid": "erraten"},
    {"sid": "A" * 43, "csrf_token": "t"},
])
def test_a_forged_cookie_opens_nothing(app, client, tokens, seed, count_rows, secret, payload):
    """Even with the real signing secret a cookie opens nothing: only a token the server issued does."""
    comment_id = seed("Wann wird die Brücke endlich saniert?")
    payload = {k: key_id(app, "test-admin") if v == "ADMIN" else v for k, v in payload.items()}
    client.set_cookie("session", forge(OLD_DEV_SECRET if secret == "old-dev-key" else app.secret_key, payload))
    before = count_rows()
    assert not signed_in(client)
    client.set_cookie("session", forge(OLD_DEV_SECRET if secret == "old-dev-key" else app.secret_key, payload))
    decision = client.post(f"/moderation/comments/{comment_id}/decision", data={"decision": "approve"},
                           headers={**FETCH, "X-CSRF-Token": "t"})
    assert decision.status_code in (400, 401)
    assert count_rows() == before
    with app.app_context():
        assert db.session.get(Comment, comment_id).status == PENDING
        assert db.session.scalars(select(ModerationAction.moderator)
                                  .where(ModerationAction.comment_id == comment_id)).all() == [None]


def test_the_cookie_carries_only_a_random_token_whose_hash_is_stored(app, client, tokens):
    sign_in(client, tokens["moderator"])
    stored = SecureCookieSessionInterface().get_signing_serializer(app).loads(cookie_of(client))
    assert set(stored) == {"sid", "csrf_token"}
    assert len(stored["sid"]) >= 43
    rows = session_rows(app)
    assert [(row[0], row[1]) for row in rows] == [
        (key_id(app, "test-moderator"), hashlib.sha256(stored["sid"].encode()).hexdigest())]


def test_signing_in_again_replaces_the_session(app, client, tokens):
    sign_in(client, tokens["moderator"])
    old = copy_of(app, client)
    # The login form of another tab, sent while signed in.
    client.post(LOGIN_PAGE, data={"api_key": tokens["admin"], "csrf_token": session_csrf(client)})
    assert signed_in(client) and "test-admin" in client.get("/moderation/").text
    assert not signed_in(old)
    assert [row[0] for row in session_rows(app)] == [key_id(app, "test-admin")]


# --- logout ----------------------------------------------------------------------------------------------------------

def test_a_copied_cookie_stops_working_after_logout(app, moderator):
    thief = copy_of(app, moderator)
    assert signed_in(thief)
    response = moderator.post("/moderation/logout", data={"csrf_token": session_csrf(moderator)})
    assert response.status_code == 302
    assert not signed_in(moderator)
    assert not signed_in(thief)
    assert session_rows(app) == []


def test_logout_ends_only_its_own_session(app, client, tokens):
    other = app.test_client()
    sign_in(client, tokens["moderator"])
    sign_in(other, tokens["moderator"])
    client.post("/moderation/logout", data={"csrf_token": session_csrf(client)})
    assert not signed_in(client) and signed_in(other)


# --- lifetime and idle timeout ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("settings", "steps", "last_ok"), [
    # defaults: a workday of 10 hours, 60 idle minutes
    ({}, [50] * 11 + [49], True),                    # 9 h 59 min, never idle for an hour
    ({}, [50] * 11 + [49, 2], False),                # 10 h 1 min: over, although active
    ({}, [59, 59, 59], True),                        # each request restarts the idle time
    ({}, [61], False),                               # idle for 61 minutes
    ({}, [10, 60.5], False),
    ({"SESSION_IDLE_MINUTES": 15}, [14, 14], True),
    ({"SESSION_IDLE_MINUTES": 15}, [16], False),
    ({"SESSION_HOURS": 1}, [30, 29], True),
    ({"SESSION_HOURS": 1}, [30, 31], False),
])
def test_sessions_expire_after_the_workday_or_when_idle(app_config, make_app, clock, settings, steps,
                                                        last_ok):
    app = make_app({**app_config, **settings})
    client = app.test_client()
    with app.app_context():
        from moderation.services.keys import create_key
        token = create_key(db.session, role="moderator", name="uhr")[1]
        db.session.commit()
    assert sign_in(client, token).status_code == 302
    results = []
    for minutes in steps:
        clock.advance(minutes=minutes)
        results.append(signed_in(client))
    assert results == [True] * (len(steps) - 1) + [last_ok]
    if not last_ok:
        assert "Ihre Sitzung ist abgelaufen" in client.get(LOGIN_PAGE).text
        assert session_rows(app) == []
        clock.advance(minutes=1)
        assert not signed_in(client)  # it stays ended


def test_an_expired_copy_stays_expired_after_the_owner_signs_in_again(app, client, tokens, clock):
    sign_in(client, tokens["moderator"])
    thief = copy_of(app, client)
    clock.advance(minutes=61)
    assert not signed_in(client)
    sign_in(client, tokens["moderator"])
    assert signed_in(client) and not signed_in(thief)


def test_last_seen_is_written_at_most_once_a_minute(app, client, tokens, clock):
    signed_at = clock.now
    sign_in(client, tokens["moderator"])
    assert session_rows(app)[0][2:] == (signed_at, signed_at)
    for seconds in (10, 20, 29):
        clock.advance(seconds=seconds)
        assert signed_in(client)
        assert session_rows(app)[0][3] == signed_at
    clock.advance(seconds=2)  # 61 s after the last write
    assert signed_in(client)
    assert session_rows(app)[0][2:] == (signed_at, clock.now)


# --- the key behind the session --------------------------------------------------------------------------------------

def test_revoking_a_key_ends_its_sessions_and_no_other(app, client, tokens):
    other, third = app.test_client(), app.test_client()
    sign_in(client, tokens["moderator"])
    thief = copy_of(app, client)
    sign_in(other, tokens["admin"])
    with app.app_context():
        revoke_key(db.session, "test-moderator")
        db.session.commit()
    assert not signed_in(thief)
    assert "Schlüssel ist nicht mehr gültig" in thief.get(LOGIN_PAGE).text
    assert signed_in(other)
    sign_in(third, tokens["admin"])  # a sign-in clears what revoked keys left behind
    assert not signed_in(client)
    assert [row[0] for row in session_rows(app)] == [key_id(app, "test-admin")] * 2


@pytest.mark.parametrize("change", [{"role": "backend"}, {"revoked_at": datetime(2026, 1, 1, tzinfo=UTC)}])
def test_a_key_changed_behind_the_session_ends_it(app, moderator, change):
    """A change made elsewhere (another process, plain SQL) is seen on the next request."""
    with app.app_context():
        db.session.execute(update(ApiKey).where(ApiKey.name == "test-moderator").values(**change))
        db.session.commit()
    response = moderator.get("/moderation/")
    assert response.status_code == 302
    assert "Schlüssel ist nicht mehr gültig" in moderator.get(response.location).text
    assert session_rows(app) == []
