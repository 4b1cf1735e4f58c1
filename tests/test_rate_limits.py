"""Rate limits: per author and per reader IP on submissions, per key elsewhere; memory and Redis storage."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import FRIENDLY, REDIS_URL
from tests.test_bad_input import assert_error


@pytest.fixture(params=["memory", "redis"])
def limited_app(request, app_config, make_app):
    storage = "memory://"
    if request.param == "redis":
        if not REDIS_URL:
            pytest.skip("Redis tests skipped: set MODERATION_TEST_REDIS_URL (`.ci/run` does)")
        storage = REDIS_URL
    config = {**app_config, "RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URL": storage,
              "RATELIMIT_PER_AUTHOR": "3/minute", "RATELIMIT_PER_READER_IP": "4/minute",
              "RATELIMIT_PER_KEY": "20/minute", "RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
    return make_app(config)


@pytest.fixture
def limited(limited_app, auth_for):
    return limited_app.test_client(), auth_for(limited_app)


@pytest.fixture
def auth_for():
    from moderation.extensions import db
    from moderation.services.keys import create_key

    def make(app):
        with app.app_context():
            tokens = {r: create_key(db.session, role=r, name=f"rl-{r}-{uuid.uuid4().hex[:6]}")[1]
                      for r in ("backend", "moderator")}
            db.session.commit()
        return {r: {"Authorization": f"Bearer {t}"} for r, t in tokens.items()}

    return make


def post(client, headers, author, i, **extra_headers):
    return client.post("/v1/articles/a/comments", headers={**headers, **extra_headers},
                       json={"author_id": author, "author_name": "A", "text": f"{FRIENDLY[0]} {i}"})


def test_per_author_limit_returns_429_with_retry_after(limited, count_rows):
    client, auth = limited
    for i in range(3):
        assert post(client, auth["backend"], "vielschreiber", i).status_code == 201
    before = count_rows()
    refused = post(client, auth["backend"], "vielschreiber", 99)
    assert_error(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) > 0
    assert count_rows() == before
    # Another author through the same backend key is not affected.
    assert post(client, auth["backend"], "andere", 0).status_code == 201


def test_per_reader_ip_limit(limited):
    client, auth = limited
    for i in range(4):
        assert post(client, auth["backend"], f"a{i}", i, **{"X-Reader-IP": "203.0.113.7"}).status_code == 201
    assert_error(post(client, auth["backend"], "a9", 9, **{"X-Reader-IP": "203.0.113.7"}), 429, "rate_limited")
    assert post(client, auth["backend"], "a10", 10, **{"X-Reader-IP": "203.0.113.8"}).status_code == 201


def test_per_key_limit_on_other_endpoints_and_health_is_exempt(limited):
    client, auth = limited
    statuses = [client.get("/v1/moderation/queue", headers=auth["moderator"]).status_code for _ in range(21)]
    assert statuses[:20] == [200] * 20 and statuses[20] == 429
    assert all(client.get("/healthz").status_code == 200 for _ in range(30))


def test_limits_off_switch(app_config, auth_for, make_app):
    app = make_app({**app_config, "RATELIMIT_ENABLED": False, "RATELIMIT_PER_AUTHOR": "1/minute"})
    client, auth = app.test_client(), auth_for(app)
    assert all(post(client, auth["backend"], "x", i).status_code == 201 for i in range(5))


def test_redis_storage_is_shared_between_instances(app_config, auth_for, make_app):
    """Two app instances (as two servers would be) share one author's count through Redis."""
    if not REDIS_URL:
        pytest.skip("Redis tests skipped: set MODERATION_TEST_REDIS_URL (`.ci/run` does)")
    config = {**app_config, "RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URL": REDIS_URL,
              "RATELIMIT_PER_AUTHOR": "2/minute", "RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
    first, second = make_app(config), make_app(config)
    auth = auth_for(first)
    assert post(first.test_client(), auth["backend"], "geteilt", 1).status_code == 201
    assert post(second.test_client(), auth["backend"], "geteilt", 2).status_code == 201
    assert post(first.test_client(), auth["backend"], "geteilt", 3).status_code == 429
    assert post(second.test_client(), auth["backend"], "geteilt", 4).status_code == 429
