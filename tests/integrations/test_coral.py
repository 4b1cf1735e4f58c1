"""Coral's external moderation phase: signed requests in Coral's documented shape."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from tests.conftest import FRIENDLY, TOXIC
from tests.test_bad_input import assert_error

URL = "/v1/integrations/coral/moderation"
SECRET, OLD_SECRET = "coral-neu-7f3a", "coral-alt-1b2c"


def coral_request(body_html: str, *, role: str = "COMMENTER", parent: str | None = None, action: str = "NEW",
                  story: str = "3f1c8b0e-5a7d-4c2b-9e61-0d2f4a6b8c90") -> dict:
    """Coral's External Moderation Request, as its docs describe it."""
    return {
        "action": action,
        "comment": {"body": body_html, "parentID": parent},
        "author": {"id": "b6a1c2d3-user-0001", "role": role},
        "story": {"id": story, "url": "https://zeitung.example/politik/radwege"},
        "site": {"id": "site-1"},
        "tenantID": "tenant-1",
        "tenantDomain": "kommentare.zeitung.example",
    }


def signed(payload: dict, *secrets: str) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(payload).encode()
    signature = ",".join("sha256=" + hmac.new(s.encode(), raw, hashlib.sha256).hexdigest() for s in secrets)
    return raw, {"X-Coral-Signature": signature, "Content-Type": "application/json"}


@pytest.fixture
def coral_app(app):
    app.config["CORAL_SIGNING_SECRETS"] = f"{SECRET}, {OLD_SECRET}"
    return app


def send(client, payload, *secrets):
    raw, headers = signed(payload, *secrets)
    return client.post(URL, data=raw, headers=headers)


def test_friendly_comment_lets_coral_continue_and_is_recorded(coral_app, client, auth):
    response = send(client, coral_request(f"<p>{FRIENDLY[0]}</p>"), SECRET)
    assert response.status_code == 204 and response.data == b""
    comments = client.get("/v1/articles/3f1c8b0e-5a7d-4c2b-9e61-0d2f4a6b8c90/comments").json["comments"]
    assert [c["text"] for c in comments] == [FRIENDLY[0]]


def test_insult_is_rejected_or_withheld(coral_app, client):
    response = send(client, coral_request(f"<p>{TOXIC[3]}</p><p>{TOXIC[0]}</p>"), SECRET)
    assert response.status_code == 200
    assert response.json["status"] in {"REJECTED", "SYSTEM_WITHHELD"}
    if response.json["status"] == "SYSTEM_WITHHELD":
        assert response.json["actions"] == [{"actionType": "FLAG", "reason": "COMMENT_DETECTED_TOXIC"}]


def test_review_band_is_system_withheld_with_flag(coral_app, client, auth):
    client.put("/v1/articles/story-premod/settings", headers=auth["moderator"],
               json={"comments_open": True, "premoderation": False})
    client.put("/v1/moderation/wordlists", headers=auth["moderator"], json={"banned": [], "suspect": ["Radwege"]})
    response = send(client, coral_request(f"<p>{FRIENDLY[6]}</p>", story="story-premod"), SECRET)
    assert response.status_code == 200
    assert response.json["status"] == "SYSTEM_WITHHELD"
    assert {"actionType": "FLAG", "reason": "COMMENT_DETECTED_SUSPECT_WORD"} in response.json["actions"]


def test_banned_term_is_rejected(coral_app, client, auth):
    client.put("/v1/moderation/wordlists", headers=auth["moderator"], json={"banned": ["Arschloch"], "suspect": []})
    response = send(client, coral_request("<p>Du <b>A r s c h l o c h</b></p>", action="EDIT"), SECRET)
    assert response.json == {"status": "REJECTED"}


def test_reply_is_judged_like_any_comment(coral_app, client):
    response = send(client, coral_request(f"<p>{FRIENDLY[1]}</p>", parent="c0ffee-parent"), SECRET)
    assert response.status_code == 204


@pytest.mark.parametrize("role", ["STAFF", "MODERATOR", "ADMIN", "admin"])
def test_staff_pass_unjudged(coral_app, client, count_rows, role):
    before = count_rows()
    assert send(client, coral_request(f"<p>{TOXIC[3]}</p>", role=role), SECRET).status_code == 204
    assert count_rows() == before


def test_rotated_secret_and_multiple_signatures_are_accepted(coral_app, client, count_rows):
    assert send(client, coral_request("<p>Guter Punkt.</p>"), OLD_SECRET).status_code in {200, 204}
    assert send(client, coral_request("<p>Guter Punkt zwei.</p>"), "falsch", SECRET).status_code in {200, 204}
    assert count_rows()["comments"] == 2


@pytest.mark.parametrize("signature", [None, "", "sha256=", "sha256=deadbeef", "md5=abc", "falsch"])
def test_bad_or_missing_signature_is_401_and_records_nothing(coral_app, client, count_rows, signature):
    raw = json.dumps(coral_request(f"<p>{FRIENDLY[0]}</p>")).encode()
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Coral-Signature"] = signature
    before = count_rows()
    assert_error(client.post(URL, data=raw, headers=headers), 401, "unauthorized")
    assert count_rows() == before


def test_signature_over_another_body_is_refused(coral_app, client, count_rows):
    _, headers = signed(coral_request("<p>Harmlos.</p>"), SECRET)
    tampered = json.dumps(coral_request(f"<p>{TOXIC[0]}</p>")).encode()
    before = count_rows()
    assert_error(client.post(URL, data=tampered, headers=headers), 401, "unauthorized")
    assert count_rows() == before


def test_unconfigured_integration_refuses(app, client, count_rows):
    before = count_rows()
    assert_error(send(client, coral_request("<p>Hallo</p>"), SECRET), 401, "unauthorized")
    assert count_rows() == before


@pytest.mark.parametrize("payload", [
    {}, {"action": "NEW"}, [], "text",
    {**coral_request("<p>x</p>"), "action": "DELETE"},
    {**coral_request("<p>x</p>"), "author": {"role": "COMMENTER"}},
    {**coral_request("<p>x</p>"), "story": {"id": "kein gültiger/id"}},
    {**coral_request("<p>x</p>"), "comment": {"body": 5}},
])
def test_malformed_request_is_400_and_records_nothing(coral_app, client, count_rows, payload):
    before = count_rows()
    assert_error(send(client, payload, SECRET), 400, "bad_request")
    assert count_rows() == before


def test_malformed_json_is_400(coral_app, client, count_rows):
    raw = b'{"action": "NEW", '
    headers = {"X-Coral-Signature": "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest(),
               "Content-Type": "application/json"}
    before = count_rows()
    assert client.post(URL, data=raw, headers=headers).status_code == 400
    assert count_rows() == before


def test_html_is_stripped_to_text(coral_app, client, auth):
    send(client, coral_request("<p>Erste Zeile<br>zweite &amp; <i>dritte</i></p><script>x()</script>"), SECRET)
    comment = client.get("/v1/comments/1", headers=auth["backend"]).json
    assert comment["text"] == "Erste Zeile\nzweite & dritte"
