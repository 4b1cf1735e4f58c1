"""Recent decisions and their reversal (undo) through the API: audit rows, queues, listing, webhook events."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from moderation.extensions import db
from moderation.models import Comment, ModerationAction, WebhookEvent
from moderation.services import privacy, reports
from moderation.services.keys import create_key
from tests.moderation_helpers import pending_comments, submit


def decide(client, headers, comment_id, decision, **extra):
    return client.post(f"/v1/moderation/comments/{comment_id}/decision", headers=headers,
                       json={"decision": decision, **extra})


def reverse(client, headers, action_id, **body):
    return client.post(f"/v1/moderation/actions/{action_id}/reversal", headers=headers, json=body)


def key(app, role: str, name: str) -> dict[str, str]:
    with app.app_context():
        token = create_key(db.session, role=role, name=name)[1]
        db.session.commit()
    return {"Authorization": f"Bearer {token}"}


def state(app, comment_id: int) -> tuple[tuple, list[tuple]]:
    """The comment's moderation state and its audit rows, straight from the database."""
    with app.app_context():
        c = db.session.get(Comment, comment_id)
        rows = db.session.scalars(select(ModerationAction).where(ModerationAction.comment_id == comment_id)
                                  .order_by(ModerationAction.id))
        return ((c.status, c.reported, c.decided_by),
                [(a.moderator, a.from_status, a.to_status, a.reasons, a.reverses_action_id) for a in rows])


def events(app) -> list[tuple[str, dict]]:
    with app.app_context():
        return [(e.type, e.payload) for e in db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id))]


def test_decision_answer_names_its_audit_row_and_the_queue_sizes(client, auth):
    first, second = pending_comments(client, auth, 2)
    response = decide(client, auth["moderator"], first["id"], "approve")
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "approved" and body["queues"] == {"pending": 1, "reported": 0}
    trail = client.get(f"/v1/moderation/audit?comment_id={first['id']}", headers=auth["moderator"]).json
    assert body["action_id"] == trail["actions"][0]["id"]


def test_undo_an_approval_withdraws_the_comment_from_the_listing(app, client, auth):
    comment = pending_comments(client, auth, 1)[0]
    action_id = decide(client, auth["moderator"], comment["id"], "approve").json["action_id"]
    assert [c["id"] for c in client.get("/v1/articles/artikel-1/comments").json["comments"]] == [comment["id"]]
    before_events = len(events(app))

    response = reverse(client, auth["moderator"], action_id, reason="zu schnell entschieden")
    assert response.status_code == 201, response.json
    body = response.json
    assert body["comment"]["status"] == "pending" and body["queues"] == {"pending": 1, "reported": 0}
    assert body["action"]["reverses_action_id"] == action_id
    assert body["action"]["reasons"] == ["moderator_reversal"]
    assert body["action"]["note"] == f"reversal of action {action_id}: zu schnell entschieden"
    assert client.get("/v1/articles/artikel-1/comments").json["comments"] == []
    assert state(app, comment["id"]) == (
        ("pending", False, None),
        [(None, None, "pending", ["premoderation"], None),
         ("test-moderator", "pending", "approved", ["moderator_approve"], None),
         ("test-moderator", "approved", "pending", ["moderator_reversal"], action_id)])
    new = events(app)[before_events:]
    assert [(t, p["old_status"], p["new_status"], p["reasons"]) for t, p in new] == [
        ("comment.withheld", "approved", "pending", ["moderator_reversal"])]
    # Back in the queue, and anyone may decide it again.
    queue = client.get("/v1/moderation/queue", headers=auth["moderator"]).json
    assert [c["id"] for c in queue["comments"]] == [comment["id"]]
    assert decide(client, auth["admin"], comment["id"], "reject").status_code == 200


def test_undo_a_rejection_from_the_reported_queue_returns_it_there(app, client, auth):
    comment = submit(client, auth, text="Schöner Bericht über das Stadtfest.")
    assert comment["status"] == "approved"
    with app.app_context():
        for i in range(3):
            reports.report_comment(db.session, comment["id"], reporter_id=f"r{i}", reason="spam", note=None,
                                   threshold=3)
    action_id = decide(client, auth["moderator"], comment["id"], "reject").json["action_id"]
    response = reverse(client, auth["moderator"], action_id)
    assert response.status_code == 201
    assert response.json["queues"] == {"pending": 0, "reported": 1}
    assert response.json["action"]["note"] == f"reversal of action {action_id}"
    assert state(app, comment["id"])[0] == ("pending", True, None)
    reported = client.get("/v1/moderation/queue?queue=reported", headers=auth["moderator"]).json
    assert [c["id"] for c in reported["comments"]] == [comment["id"]]


def test_undo_a_take_down_restores_the_earlier_moderators_decision(app, client, auth):
    comment = pending_comments(client, auth, 1)[0]
    decide(client, auth["moderator"], comment["id"], "approve")
    anna = key(app, "moderator", "anna")
    take_down = decide(client, anna, comment["id"], "reject", force=True).json["action_id"]
    assert reverse(client, anna, take_down).status_code == 201
    assert state(app, comment["id"])[0] == ("approved", False, "test-moderator")
    assert [c["id"] for c in client.get("/v1/articles/artikel-1/comments").json["comments"]] == [comment["id"]]


@pytest.mark.parametrize("case, status, code", [
    ("someone_else", 403, "forbidden"),
    ("decided_since", 409, "conflict"),
    ("already_reversed", 409, "conflict"),
    ("system_routing", 422, "validation_failed"),
    ("a_reversal", 422, "validation_failed"),
    ("unknown", 404, "not_found"),
    ("erased", 409, "conflict"),
    ("backend_key", 403, "forbidden"),
])
def test_refused_reversals_change_nothing(app, client, auth, count_rows, case, status, code):
    comment = pending_comments(client, auth, 1)[0]
    action_id = decide(client, auth["moderator"], comment["id"], "reject").json["action_id"]
    headers = auth["moderator"]
    if case == "someone_else":
        headers = key(app, "moderator", "bernd")
    elif case == "decided_since":
        decide(client, key(app, "moderator", "bernd"), comment["id"], "approve", force=True)
    elif case == "already_reversed":
        assert reverse(client, headers, action_id).status_code == 201
    elif case == "system_routing":
        action_id -= 1  # the routing row written at intake
    elif case == "a_reversal":
        action_id = reverse(client, headers, action_id).json["action"]["id"]
    elif case == "unknown":
        action_id = 999_999
    elif case == "erased":
        with app.app_context():
            privacy.erase_author(db.session, "leser-0", admin="test-admin")
    elif case == "backend_key":
        headers = auth["backend"]
    before, comment_before = count_rows(), state(app, comment["id"])
    before_events = events(app)
    response = reverse(client, headers, action_id)
    assert response.status_code == status, response.json
    assert response.json["error"]["code"] == code
    assert count_rows() == before and state(app, comment["id"]) == comment_before and events(app) == before_events


def test_an_admin_may_reverse_anyones_decision(app, client, auth):
    comment = pending_comments(client, auth, 1)[0]
    action_id = decide(client, auth["moderator"], comment["id"], "reject").json["action_id"]
    response = reverse(client, auth["admin"], action_id)
    assert response.status_code == 201 and response.json["action"]["moderator"] == "test-admin"


@pytest.mark.parametrize("body, field", [
    ({"reason": "x" * 501}, "reason"),
    ({"reason": 5}, "reason"),
    ({"extra": 1}, "extra"),
])
def test_reversal_refuses_bad_bodies(client, auth, count_rows, body, field):
    comment = pending_comments(client, auth, 1)[0]
    action_id = decide(client, auth["moderator"], comment["id"], "reject").json["action_id"]
    before = count_rows()
    response = reverse(client, auth["moderator"], action_id, **body)
    assert response.status_code == 422 and field in response.json["error"]["fields"]
    assert count_rows() == before


def test_decisions_list_newest_first_with_who_why_and_paging(app, client, auth):
    comments = pending_comments(client, auth, 5)
    anna = key(app, "moderator", "anna")
    ids = []
    for i, c in enumerate(comments):
        ids.append(decide(client, anna if i % 2 else auth["moderator"], c["id"], "reject" if i % 2 else "approve",
                          reason=f"Grund {i}").json["action_id"])
    undo = reverse(client, anna, ids[3]).json["action"]["id"]
    first = client.get("/v1/moderation/decisions?limit=3", headers=auth["moderator"])
    assert first.status_code == 200
    page = first.json
    assert [d["id"] for d in page["decisions"]] == [undo, ids[4], ids[3]]
    newest = page["decisions"][1]
    assert newest["moderator"] == "test-moderator" and newest["note"] == "Grund 4"
    assert newest["created_at"].endswith("+00:00")  # the API keeps ISO 8601 UTC
    assert newest["comment"]["id"] == comments[4]["id"] and newest["comment"]["status"] == "approved"
    assert newest["reversible"] is True and newest["reversed_by"] is None
    reversed_one = page["decisions"][2]
    assert reversed_one["reversed_by"] == undo and reversed_one["reversible"] is False
    assert page["decisions"][0]["reverses_action_id"] == ids[3] and page["decisions"][0]["reversible"] is False
    rest = client.get(f"/v1/moderation/decisions?limit=3&before_id={page['next_before_id']}",
                      headers=auth["moderator"]).json
    assert [d["id"] for d in rest["decisions"]] == [ids[2], ids[1], ids[0]]
    assert rest["next_before_id"] is None
    only_anna = client.get("/v1/moderation/decisions?moderator=anna", headers=auth["moderator"]).json
    assert [d["id"] for d in only_anna["decisions"]] == [undo, ids[3], ids[1]]


@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=101", "limit"), ("before_id=abc", "before_id"), ("before_id=0", "before_id"),
    ("moderator=", "moderator"),
])
def test_decisions_refuse_bad_queries(client, auth, query, field):
    response = client.get(f"/v1/moderation/decisions?{query}", headers=auth["moderator"])
    assert response.status_code == 422 and field in response.json["error"]["fields"]


@pytest.mark.parametrize("method, url", [("get", "/v1/moderation/decisions"),
                                         ("post", "/v1/moderation/actions/1/reversal")])
def test_decision_endpoints_need_a_moderator_key(client, auth, method, url):
    for headers in ({}, auth["backend"]):
        response = getattr(client, method)(url, headers=headers, json={} if method == "post" else None)
        assert response.status_code in (401, 403)


def test_openapi_documents_decisions_reversal_and_article_fields(client):
    spec = client.get("/openapi.json").json
    assert "/v1/moderation/decisions" in spec["paths"]
    assert "/v1/moderation/actions/{action_id}/reversal" in spec["paths"]
    schemas = spec["components"]["schemas"]
    assert {"article_title", "article_url"} <= set(schemas["CommentIn"]["properties"])
    assert {"article_title", "article_url"} <= set(schemas["ArticleSettings"]["properties"])
