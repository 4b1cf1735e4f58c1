"""Every route of the app, classified by who may call it, and each refusal checked against the running app.

A new route fails `test_table_covers_every_route` until someone adds it to ACCESS with its roles.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from tests.moderation_helpers import submit
from tests.test_bad_input import assert_error

ROLES = ("backend", "moderator", "admin")
SESSION_ROLES = ("moderator", "admin")  # a backend key cannot sign in to the pages (checked below)
CORAL_SECRET = "route-roles-secret"


@dataclass(frozen=True)
class Public:
    """Anyone, without a key."""


@dataclass(frozen=True)
class Api:
    """`Authorization: Bearer <key>` of one of `roles`; refusals in the API's one error shape."""

    roles: tuple[str, ...]


@dataclass(frozen=True)
class Perspective:
    """A backend key as Google's APIs take it (`?key=`, X-Goog-Api-Key or bearer); refusals in Google's shape."""


@dataclass(frozen=True)
class CoralSignature:
    """No key at all: an HMAC of the body under MODERATION_CORAL_SIGNING_SECRETS in X-Coral-Signature."""


@dataclass(frozen=True)
class Session:
    """A signed-in moderator page session of one of `roles`; without one, a redirect to the sign-in."""

    roles: tuple[str, ...] = SESSION_ROLES


PUBLIC, BACKEND, MODERATOR, ADMIN = Public(), "backend", "moderator", "admin"
DESK = Api((MODERATOR, ADMIN))

ACCESS: dict[tuple[str, str], object] = {
    # operations and documentation
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/static/<path:filename>"): PUBLIC,
    ("GET", "/docs/swagger-ui/<path:filename>"): PUBLIC,
    ("GET", "/static/<path:filename>"): PUBLIC,
    # comments
    ("GET", "/v1/articles/<article_id:article_id>/comments"): PUBLIC,  # the published listing readers see
    ("POST", "/v1/articles/<article_id:article_id>/comments"): Api((BACKEND, ADMIN)),
    ("GET", "/v1/comments/<int(max=2147483647):comment_id>"): Api((BACKEND, MODERATOR, ADMIN)),
    ("POST", "/v1/comments/<int(max=2147483647):comment_id>/reports"): Api((BACKEND, ADMIN)),
    ("POST", "/v1/score"): Api((BACKEND, MODERATOR, ADMIN)),
    # the moderation desk
    ("GET", "/v1/articles/<article_id:article_id>/settings"): DESK,
    ("PUT", "/v1/articles/<article_id:article_id>/settings"): DESK,
    ("GET", "/v1/moderation/queue"): DESK,
    ("POST", "/v1/moderation/queue/claim"): DESK,
    ("POST", "/v1/moderation/comments/<int(max=2147483647):comment_id>/decision"): DESK,
    ("GET", "/v1/moderation/decisions"): DESK,
    ("POST", "/v1/moderation/actions/<int(max=2147483647):action_id>/reversal"): DESK,
    ("GET", "/v1/moderation/audit"): DESK,
    ("GET", "/v1/moderation/stats"): DESK,
    ("GET", "/v1/moderation/wordlists"): DESK,
    ("PUT", "/v1/moderation/wordlists"): DESK,
    ("PUT", "/v1/moderation/authors/ban"): DESK,
    ("DELETE", "/v1/moderation/authors/ban"): DESK,
    ("PUT", "/v1/moderation/authors/<author_id>/ban"): DESK,
    ("DELETE", "/v1/moderation/authors/<author_id>/ban"): DESK,
    ("GET", "/v1/moderation/policy"): DESK,
    ("PUT", "/v1/moderation/policy"): Api((ADMIN,)),
    # privacy: export and erasure of an author's data
    ("GET", "/v1/authors/export"): Api((ADMIN,)),
    ("DELETE", "/v1/authors"): Api((ADMIN,)),
    ("GET", "/v1/authors/<author_id>/export"): Api((ADMIN,)),
    ("DELETE", "/v1/authors/<author_id>"): Api((ADMIN,)),
    # integrations with their own schemes
    ("POST", "/v1/integrations/coral/moderation"): CoralSignature(),
    ("POST", "/v1alpha1/comments:analyze"): Perspective(),
    ("POST", "/v1alpha1/comments:suggestscore"): Perspective(),
    ("GET", "/$discovery/rest"): PUBLIC,  # Perspective's discovery document, as Google serves it
    # the moderators' pages
    ("GET", "/moderation/login"): PUBLIC,
    ("POST", "/moderation/login"): PUBLIC,
    ("GET", "/moderation/static/<path:filename>"): PUBLIC,
    ("GET", "/moderation/<path:anything>"): PUBLIC,  # the German 404 page
    ("POST", "/moderation/<path:anything>"): PUBLIC,
    ("POST", "/moderation/logout"): Session(),
    ("GET", "/moderation/"): Session(),
    ("GET", "/moderation/decided"): Session(),
    ("GET", "/moderation/dashboard"): Session(),
    ("GET", "/moderation/policy"): Session(),
    ("POST", "/moderation/policy"): Session((ADMIN,)),
    ("POST", "/moderation/comments/<int(max=2147483647):comment_id>/decision"): Session(),
    ("POST", "/moderation/actions/<int(max=2147483647):action_id>/reversal"): Session(),
}
# Only with MODERATION_DEMO=1, which production refuses: an anonymous demo article (ids `demo-...`).
DEMO_ACCESS: dict[tuple[str, str], object] = {
    ("GET", "/demo/"): PUBLIC,
    ("GET", "/demo/<article_id>"): PUBLIC,
    ("POST", "/demo/<article_id>"): PUBLIC,
    ("GET", "/demo/<article_id>/<path:anything>"): PUBLIC,
    ("POST", "/demo/<article_id>/<path:anything>"): PUBLIC,
}
# Ids that name an author; the query-string variants of the author routes need them as ?author_id=.
AUTHOR = "leser-1"
QUERY = {"/v1/authors": f"author_id={AUTHOR}", "/v1/authors/export": f"author_id={AUTHOR}",
         "/v1/moderation/authors/ban": f"author_id={AUTHOR}"}
PLACEHOLDER = re.compile(r"<(?:[^:<>]+:)?(\w+)>")


def by_kind(kind: type) -> list:
    return [pytest.param(*route, id=" ".join(route)) for route, access in ACCESS.items() if isinstance(access, kind)]


def routes_of(app) -> set[tuple[str, str]]:
    return {(method, rule.rule) for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}}


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return {**app_config, "CORAL_SIGNING_SECRETS": CORAL_SECRET}


@pytest.fixture
def comment_id(client, auth) -> int:
    """A published comment by AUTHOR on art-1: a refused request that got through would change or remove it."""
    return submit(client, auth, article="art-1", author=AUTHOR)["id"]


def url_for_rule(rule: str, comment_id: int) -> str:
    """Fill the rule's parameters with harmless values: the seeded comment and author, ids that do not exist."""
    values = {"article_id": "art-1", "comment_id": str(comment_id), "action_id": "999999", "author_id": AUTHOR,
              "filename": "not-there.txt", "anything": "not-there"}
    url = PLACEHOLDER.sub(lambda match: values[match.group(1)], rule)
    return f"{url}?{QUERY[rule]}" if rule in QUERY else url


def call(client, method: str, url: str, headers: dict | None = None, body: object = None):
    return client.open(url, method=method, headers=headers or {},
                       json=({} if body is None else body) if method in ("POST", "PUT") else None)


def test_table_covers_every_route(app):
    assert routes_of(app) == set(ACCESS)


def test_demo_routes_are_classified_too(make_app, app_config):
    demo = make_app({**app_config, "DEMO": True})
    assert routes_of(demo) == set(ACCESS) | set(DEMO_ACCESS)


@pytest.mark.parametrize(("method", "rule"), by_kind(Api))
def test_api_route_refuses_other_roles(client, auth, count_rows, comment_id, method, rule):
    allowed = ACCESS[(method, rule)].roles
    url = url_for_rule(rule, comment_id)
    before = count_rows()
    for headers in ({}, {"Authorization": "Bearer mk_unknown"}, {"Authorization": "Basic eDp5"}):
        response = call(client, method, url, headers)
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"] == "Bearer"
    for role in set(ROLES) - set(allowed):
        assert_error(call(client, method, url, auth[role]), 403, "forbidden")
    assert count_rows() == before, "a refused request changed the database"
    for role in allowed:
        response = call(client, method, url, auth[role])
        assert response.status_code not in (401, 403), (role, response.get_data(as_text=True))
        assert response.status_code < 500, (role, response.get_data(as_text=True))


@pytest.mark.parametrize(("method", "rule"), by_kind(Public))
def test_public_route_needs_no_key(client, comment_id, method, rule):
    response = call(client, method, url_for_rule(rule, comment_id))
    assert response.status_code not in (401, 403), response.get_data(as_text=True)
    assert response.status_code < 500, response.get_data(as_text=True)


def test_public_listing_shows_the_published_comment(client, comment_id):
    response = client.get("/v1/articles/art-1/comments")
    assert response.status_code == 200
    assert [c["id"] for c in response.json["comments"]] == [comment_id]


def assert_google_error(response, status: int, google_status: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert set(response.json) == {"error"}
    assert set(response.json["error"]) == {"code", "message", "status"}
    assert (response.json["error"]["code"], response.json["error"]["status"]) == (status, google_status)


@pytest.mark.parametrize(("method", "rule"), by_kind(Perspective))
def test_perspective_route_takes_only_backend_keys(client, tokens, count_rows, comment_id, method, rule):
    body = {"comment": {"text": "Danke für den Artikel."}, "requestedAttributes": {"TOXICITY": {}}}
    before = count_rows()
    assert_google_error(client.post(rule, json=body), 403, "PERMISSION_DENIED")
    assert_google_error(client.post(rule, json=body, headers={"X-Goog-Api-Key": "mk_unknown"}), 400,
                        "INVALID_ARGUMENT")
    for role in ("moderator", "admin"):
        for how in ({"query_string": {"key": tokens[role]}}, {"headers": {"X-Goog-Api-Key": tokens[role]}},
                    {"headers": {"Authorization": f"Bearer {tokens[role]}"}}):
            assert_google_error(client.post(rule, json=body, **how), 403, "PERMISSION_DENIED")
    assert count_rows() == before, "a refused request changed the database"
    response = client.post(rule, json=body, query_string={"key": tokens["backend"]})
    assert response.status_code not in (401, 403), response.get_data(as_text=True)
    assert response.status_code < 500, response.get_data(as_text=True)


def coral_signature(body: bytes, secret: str = CORAL_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(("method", "rule"), by_kind(CoralSignature))
def test_coral_route_takes_only_its_signature(client, auth, count_rows, comment_id, method, rule):
    body = json.dumps({"comment": {"id": "c-1", "body": "Danke für den Artikel."}, "author": {"id": "a-1", "role":
                       "COMMENTER"}, "story": {"id": "art-2"}}).encode()
    plain = {"Content-Type": "application/json"}
    before = count_rows()
    for headers in ({}, {"X-Coral-Signature": coral_signature(body, "wrong-secret")},
                    *({"Authorization": auth[role]["Authorization"]} for role in ROLES)):
        assert_error(client.post(rule, data=body, headers={**plain, **headers}), 401, "unauthorized")
    assert count_rows() == before, "a refused request changed the database"
    response = client.post(rule, data=body, headers={**plain, "X-Coral-Signature": coral_signature(body)})
    assert response.status_code not in (401, 403), response.get_data(as_text=True)
    assert response.status_code < 500, response.get_data(as_text=True)


def csrf_of(client) -> str:
    with client.session_transaction() as session:
        return session["csrf_token"]


def sign_in(client, token: str):
    client.get("/moderation/login")
    return client.post("/moderation/login", data={"api_key": token, "csrf_token": csrf_of(client)})


def sent_to_login(response) -> bool:
    """A redirect to the sign-in that comes back here afterwards (logout's own redirect has no `next`)."""
    location = urlsplit(response.headers.get("Location", ""))
    return response.status_code == 302 and location.path == "/moderation/login" and "next=" in location.query


def test_backend_key_cannot_open_a_page_session(app, tokens, count_rows):
    client = app.test_client()
    before = count_rows()
    assert sign_in(client, tokens["backend"]).status_code == 403
    assert count_rows() == before
    assert sent_to_login(client.get("/moderation/"))


@pytest.mark.parametrize(("method", "rule"), by_kind(Session))
def test_page_needs_a_moderator_session(app, tokens, auth, count_rows, comment_id, method, rule):
    allowed = ACCESS[(method, rule)].roles
    url = url_for_rule(rule, comment_id)
    before = count_rows()
    # No session at all: a form POST without the session's CSRF token is refused before anything else.
    bare = app.test_client().open(url, method=method)
    assert sent_to_login(bare) if method == "GET" else bare.status_code == 400
    # A session with a CSRF token but no sign-in, with and without an API key: the sign-in page.
    anonymous = app.test_client()
    anonymous.get("/moderation/login")
    csrf = {"X-CSRF-Token": csrf_of(anonymous)}
    for headers in ({}, auth["admin"]):
        response = anonymous.open(url, method=method, headers={**csrf, **headers})
        assert sent_to_login(response), (response.status_code, response.headers.get("Location"))
    response = anonymous.open(url, method=method, headers={**csrf, "X-Requested-With": "fetch"})
    assert response.status_code == 401
    assert count_rows() == before, "a refused request changed the database"
    for role in SESSION_ROLES:
        signed_in = app.test_client()
        assert sign_in(signed_in, tokens[role]).status_code == 302
        headers = {"X-CSRF-Token": csrf_of(signed_in)}
        if role in allowed:
            response = signed_in.open(url, method=method, headers=headers)
            assert response.status_code not in (401, 403) and not sent_to_login(response), (role, response.status_code)
            assert response.status_code < 500, (role, response.get_data(as_text=True))
        else:
            seen = count_rows()
            assert signed_in.open(url, method=method, headers=headers).status_code == 403, role
            assert count_rows() == seen, "a refused request changed the database"
