"""Headers only where they mean something: Retry-After on 429 and 503, nosniff everywhere, no-store on
everything but the public listing (cacheable for MODERATION_LISTING_CACHE_SECONDS)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import Session

from moderation import db as db_module
from moderation.db import begin_write, make_engine
from tests.conftest import FRIENDLY
from tests.moderation_helpers import submit
from tests.test_bad_input import assert_error

RATE_HEADERS = ("Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
COMMENT = {"author_id": "leser-h", "author_name": "H", "text": FRIENDLY[3]}
ANALYZE = {"comment": {"text": FRIENDLY[4]}, "requestedAttributes": {"TOXICITY": {}}}


@pytest.fixture
def limited_app(app_config, make_app):
    """Rate limits on (memory), as a deployment runs them."""
    return make_app({**app_config, "RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URL": "memory://",
                     "RATELIMIT_PER_AUTHOR": "2/minute", "RATELIMIT_KEY_PREFIX": f"h-{uuid.uuid4().hex}"})


@pytest.fixture
def limited(limited_app):
    from moderation.extensions import db
    from moderation.services.keys import create_key

    with limited_app.app_context():
        tokens = {role: create_key(db.session, role=role, name=f"h-{role}")[1]
                  for role in ("backend", "moderator", "admin")}
        db.session.commit()
    return limited_app.test_client(), {role: {"Authorization": f"Bearer {t}"} for role, t in tokens.items()}, tokens


# (method, path, role or None, JSON body, expected status, expected Cache-Control)
NO_STORE = "no-store"
ROUTES = [
    ("GET", "/healthz", None, None, 200, NO_STORE),
    ("GET", "/readyz", None, None, 200, NO_STORE),
    ("GET", "/metrics", None, None, 200, NO_STORE),
    ("GET", "/openapi.json", None, None, 200, NO_STORE),
    ("GET", "/v1/articles/artikel-1/comments", None, None, 200, "public, max-age=1"),
    ("GET", "/v1/articles/artikel-1/comments", "backend", None, 200, "public, max-age=1"),
    ("GET", "/v1/articles/artikel-1/comments?limit=0", None, None, 422, NO_STORE),
    ("POST", "/v1/articles/artikel-1/comments", "backend", COMMENT, 201, NO_STORE),
    ("POST", "/v1/articles/artikel-1/comments", None, COMMENT, 401, NO_STORE),
    ("GET", "/v1/comments/{id}", "backend", None, 200, NO_STORE),
    ("GET", "/v1/comments/{id}", "moderator", None, 200, NO_STORE),
    ("POST", "/v1/score", "backend", {"text": FRIENDLY[2]}, 200, NO_STORE),
    ("GET", "/v1/moderation/queue", "moderator", None, 200, NO_STORE),
    ("GET", "/v1/moderation/queue", "backend", None, 403, NO_STORE),
    ("GET", "/v1/moderation/wordlists", "moderator", None, 200, NO_STORE),
    ("GET", "/v1/moderation/audit", "moderator", None, 200, NO_STORE),
    ("GET", "/v1/moderation/stats", "moderator", None, 200, NO_STORE),
    ("GET", "/v1/articles/artikel-1/settings", "moderator", None, 200, NO_STORE),
    ("GET", "/v1/authors/leser-1/export", "admin", None, 200, NO_STORE),
    ("POST", "/v1alpha1/comments:analyze?key={backend}", None, ANALYZE, 200, NO_STORE),
    ("GET", "/$discovery/rest", None, None, 200, NO_STORE),
    ("GET", "/moderation/login", None, None, 200, NO_STORE),
    ("GET", "/moderation/", None, None, 302, NO_STORE),
    ("GET", "/demo/", None, None, 404, NO_STORE),  # off unless MODERATION_DEMO=1
    ("GET", "/gibt-es-nicht", None, None, 404, NO_STORE),
    ("DELETE", "/healthz", None, None, 405, NO_STORE),
]


@pytest.mark.parametrize(("method", "path", "role", "body", "status", "cache"), ROUTES,
                         ids=[f"{r[0]} {r[1]} {r[2] or 'anonymous'}" for r in ROUTES])
def test_headers_by_route(limited, method, path, role, body, status, cache):
    client, auth, tokens = limited
    created = submit(client, auth)
    path = path.format(id=created["id"], backend=tokens["backend"])
    response = client.open(path, method=method, json=body, headers=auth[role] if role else {})
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert response.headers.get("Cache-Control") == cache
    assert not [name for name in RATE_HEADERS if name in response.headers]


def test_listing_is_not_cacheable_when_the_service_does_not_cache_it(app_config, make_app):
    client = make_app({**app_config, "LISTING_CACHE_SECONDS": 0.0}).test_client()
    assert client.get("/v1/articles/artikel-1/comments").headers.get("Cache-Control") == "no-cache"


def test_static_files_keep_their_own_revalidation(client):
    with client.get("/moderation/static/web.css") as response:
        assert response.status_code == 200
        assert response.headers.get("X-Content-Type-Options") == "nosniff"
        assert response.headers.get("Cache-Control") == "no-cache"


def test_429_says_when_to_retry_and_nothing_else(limited, count_rows):
    client, auth, _ = limited
    for i in range(2):
        body = {**COMMENT, "text": f"{FRIENDLY[0]} {i}"}
        assert client.post("/v1/articles/a/comments", headers=auth["backend"], json=body).status_code == 201
    before = count_rows()
    refused = client.post("/v1/articles/a/comments", headers=auth["backend"], json={**COMMENT, "text": "Noch einer."})
    assert_error(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert not [name for name in RATE_HEADERS[1:] if name in refused.headers]
    assert refused.headers.get("Cache-Control") == NO_STORE
    assert count_rows() == before


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("path", "code"), [("/v1/articles/a-1/comments", "database_unavailable"),
                                            ("/v1alpha1/comments:suggestscore?key={backend}", None)])
def test_503_keeps_its_own_retry_after(limited, count_rows, database_url, monkeypatch, path, code):
    client, auth, tokens = limited
    monkeypatch.setattr(db_module, "WRITER_WAIT_SECONDS", 0.2)
    body = COMMENT if code else {"comment": {"text": FRIENDLY[1]}, "attributeScores": {
        "TOXICITY": {"summaryScore": {"value": 0.1}}}}
    before = count_rows()
    other = make_engine(database_url)
    try:
        with Session(other) as holder:
            begin_write(holder)  # another process's long write transaction
            answer = client.post(path.format(backend=tokens["backend"]), headers=auth["backend"], json=body)
            holder.rollback()
    finally:
        other.dispose()
    assert answer.status_code == 503, answer.get_data(as_text=True)
    if code:
        assert_error(answer, 503, code)
    assert answer.headers["Retry-After"] == "5"
    assert not [name for name in RATE_HEADERS[1:] if name in answer.headers]
    assert count_rows() == before
