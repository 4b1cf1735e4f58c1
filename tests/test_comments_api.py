"""Comment intake, routing and the public listing through the Flask test client."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from moderation.extensions import db
from moderation.models import Article, Comment, ModerationAction
from tests.conftest import FRIENDLY, TOXIC

PUBLIC_FIELDS = {"id", "parent_id", "author_name", "text", "created_at"}
FULL_FIELDS = {"id", "article_id", "parent_id", "author_id", "author_name", "text", "status", "toxicity",
               "category", "reasons", "model_version", "created_at"}


def post(client, auth, article="artikel-1", **body):
    body = {"author_id": "leser-1", "author_name": "Leserin K.", "text": FRIENDLY[0], **body}
    return client.post(f"/v1/articles/{article}/comments", json=body, headers=auth["backend"])


def expected_status(toxicity: float) -> tuple[str, list[str]]:
    if toxicity >= 0.65:
        return "rejected", ["toxicity_high"]
    if toxicity >= 0.35:
        return "pending", ["toxicity_uncertain"]
    return "approved", []


@pytest.mark.parametrize("text", [FRIENDLY[0], FRIENDLY[4], TOXIC[0], TOXIC[3]])
def test_submission_is_scored_routed_and_audited(app, client, auth, text):
    response = post(client, auth, text=text)
    assert response.status_code == 201, response.json
    body = response.json
    assert set(body) == FULL_FIELDS
    assert body["article_id"] == "artikel-1"
    assert body["text"] == text
    assert 0.0 <= body["toxicity"] <= 1.0
    assert (body["status"], body["reasons"]) == expected_status(body["toxicity"])
    with app.app_context():
        comment = db.session.get(Comment, body["id"])
        assert comment.status == body["status"]
        actions = db.session.scalars(select(ModerationAction).where(ModerationAction.comment_id == body["id"])).all()
        assert [(a.moderator, a.from_status, a.to_status) for a in actions] == [(None, None, body["status"])]


def test_friendly_scores_below_toxic_and_routes_apart(client, auth):
    friendly = post(client, auth, text=FRIENDLY[1]).json
    toxic = post(client, auth, text=TOXIC[1]).json
    assert friendly["toxicity"] < toxic["toxicity"]
    assert friendly["status"] == "approved"
    assert toxic["status"] in {"pending", "rejected"}
    assert toxic["category"] in {"insult", "abuse", "profanity"}


def test_article_is_created_on_first_use_once(app, client, auth):
    post(client, auth, article="neu-42")
    post(client, auth, article="neu-42", text=FRIENDLY[2])
    with app.app_context():
        assert db.session.scalars(select(Article.external_id)).all() == ["neu-42"]


def test_text_is_cleaned_before_storage(client, auth):
    raw = "  Gute\u0000 Idee\u202e!\r\nDanke\u0007  "
    body = post(client, auth, text=raw, author_name=" Anna ").json
    assert body["text"] == "Gute Idee!\nDanke"
    assert body["author_name"] == "Anna"


def test_text_is_nfc_normalised(client, auth):
    decomposed = "Scho\u0308n gesagt"  # o + combining diaeresis
    assert post(client, auth, text=decomposed).json["text"] == "Schön gesagt"


def test_reply_carries_parent(client, auth):
    parent = post(client, auth).json
    reply = post(client, auth, text=FRIENDLY[1], parent_id=parent["id"]).json
    assert reply["parent_id"] == parent["id"]
    listing = client.get("/v1/articles/artikel-1/comments").json
    assert {c["id"]: c["parent_id"] for c in listing["comments"]} == {parent["id"]: None, reply["id"]: parent["id"]}


def test_get_comment_returns_full_record(client, auth):
    created = post(client, auth).json
    for role in ("backend", "moderator", "admin"):
        response = client.get(f"/v1/comments/{created['id']}", headers=auth[role])
        assert response.status_code == 200
        assert response.json == created


def test_listing_shows_only_approved_without_private_fields(client, auth):
    ids = {text: post(client, auth, text=text).json for text in FRIENDLY[:3] + TOXIC[:3]}
    approved = {c["id"] for c in ids.values() if c["status"] == "approved"}
    assert approved, "the tiny model should approve at least one friendly comment"
    listing = client.get("/v1/articles/artikel-1/comments")
    assert listing.status_code == 200
    assert {c["id"] for c in listing.json["comments"]} == approved
    assert listing.json["total"] == len(approved)
    for comment in listing.json["comments"]:
        assert set(comment) == PUBLIC_FIELDS


def test_listing_of_unknown_article_is_empty_and_creates_nothing(app, client):
    response = client.get("/v1/articles/gibt-es-nicht/comments")
    assert response.status_code == 200
    assert response.json == {"comments": [], "next_cursor": None, "total": 0}
    with app.app_context():
        assert db.session.scalars(select(Article)).all() == []


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_listing_paginates_with_cursor(client, auth, order):
    created = [post(client, auth, text=f"{FRIENDLY[i % 3]} Nummer {i}.", author_id=f"leser-{i}").json
               for i in range(7)]
    approved = [c["id"] for c in created if c["status"] == "approved"]
    expected = sorted(approved, reverse=order == "newest")
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 2, "order": order} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/articles/artikel-1/comments", query_string=query).json
        assert page["total"] == len(approved)
        assert len(page["comments"]) <= 2
        seen += [c["id"] for c in page["comments"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    assert pages == max(1, -(-len(approved) // 2))


def test_default_order_is_newest_first(client, auth):
    first = post(client, auth, text=FRIENDLY[0]).json
    second = post(client, auth, text=FRIENDLY[1], author_id="leser-2").json
    ids = [c["id"] for c in client.get("/v1/articles/artikel-1/comments").json["comments"]]
    assert ids == [second["id"], first["id"]]


def test_score_endpoint_stores_nothing(client, auth, count_rows):
    before = count_rows()
    response = client.post("/v1/score", json={"text": TOXIC[0]}, headers=auth["backend"])
    assert response.status_code == 200
    body = response.json
    assert set(body) == {"toxicity", "offensive", "category", "highlights", "model_version"}
    assert 0.0 <= body["toxicity"] <= 1.0
    for span in body["highlights"]:
        assert TOXIC[0][span["start"]:span["end"]] == span["text"]
    assert count_rows() == before


def test_idempotency_key_replays_first_answer(app, client, auth, count_rows):
    headers = {**auth["backend"], "Idempotency-Key": "retry-0001"}
    body = {"author_id": "leser-1", "author_name": "Anna", "text": FRIENDLY[3]}
    first = client.post("/v1/articles/artikel-1/comments", json=body, headers=headers)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    rows = count_rows()
    again = client.post("/v1/articles/artikel-1/comments", json=body, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert count_rows() == rows
    other = client.post("/v1/articles/artikel-1/comments", json={**body, "text": FRIENDLY[4]}, headers=headers)
    assert other.status_code == 422 and other.json["error"]["code"] == "idempotency_key_reused"
    assert count_rows() == rows


@pytest.mark.parametrize("key", ["", "a" * 201, "mit leerzeichen", "ümlaut"])
def test_bad_idempotency_key_is_422(client, auth, count_rows, key):
    before = count_rows()
    response = client.post("/v1/articles/artikel-1/comments", headers={**auth["backend"], "Idempotency-Key": key},
                           json={"author_id": "l", "author_name": "L", "text": FRIENDLY[0]})
    assert response.status_code == 422 and "Idempotency-Key" in response.json["error"]["fields"]
    assert count_rows() == before


def test_same_text_same_author_soon_after_is_a_duplicate(client, auth, count_rows):
    first = post(client, auth, text=FRIENDLY[5])
    before = count_rows()
    again = post(client, auth, text=FRIENDLY[5])
    assert again.status_code == 409 and again.json["error"]["code"] == "duplicate_comment"
    assert str(first.json["id"]) in again.json["error"]["message"]
    assert again.headers["Location"] == f"/v1/comments/{first.json['id']}"
    assert count_rows() == before
    # Another author, or another article, may say the same.
    assert post(client, auth, text=FRIENDLY[5], author_id="leser-2").status_code == 201
    assert post(client, auth, article="artikel-2", text=FRIENDLY[5]).status_code == 201


def test_listing_cache_drops_on_own_changes_and_expires_for_others(app, client, auth):
    import time

    from sqlalchemy import update

    app.config["LISTING_CACHE_SECONDS"] = 0.3
    first = post(client, auth, text=FRIENDLY[1]).json
    assert first["status"] == "approved"
    assert client.get("/v1/articles/artikel-1/comments").json["total"] == 1
    second = post(client, auth, text=FRIENDLY[4], author_id="leser-2").json
    assert second["status"] == "approved"
    assert client.get("/v1/articles/artikel-1/comments").json["total"] == 2  # this process's write: at once
    with app.app_context():  # another process's change, as this process sees it: a plain SQL update
        with db.engine.begin() as conn:
            conn.execute(update(Comment).where(Comment.id == second["id"]).values(status="rejected"))
    assert client.get("/v1/articles/artikel-1/comments").json["total"] == 2  # cached answer
    time.sleep(0.4)
    assert client.get("/v1/articles/artikel-1/comments").json["total"] == 1


def test_idempotency_key_race_answers_with_the_first_comment(app, client, auth, count_rows, monkeypatch):
    """Two workers with the same key at once: the loser's insert hits the unique key and replays the winner."""
    from moderation.services import comments as service

    headers = {**auth["backend"], "Idempotency-Key": "race-1"}
    body = {"author_id": "leser-9", "author_name": "Anna", "text": FRIENDLY[6]}
    first = client.post("/v1/articles/artikel-1/comments", json=body, headers=headers).json
    rows = count_rows()
    real_replay, calls = service._replay, []

    def replay_missing_once(session, idempotency):
        calls.append(1)
        return None if len(calls) == 1 else real_replay(session, idempotency)  # the winner not yet visible

    monkeypatch.setattr(service, "_replay", replay_missing_once)
    app.config["DUPLICATE_WINDOW_SECONDS"] = 1  # the race is about the key, not the duplicate rule
    import time
    time.sleep(1.1)
    again = client.post("/v1/articles/artikel-1/comments", json=body, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json["id"] == first["id"] and len(calls) == 2
    assert count_rows() == rows
