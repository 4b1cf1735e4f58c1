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


# --- What a limit is keyed on: the author id as intake stores it, the reader's /64, the real client ---

@pytest.fixture
def keyed(app_config, auth_for, make_app):
    """A limited app counting in memory: what a limit keys on does not depend on where it is counted."""
    app = make_app({**app_config, "RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URL": "memory://",
                    "RATELIMIT_PER_AUTHOR": "3/minute", "RATELIMIT_PER_READER_IP": "4/minute"})
    return app, app.test_client(), auth_for(app)


def stored_authors(app) -> list[str]:
    from sqlalchemy import select

    from moderation.extensions import db
    from moderation.models import Comment

    with app.app_context():
        return list(db.session.scalars(select(Comment.author_id).order_by(Comment.id)))


@pytest.mark.parametrize("variant", [
    "Ju\u0308rgen",            # NFD: u + combining diaeresis
    "J\u00fcrgen\x00",         # a control character
    "\u202eJ\u00fcrgen",       # a bidi override
    "\u2066J\u00fcrgen\u2069",  # a bidi isolate
    "J\u00fcr\x07gen",         # a bell inside
    "J\u00fcrgen\ud800",       # a lone surrogate
    "  J\u00fcrgen\t",         # surrounding whitespace
], ids=["nfd", "nul", "bidi-override", "bidi-isolate", "bell", "surrogate", "whitespace"])
def test_author_variants_share_one_budget(keyed, count_rows, variant):
    """Every spelling that intake stores as the same author id draws from that author's one budget."""
    app, client, auth = keyed
    for i, author in enumerate(["J\u00fcrgen", variant, "J\u00fcrgen"]):
        assert post(client, auth["backend"], author, i).status_code == 201
    before = count_rows()
    assert_error(post(client, auth["backend"], variant, 3), 429, "rate_limited")
    assert count_rows() == before
    assert stored_authors(app) == ["J\u00fcrgen"] * 3


@pytest.mark.parametrize("value", [
    "not-an-ip", "203.0.113.7:8080", "999.1.1.1", "203.0.113.7, 10.0.0.1", "[2001:db8::1]", "2001:db8::/64",
    "010.0.0.1", "x" * 300, "203.0.113", "::ffff:999.0.0.1",
])
def test_invalid_reader_ip_is_refused_and_nothing_is_stored(keyed, count_rows, value):
    _, client, auth = keyed
    before = count_rows()
    response = post(client, auth["backend"], "leser", 0, **{"X-Reader-IP": value})
    assert_error(response, 422, "validation_failed", fields={"X-Reader-IP"})
    assert value not in response.get_data(as_text=True)  # not echoed back
    assert count_rows() == before


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_reader_ip_means_none_was_forwarded(keyed, value):
    _, client, auth = keyed
    assert post(client, auth["backend"], "leser", 0, **{"X-Reader-IP": value}).status_code == 201


def test_invalid_reader_ip_is_refused_with_limits_off(app_config, auth_for, make_app, count_rows):
    """The header means the same with limits off, so that a backend's bug shows before production."""
    app = make_app({**app_config, "RATELIMIT_ENABLED": False})
    auth = auth_for(app)
    before = count_rows()
    response = post(app.test_client(), auth["backend"], "leser", 0, **{"X-Reader-IP": "kaputt"})
    assert_error(response, 422, "validation_failed", fields={"X-Reader-IP"})
    assert count_rows() == before


@pytest.mark.parametrize(("same", "other"), [
    (["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:DB8:1:2:0:0:0:7",
      "2001:db8:1:2:abcd::9"], "2001:db8:1:3::1"),
    (["203.0.113.7", "::ffff:203.0.113.7", "203.0.113.7", "::ffff:cb00:7107", "203.0.113.7"], "203.0.113.8"),
], ids=["ipv6-per-64", "ipv4-mapped"])
def test_reader_ip_limit_buckets(keyed, count_rows, same, other):
    """IPv6 readers are limited per /64 (one subscriber's share); an IPv4-mapped address is its IPv4."""
    _, client, auth = keyed
    for i, address in enumerate(same[:4]):
        assert post(client, auth["backend"], f"a{i}", i, **{"X-Reader-IP": address}).status_code == 201
    before = count_rows()
    assert_error(post(client, auth["backend"], "a9", 9, **{"X-Reader-IP": same[4]}), 429, "rate_limited")
    assert count_rows() == before
    assert post(client, auth["backend"], "a10", 10, **{"X-Reader-IP": other}).status_code == 201


def listing(client, peer: str, forwarded: str | None = None):
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return client.get("/v1/articles/a/comments", headers=headers, environ_base={"REMOTE_ADDR": peer})


@pytest.fixture
def proxied(app_config, make_app):
    def make(hops: int):
        return make_app({**app_config, "RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URL": "memory://",
                         "RATELIMIT_PER_KEY": "3/minute", "TRUSTED_PROXY_HOPS": hops,
                         "RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}"}).test_client()
    return make


def test_behind_one_trusted_proxy_each_reader_has_its_own_bucket(proxied):
    client = proxied(1)
    assert [listing(client, "10.0.0.2", "198.51.100.1").status_code for _ in range(4)] == [200, 200, 200, 429]
    # A second reader behind the same proxy is not affected by the first one's budget.
    assert listing(client, "10.0.0.2", "198.51.100.2").status_code == 200
    # A reader who adds an entry of its own to X-Forwarded-For is still the address the proxy saw.
    assert_error(listing(client, "10.0.0.2", "192.0.2.99, 198.51.100.1"), 429, "rate_limited")


def test_without_trusted_hops_x_forwarded_for_is_ignored(proxied):
    """The default trusts no proxy: a client cannot pick a fresh bucket by sending X-Forwarded-For."""
    client = proxied(0)
    statuses = [listing(client, "198.51.100.1", f"192.0.2.{i}").status_code for i in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_keyless_ipv6_clients_are_limited_per_64(proxied):
    client = proxied(0)
    statuses = [listing(client, f"2001:db8:7:7::{i + 1:x}").status_code for i in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert listing(client, "2001:db8:7:8::1").status_code == 200


@pytest.mark.parametrize("value", ["-1", "eins", "1.5"])
def test_trusted_proxy_hops_must_be_a_whole_number_of_at_least_0(value):
    from moderation.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="MODERATION_TRUSTED_PROXY_HOPS"):
        load_config({"MODERATION_TRUSTED_PROXY_HOPS": value})
