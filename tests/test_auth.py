"""Bearer keys and roles: 401 without a valid key, 403 with the wrong role; the keys CLI."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from moderation.cli import cli
from moderation.extensions import db
from moderation.models import ApiKey
from moderation.services.keys import hash_token
from tests.conftest import FRIENDLY
from tests.test_bad_input import assert_error

COMMENT = {"author_id": "leser-1", "author_name": "Leserin K.", "text": FRIENDLY[0]}


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer mk_unbekannt", "Token mk_x", "Bearer " + "x" * 500],
)
def test_missing_or_unknown_token_is_401(client, count_rows, header):
    headers = {"Authorization": header} if header is not None else {}
    before = count_rows()
    response = client.post("/v1/articles/a/comments", json=COMMENT, headers=headers)
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert count_rows() == before


@pytest.mark.parametrize(
    ("method", "url", "body", "allowed"),
    [
        ("post", "/v1/articles/a/comments", COMMENT, {"backend", "admin"}),
        ("get", "/v1/comments/1", None, {"backend", "moderator", "admin"}),
        ("post", "/v1/score", {"text": "Hallo"}, {"backend", "moderator", "admin"}),
    ],
)
def test_roles(client, auth, count_rows, method, url, body, allowed):
    client.post("/v1/articles/a/comments", json=COMMENT, headers=auth["backend"])
    for role in ("backend", "moderator", "admin"):
        before = count_rows()
        sent = {**body, "author_id": role} if body and "author_id" in body else body
        response = getattr(client, method)(url, json=sent, headers=auth[role])
        if role in allowed:
            assert response.status_code in {200, 201}, (role, response.json)
        else:
            assert_error(response, 403, "forbidden")
            assert count_rows() == before


def test_public_endpoints_need_no_key(client):
    for url in ("/v1/articles/a/comments", "/healthz", "/readyz", "/openapi.json", "/docs"):
        assert client.get(url).status_code == 200, url


def test_revoked_key_is_401(app, client, auth, tokens):
    with app.app_context():
        key = db.session.scalar(select(ApiKey).where(ApiKey.token_hash == hash_token(tokens["backend"])))
        from moderation.services.keys import revoke_key
        revoke_key(db.session, str(key.id))
        db.session.commit()
    assert_error(client.post("/v1/articles/a/comments", json=COMMENT, headers=auth["backend"]), 401, "unauthorized")


def test_keys_cli_create_prints_token_alone_and_stores_hash(app, client, cli_runner):
    result = cli_runner.invoke(cli, ["keys", "create", "--role", "backend", "--name", "website"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    assert token.startswith("mk_") and len(token) > 40
    with app.app_context():
        stored = db.session.scalar(select(ApiKey).where(ApiKey.name == "website"))
        assert stored.token_hash == hash_token(token) and token not in stored.token_hash
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/v1/articles/a/comments", json=COMMENT, headers=headers).status_code == 201

    listing = cli_runner.invoke(cli, ["keys", "list"])
    assert listing.exit_code == 0
    assert "website" in listing.stdout and "backend" in listing.stdout and token not in listing.stdout

    revoked = cli_runner.invoke(cli, ["keys", "revoke", "website"])
    assert revoked.exit_code == 0, revoked.output
    assert client.post("/v1/articles/a/comments", json=COMMENT, headers=headers).status_code == 401
    again = cli_runner.invoke(cli, ["keys", "revoke", "website"])
    assert again.exit_code != 0 and "no active key" in again.output


@pytest.mark.parametrize(("args", "message"), [
    (["--role", "chef", "--name", "x"], "Invalid value for '--role'"),
    (["--role", "admin", "--name", "   "], "name must be 1 to 100 characters"),
    (["--role", "admin"], "Missing option '--name'"),
])
def test_keys_cli_refuses_bad_input(count_rows, cli_runner, args, message):
    before = count_rows()
    result = cli_runner.invoke(cli, ["keys", "create", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert count_rows() == before


def test_a_revocation_elsewhere_applies_within_the_cache_time(app, client, auth, tokens, monkeypatch):
    """Another process revoking a key (here: a plain UPDATE) is seen once the cached entry expires."""
    from sqlalchemy import update

    from moderation.services import keys
    monkeypatch.setattr(keys, "CACHE_SECONDS", 0.2)
    keys.forget_cached_keys()
    assert client.get("/v1/comments/1", headers=auth["backend"]).status_code == 404  # authenticated, cached
    with app.app_context():
        db.session.execute(update(ApiKey).where(ApiKey.token_hash == hash_token(tokens["backend"]))
                           .values(revoked_at=keys.utcnow()))
        db.session.commit()
    import time
    time.sleep(0.3)
    assert_error(client.get("/v1/comments/1", headers=auth["backend"]), 401, "unauthorized")


@pytest.mark.parametrize(("first", "second"), [
    ("anna", "anna"),
    ("anna", "  anna "),  # names are stripped before they are compared
    ("test-moderator", "test-moderator"),
])
def test_keys_cli_refuses_a_duplicate_name(app, count_rows, cli_runner, tokens, first, second):
    """Moderators are identified by key name in decisions, claims and the audit trail: names are unique."""
    if first != "test-moderator":
        assert cli_runner.invoke(cli, ["keys", "create", "--role", "moderator", "--name", first]).exit_code == 0
    before = count_rows()
    result = cli_runner.invoke(cli, ["keys", "create", "--role", "admin", "--name", second])
    assert result.exit_code != 0
    assert f"a key named {second.strip()!r} already exists" in result.output
    assert result.stdout == ""  # no token printed
    assert count_rows() == before


def test_a_revoked_key_keeps_its_name(app, cli_runner, count_rows):
    """The audit trail still names the revoked key; a new key for the same person needs another name."""
    assert cli_runner.invoke(cli, ["keys", "create", "--role", "moderator", "--name", "bernd"]).exit_code == 0
    assert cli_runner.invoke(cli, ["keys", "revoke", "bernd"]).exit_code == 0
    before = count_rows()
    again = cli_runner.invoke(cli, ["keys", "create", "--role", "moderator", "--name", "bernd"])
    assert again.exit_code != 0 and "already exists" in again.output
    assert count_rows() == before
    assert cli_runner.invoke(cli, ["keys", "create", "--role", "moderator", "--name", "bernd-2"]).exit_code == 0


def test_the_schema_refuses_duplicate_key_names(app):
    from sqlalchemy.exc import IntegrityError

    with app.app_context():
        db.session.add(ApiKey(name="doppelt", role="moderator", token_hash="a" * 64, prefix="mk_a"))
        db.session.commit()
        db.session.add(ApiKey(name="doppelt", role="admin", token_hash="b" * 64, prefix="mk_b"))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()
        assert db.session.scalars(select(ApiKey.role).where(ApiKey.name == "doppelt")).all() == ["moderator"]
