"""Client input that used to answer 500 answers a clear 4xx in the endpoint's error shape and stores nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from sqlalchemy import select

from moderation.extensions import db
from moderation.models import FeedbackLabel
from tests.conftest import FRIENDLY
from tests.moderation_helpers import submit
from tests.web.conftest import sign_in

CORAL_SECRET = "coral-geheim"
GOOD = {"author_id": "leser-1", "author_name": "Leserin K.", "text": FRIENDLY[0]}
ANALYZE, SUGGEST = "/v1alpha1/comments:analyze", "/v1alpha1/comments:suggestscore"
CORAL = "/v1/integrations/coral/moderation"
ANALYZE_BODY = {"comment": {"text": FRIENDLY[0]}, "requestedAttributes": {"TOXICITY": {}}}
SUGGEST_BODY = {"comment": {"text": FRIENDLY[0]}, "clientToken": "comment:c-1",
                "attributeScores": {"TOXICITY": {"summaryScore": {"value": 1}}}}
CORAL_BODY = {"action": "NEW", "comment": {"body": f"<p>{FRIENDLY[0]}</p>"}, "author": {"id": "a", "role": "COMMENTER"},
              "story": {"id": "story-1"}}

# Every endpoint that reads a JSON body: (method, path, role, a body it accepts).
JSON_ENDPOINTS = [
    ("POST", "/v1/articles/artikel-1/comments", "backend", GOOD),
    ("POST", "/v1/score", "backend", {"text": FRIENDLY[0]}),
    ("POST", "/v1/moderation/queue/claim", "moderator", {"limit": 5}),
    ("POST", "/v1/moderation/comments/1/decision", "moderator", {"decision": "approve", "reason": "ok"}),
    ("PUT", "/v1/moderation/authors/leser-1/ban", "moderator", {"reason": "Beleidigungen"}),
    ("PUT", "/v1/moderation/wordlists", "moderator", {"banned": ["idiot"], "suspect": []}),
    ("PUT", "/v1/articles/artikel-1/settings", "moderator", {"comments_open": True, "premoderation": False}),
    ("POST", "/v1/comments/1/reports", "backend", {"reporter_id": "leser-2", "reason": "insult"}),
    ("POST", ANALYZE, "backend", ANALYZE_BODY),
    ("POST", SUGGEST, "backend", SUGGEST_BODY),
    ("POST", CORAL, None, CORAL_BODY),
]
ENDPOINT_IDS = [f"{method} {path}" for method, path, _, _ in JSON_ENDPOINTS]


@pytest.fixture
def app_config(app_config):
    return {**app_config, "CORAL_SIGNING_SECRETS": CORAL_SECRET}


def send(client, tokens, method: str, path: str, role: str | None, raw: bytes | str):
    """Send `raw` as a JSON body with the credentials the endpoint takes."""
    raw = raw.encode() if isinstance(raw, str) else raw
    headers = {"Content-Type": "application/json"}
    if path.startswith("/v1alpha1/"):
        path = f"{path}?key={tokens[role]}"
    elif role is None:  # Coral signs the raw body
        headers["X-Coral-Signature"] = "sha256=" + hmac.new(CORAL_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    else:
        headers["Authorization"] = f"Bearer {tokens[role]}"
    return client.open(path, method=method, data=raw, headers=headers)


def assert_refused(response, path: str, status: int | None = None) -> dict:
    """Check a 4xx in the endpoint's one error shape; return the error object."""
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)[:500]
    if status is not None:
        assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.is_json and set(response.json) == {"error"}
    error = response.json["error"]
    if path.startswith("/v1alpha1/"):  # Google's shape on the Perspective drop-in
        assert set(error) == {"code", "message", "status"} and error["code"] == response.status_code
    else:
        assert set(error) == {"code", "message", "fields"} and isinstance(error["fields"], dict)
    assert isinstance(error["message"], str) and error["message"]
    return error


def test_every_json_endpoint_accepts_its_sample_body(client, tokens):
    # The tables below only mean something if the sample bodies get past parsing and authentication.
    submit(client, {"backend": {"Authorization": f"Bearer {tokens['backend']}"}}, author="vorher")
    for method, path, role, body in JSON_ENDPOINTS:
        response = send(client, tokens, method, path, role, json.dumps(body))
        assert response.status_code < 300, (path, response.get_data(as_text=True)[:300])


# --- deeply nested JSON (RecursionError in the parser) ---

DEEP_ARRAYS = "[" * 20_000 + "]" * 20_000
DEEP_OBJECTS = '{"a":' * 9_000 + "1" + "}" * 9_000
# Deep enough to be refused, shallow enough to parse: the limit does not depend on the stack.
NESTED_VALUE = json.loads("[" * 100 + "]" * 100)


@pytest.mark.parametrize("shape", ["arrays", "objects", "in-the-body"])
@pytest.mark.parametrize(("method", "path", "role", "body"), JSON_ENDPOINTS, ids=ENDPOINT_IDS)
def test_deeply_nested_json_is_400(client, tokens, count_rows, method, path, role, body, shape):
    raw = {"arrays": DEEP_ARRAYS, "objects": DEEP_OBJECTS}.get(shape) or json.dumps({**body, "tief": NESTED_VALUE})
    before = count_rows()
    error = assert_refused(send(client, tokens, method, path, role, raw), path, 400)
    if path != CORAL:  # Coral's answer says only that this is not one of its requests
        assert "nested" in error["message"]
    if not path.startswith("/v1alpha1/") and path != CORAL:
        assert error["code"] == "malformed_json"
    assert count_rows() == before


def test_deeply_nested_json_is_400_with_rate_limits_on(app_config, make_app, tokens, count_rows):
    # The per-author limit reads the body before the view does.
    client = make_app({**app_config, "RATELIMIT_ENABLED": True}).test_client()
    before = count_rows()
    response = send(client, tokens, "POST", "/v1/articles/artikel-1/comments", "backend", DEEP_ARRAYS)
    assert assert_refused(response, "/v1/")["code"] == "malformed_json"
    assert count_rows() == before


def test_a_deeply_nested_context_entry_is_ignored_like_any_entry_that_is_not_corals(app, client, tokens):
    # suggestscore reads Coral's commentID from JSON inside a context entry's text; that JSON is bounded too.
    body = {**SUGGEST_BODY, "context": {"entries": [{"text": DEEP_ARRAYS[:20_000] + DEEP_ARRAYS[-20_000:]}]}}
    response = send(client, tokens, "POST", SUGGEST, "backend", json.dumps(body))
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    with app.app_context():
        assert db.session.scalars(select(FeedbackLabel.external_id)).all() == ["c-1"]  # named by the clientToken


# --- integers too long for Python's int (ValueError: exceeds the limit of 4300 digits) ---

HUGE = "9" * 5_000


# (method, path, role, JSON body with @ where the number goes, the field it lands in)
@pytest.mark.parametrize(("method", "path", "role", "template", "field"), [
    ("POST", "/v1/articles/artikel-1/comments", "backend",
     '{"author_id": "a", "author_name": "n", "text": "Hallo", "parent_id": @}', "parent_id"),
    ("POST", "/v1/articles/artikel-1/comments", "backend",
     '{"author_id": "a", "author_name": "n", "text": "Hallo", "parent_id": -@}', "parent_id"),
    ("POST", "/v1/articles/artikel-1/comments", "backend",
     '{"author_id": "a", "author_name": "n", "text": @}', "text"),
    ("POST", "/v1/moderation/queue/claim", "moderator", '{"limit": @}', "limit"),
    ("POST", "/v1/moderation/comments/1/decision", "moderator", '{"decision": "approve", "force": @}',
     "force"),
    ("PUT", "/v1/articles/artikel-1/settings", "moderator", '{"comments_open": @, "premoderation": false}',
     "comments_open"),
    ("POST", "/v1/score", "backend", '{"text": "Hallo", "extra": @}', "extra"),
    ("POST", ANALYZE, "backend",
     '{"comment": {"text": "Hallo"}, "requestedAttributes": {"TOXICITY": {"scoreThreshold": @}}}',
     "scoreThreshold"),
    ("POST", SUGGEST, "backend",
     '{"comment": {"text": "Hallo"}, "attributeScores": {"TOXICITY": {"summaryScore": {"value": @}}}}',
     "value"),
], ids=["parent_id", "negative parent_id", "text", "claim limit", "decision force", "settings", "unknown field",
        "analyze threshold", "suggestscore value"])
def test_a_5000_digit_integer_in_json_is_refused_naming_the_field(client, tokens, count_rows, method, path, role,
                                                                  template, field):
    submit(client, {"backend": {"Authorization": f"Bearer {tokens['backend']}"}}, author="vorher")
    before = count_rows()
    error = assert_refused(send(client, tokens, method, path, role, template.replace("@", HUGE)), path)
    if path.startswith("/v1alpha1/"):
        assert field in error["message"]
    else:
        assert error["code"] == "validation_failed" and field in error["fields"]
    assert count_rows() == before


@pytest.mark.parametrize(("path", "query", "field"), [
    ("/v1/articles/artikel-1/comments", {"limit": HUGE}, "limit"),
    ("/v1/moderation/queue", {"limit": HUGE}, "limit"),
    ("/v1/moderation/audit", {"comment_id": HUGE}, "comment_id"),
    ("/v1/moderation/audit", {"before_id": HUGE}, "before_id"),
])
def test_a_5000_digit_integer_in_the_query_is_422(client, auth, path, query, field):
    response = client.get(path, query_string=query, headers=auth["moderator"])
    assert assert_refused(response, path, 422)["fields"].keys() == {field}


# --- cursors the service never handed out ---

def cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("raw", ["c1:" + "9" * 30, "c1:" + "9" * 140, "c1:2147483648", "c1:-1", "c1:0", "c1: 7",
                                 "c1:+7", "c1:\u0667"])
def test_a_listing_cursor_with_an_out_of_range_id_is_422(client, auth, count_rows, raw):
    submit(client, auth)
    before = count_rows()
    response = client.get("/v1/articles/artikel-1/comments", query_string={"cursor": cursor(raw)})
    assert assert_refused(response, "/v1/", 422)["fields"] == {"cursor": ["Invalid cursor."]}
    assert count_rows() == before


@pytest.mark.parametrize(("sort", "key"), [("oldest", [0, 10**30]), ("oldest", [0, -1]), ("toxicity", [0, 0.5, 10**30]),
                                           ("toxicity", [0, 1e308 * 10, 3]), ("oldest", [0, True]),
                                           ("oldest", [2, 7]), ("oldest", [True, 7]), ("toxicity", [0.5, 0.5, 7]),
                                           ("oldest", [7]), ("toxicity", [0.5, 7])])  # the last two: q1's shape
def test_a_queue_cursor_with_an_out_of_range_key_is_422(client, auth, sort, key):
    forged = cursor(json.dumps(["q2", sort, *key]))
    response = client.get("/v1/moderation/queue", query_string={"sort": sort, "cursor": forged},
                          headers=auth["moderator"])
    assert assert_refused(response, "/v1/", 422)["fields"] == {"cursor": ["Invalid cursor."]}


def test_the_moderator_page_refuses_a_forged_queue_cursor(client, tokens):
    assert sign_in(client, tokens["moderator"]).status_code == 302
    forged = cursor(json.dumps(["q2", "oldest", 0, 10**30]))
    response = client.get("/moderation/", query_string={"sort": "oldest", "cursor": forged})
    assert response.status_code == 422 and "<html" in response.text.lower()


# --- strings that cannot be stored or encoded: lone surrogates (valid JSON escapes) and NUL ---

LONE_SURROGATE, NUL = "\\ud800", "\\u0000"
# (method, path, role, JSON body with @ where the hostile character goes, the field it lands in)
STRING_FIELDS = [
    ("POST", ANALYZE, "backend", '{"comment": {"text": "Hallo @ du"}, "requestedAttributes": {"TOXICITY": {}}}',
     "comment.text"),
    ("POST", ANALYZE, "backend", '{"comment": {"text": "Hallo"}, "clientToken": "t@",'
     ' "requestedAttributes": {"TOXICITY": {}}}', "clientToken"),
    ("POST", ANALYZE, "backend", '{"comment": {"text": "Hallo"}, "requestedAttributes": {"TOXICITY@": {}}}',
     "requestedAttributes"),
    ("POST", SUGGEST, "backend", '{"comment": {"text": "Hallo"}, "clientToken": "comment:c@",'
     ' "attributeScores": {"TOXICITY": {"summaryScore": {"value": 1}}}}', "clientToken"),
    ("POST", "/v1/moderation/comments/1/decision", "moderator", '{"decision": "reject", "reason": "r@"}', "reason"),
    ("PUT", "/v1/moderation/wordlists", "moderator", '{"banned": ["idi@ot"], "suspect": []}', "banned"),
    ("PUT", "/v1/moderation/wordlists", "moderator", '{"banned": [], "suspect": ["@"]}', "suspect"),
    # Coral's author ids are not here: they are cleaned like our own API's (NUL and lone surrogates removed),
    # so that erasure and bans reach them (tests/test_privacy_ids.py).
]


@pytest.mark.parametrize("character", [LONE_SURROGATE, NUL], ids=["lone surrogate", "NUL"])
@pytest.mark.parametrize(("method", "path", "role", "template", "field"), STRING_FIELDS,
                         ids=[f"{m} {p} {f}" for m, p, _, _, f in STRING_FIELDS])
def test_strings_no_database_can_store_are_refused_naming_the_field(client, tokens, count_rows, method, path, role,
                                                                   template, field, character):
    submit(client, {"backend": {"Authorization": f"Bearer {tokens['backend']}"}}, author="vorher")
    before = count_rows()
    error = assert_refused(send(client, tokens, method, path, role, template.replace("@", character)), path)
    if path.startswith("/v1alpha1/"):
        assert error["code"] == 400 and field in error["message"]
    elif path == CORAL:
        assert error["code"] == "bad_request" and field in error["fields"]
    else:
        assert error["code"] == "validation_failed" and field in error["fields"]
    assert count_rows() == before


def test_a_nul_in_a_query_parameter_is_422(client, auth):
    response = client.get("/v1/moderation/audit", query_string={"moderator": "a\x00b"}, headers=auth["moderator"])
    assert assert_refused(response, "/v1/", 422)["fields"].keys() == {"moderator"}


@pytest.mark.parametrize("text", ["Gut\ud800 gemacht", "Hallo\x00Welt"])
def test_comment_texts_are_still_cleaned_rather_than_refused(client, auth, text):
    # Texts go through clean_text, which removes these characters; only fields stored as sent refuse them.
    response = client.post("/v1/articles/artikel-1/comments", headers=auth["backend"],
                           json={**GOOD, "text": text, "author_id": "a\ud800b"})
    assert response.status_code == 201, response.json
    assert "\ud800" not in response.json["text"] and "\x00" not in response.json["text"]
    assert response.json["author_id"] == "ab"


# --- article ids "." and ".." (path segments that mean "here" and "up") ---

DOT_IDS = [".", "..", "%2E", "%2e%2E"]


@pytest.mark.parametrize("article_id", DOT_IDS)
def test_dot_article_ids_are_refused_everywhere(app_config, make_app, tokens, count_rows, article_id):
    client = make_app(app_config).test_client()
    backend = {"Authorization": f"Bearer {tokens['backend']}"}
    moderator = {"Authorization": f"Bearer {tokens['moderator']}"}
    before = count_rows()
    answers = {
        "submit": client.post(f"/v1/articles/{article_id}/comments", json=GOOD, headers=backend),
        "listing": client.get(f"/v1/articles/{article_id}/comments"),
        "settings": client.get(f"/v1/articles/{article_id}/settings", headers=moderator),
        "change settings": client.put(f"/v1/articles/{article_id}/settings", headers=moderator,
                                      json={"comments_open": False, "premoderation": True}),
    }
    for name, response in answers.items():
        assert assert_refused(response, "/v1/", 422)["fields"] == {"article_id": ["Invalid article id."]}, name
    assert count_rows() == before


@pytest.mark.parametrize("article_id", [".", ".."])
def test_dot_article_ids_are_refused_in_filters_and_coral(client, tokens, auth, count_rows, article_id):
    before = count_rows()
    queue = client.get("/v1/moderation/queue", query_string={"article_id": article_id}, headers=auth["moderator"])
    assert assert_refused(queue, "/v1/", 422)["fields"].keys() == {"article_id"}
    claim = client.post("/v1/moderation/queue/claim", json={"article_id": article_id}, headers=auth["moderator"])
    assert assert_refused(claim, "/v1/", 422)["fields"].keys() == {"article_id"}
    coral = send(client, tokens, "POST", CORAL, None, json.dumps({**CORAL_BODY, "story": {"id": article_id}}))
    assert assert_refused(coral, CORAL, 400)["fields"].keys() == {"story"}
    assert count_rows() == before


@pytest.mark.parametrize("article_id", ["...", ".a", "a.", "a..b", "v1.2"])
def test_ids_with_dots_that_are_not_path_segments_still_work(client, auth, article_id):
    assert client.post(f"/v1/articles/{article_id}/comments", json=GOOD, headers=auth["backend"]).status_code == 201
    assert client.get(f"/v1/articles/{article_id}/comments").json["total"] == 1
