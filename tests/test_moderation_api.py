"""Queue, claims, decisions, audit trail and stats through the API."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from moderation.extensions import db
from moderation.models import ModerationAction
from moderation.services.keys import create_key
from tests.conftest import TOXIC
from tests.moderation_helpers import pending_comments, submit
from tests.test_bad_input import assert_error


def decide(client, headers, comment_id, decision, **extra):
    return client.post(f"/v1/moderation/comments/{comment_id}/decision", headers=headers,
                       json={"decision": decision, **extra})


def second_moderator(app) -> dict[str, str]:
    with app.app_context():
        _, token = create_key(db.session, role="moderator", name="bernd")
        db.session.commit()
    return {"Authorization": f"Bearer {token}"}


def test_queue_lists_pending_riskiest_first_with_context(client, auth):
    comments = pending_comments(client, auth, 3) + [submit(client, auth, text=TOXIC[2], author="leser-x")]
    page = client.get("/v1/moderation/queue", headers=auth["moderator"]).json
    ids = [c["id"] for c in page["comments"]]
    assert page["total"] == len(ids) == 4 - sum(c["status"] != "pending" for c in comments)
    toxicities = [c["toxicity"] for c in page["comments"]]
    assert toxicities == sorted(toxicities, reverse=True)
    item = page["comments"][0]
    assert {"highlights", "reasons", "report_count", "report_reasons", "author_history", "claimed_by"} <= set(item)
    assert "premoderation" in item["reasons"]
    assert item["author_history"]["pending"] >= 1 and item["author_history"]["banned"] is False
    for span in item["highlights"]:
        assert item["text"][span["start"]:span["end"]] == span["text"]


def test_queue_sorts_oldest_filters_article_and_pages(client, auth):
    first = pending_comments(client, auth, 5)
    pending_comments(client, auth, 2, article="anderer")
    seen, cursor = [], None
    while True:
        query = {"sort": "oldest", "limit": 2, "article_id": "artikel-1"} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/moderation/queue", headers=auth["moderator"], query_string=query).json
        assert page["total"] == 5
        seen += [c["id"] for c in page["comments"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [c["id"] for c in first]


def test_queue_pages_by_toxicity_without_gaps(client, auth):
    made = pending_comments(client, auth, 7)
    seen, cursor = [], None
    while True:
        query = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/moderation/queue", headers=auth["moderator"], query_string=query).json
        seen += [c["id"] for c in page["comments"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(c["id"] for c in made) and len(seen) == len(set(seen))


@pytest.mark.parametrize(("query", "field"), [
    ({"queue": "spam"}, "queue"), ({"sort": "random"}, "sort"), ({"limit": 0}, "limit"),
    ({"cursor": "xyz"}, "cursor"), ({"article_id": "a b"}, "article_id"),
])
def test_queue_refuses_bad_queries(client, auth, query, field):
    assert_error(client.get("/v1/moderation/queue", headers=auth["moderator"], query_string=query),
                 422, "validation_failed", {field})


def test_decision_approves_writes_audit_and_publishes(app, client, auth):
    comment = pending_comments(client, auth, 1)[0]
    response = decide(client, auth["moderator"], comment["id"], "approve", reason="harmlos")
    assert response.status_code == 200 and response.json["status"] == "approved"
    listing = client.get("/v1/articles/artikel-1/comments").json
    assert [c["id"] for c in listing["comments"]] == [comment["id"]]
    trail = client.get("/v1/moderation/audit", headers=auth["moderator"],
                       query_string={"comment_id": comment["id"]}).json["actions"]
    assert [(a["moderator"], a["from_status"], a["to_status"], a["note"]) for a in trail] == [
        ("test-moderator", "pending", "approved", "harmlos"), (None, None, "pending", None)]


def test_take_down_and_restore(client, auth):
    comment = pending_comments(client, auth, 1)[0]
    assert decide(client, auth["moderator"], comment["id"], "approve").json["status"] == "approved"
    assert decide(client, auth["moderator"], comment["id"], "reject").json["status"] == "rejected"
    assert client.get("/v1/articles/artikel-1/comments").json["total"] == 0
    assert decide(client, auth["moderator"], comment["id"], "approve").json["status"] == "approved"
    assert client.get("/v1/articles/artikel-1/comments").json["total"] == 1


def test_someone_elses_decision_is_409_unless_forced(app, client, auth, count_rows):
    comment = pending_comments(client, auth, 1)[0]
    decide(client, auth["moderator"], comment["id"], "approve")
    other = second_moderator(app)
    before = count_rows()
    assert_error(decide(client, other, comment["id"], "reject"), 409, "conflict")
    assert count_rows() == before
    assert client.get(f"/v1/comments/{comment['id']}", headers=auth["moderator"]).json["status"] == "approved"
    forced = decide(client, other, comment["id"], "reject", force=True)
    assert forced.status_code == 200 and forced.json["status"] == "rejected"


@pytest.mark.parametrize(("body", "fields"), [
    ({}, {"decision"}), ({"decision": "maybe"}, {"decision"}), ({"decision": "approve", "force": "ja"}, {"force"}),
    ({"decision": "approve", "reason": "x" * 501}, {"reason"}), ({"decision": "approve", "extra": 1}, {"extra"}),
])
def test_decision_refuses_bad_bodies(client, auth, count_rows, body, fields):
    comment = pending_comments(client, auth, 1)[0]
    before = count_rows()
    response = client.post(f"/v1/moderation/comments/{comment['id']}/decision", headers=auth["moderator"], json=body)
    assert_error(response, 422, "validation_failed", fields)
    assert count_rows() == before


def test_decision_on_unknown_comment_is_404(client, auth):
    assert_error(decide(client, auth["moderator"], 99999, "approve"), 404, "not_found")


def test_claims_hand_out_disjoint_comments(app, client, auth):
    pending_comments(client, auth, 6)
    other = second_moderator(app)
    mine = client.post("/v1/moderation/queue/claim", headers=auth["moderator"], json={"limit": 4}).json["comments"]
    theirs = client.post("/v1/moderation/queue/claim", headers=other, json={"limit": 4}).json["comments"]
    assert len(mine) == 4 and len(theirs) == 2
    assert not {c["id"] for c in mine} & {c["id"] for c in theirs}
    assert {c["claimed_by"] for c in mine} == {"test-moderator"} and {c["claimed_by"] for c in theirs} == {"bernd"}
    # A claimed comment cannot be decided by someone else without force.
    assert_error(decide(client, other, mine[0]["id"], "approve"), 409, "conflict")
    assert decide(client, auth["moderator"], mine[0]["id"], "approve").status_code == 200


def test_concurrent_claims_never_overlap(app, client, auth, database_url):
    """Eight moderators claim at once; every comment goes to at most one (PostgreSQL: SKIP LOCKED)."""
    pending_comments(client, auth, 20)
    headers = []
    with app.app_context():
        for i in range(8):
            headers.append({"Authorization": f"Bearer {create_key(db.session, role='moderator', name=f'm{i}')[1]}"})
        db.session.commit()
    barrier = threading.Barrier(8)

    def claim(h):
        with app.test_client() as c:
            barrier.wait()
            response = c.post("/v1/moderation/queue/claim", headers=h, json={"limit": 3})
            assert response.status_code == 200, response.json
            return [item["id"] for item in response.json["comments"]]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(claim, headers))
    claimed = [i for r in results for i in r]
    assert len(claimed) == len(set(claimed)) == 20


def test_audit_filters(client, auth):
    comments = pending_comments(client, auth, 2)
    decide(client, auth["moderator"], comments[0]["id"], "reject", reason="Beleidigung")
    by_moderator = client.get("/v1/moderation/audit", headers=auth["moderator"],
                              query_string={"moderator": "test-moderator"}).json["actions"]
    assert [a["comment_id"] for a in by_moderator] == [comments[0]["id"]]
    future = client.get("/v1/moderation/audit", headers=auth["moderator"],
                        query_string={"since": "2999-01-01T00:00:00+00:00"}).json["actions"]
    assert future == []
    everything = client.get("/v1/moderation/audit", headers=auth["moderator"]).json["actions"]
    assert len(everything) == 3


@pytest.mark.parametrize("query", [{"since": "gestern"}, {"since": "2026-01-01T00:00:00"}, {"comment_id": "x"},
                                   {"limit": 0}])
def test_audit_refuses_bad_queries(client, auth, query):
    assert_error(client.get("/v1/moderation/audit", headers=auth["moderator"], query_string=query),
                 422, "validation_failed")


def test_stats_count_automation_and_overrules(app, client, auth):
    auto = [submit(client, auth, author=f"a{i}") for i in range(2)]
    held = pending_comments(client, auth, 3, article="zwei")
    decide(client, auth["moderator"], held[0]["id"], "approve")
    decide(client, auth["moderator"], held[1]["id"], "reject")
    stats = client.get("/v1/moderation/stats", headers=auth["moderator"]).json
    assert stats["total"] == 5
    assert stats["queues"] == {"pending": 1 + sum(c["status"] == "pending" for c in auto), "reported": 0}
    automatic = sum(c["status"] != "pending" for c in auto)
    assert stats["decided_without_person"] == automatic
    assert stats["automation_rate"] == round(automatic / 5, 4)
    assert stats["human_decisions"] == 2
    threshold = app.extensions["moderation.classifier"].serving.model.decision_threshold
    expected_overruled = sum(
        (held[i]["toxicity"] >= threshold) != (decision == "reject")
        for i, decision in ((0, "approve"), (1, "reject"))
    )
    assert stats["overruled"] == expected_overruled
    assert stats["by_model_version"][0]["human_decisions"] == 2
    assert len(stats["daily"]) == 14
    today = stats["daily"][-1]
    assert today["approved_moderator"] == 1 and today["rejected_moderator"] == 1


@pytest.mark.parametrize(("method", "url"), [
    ("get", "/v1/moderation/queue"), ("post", "/v1/moderation/queue/claim"),
    ("post", "/v1/moderation/comments/1/decision"), ("get", "/v1/moderation/audit"),
    ("get", "/v1/moderation/stats"), ("put", "/v1/moderation/authors/x/ban"),
    ("delete", "/v1/moderation/authors/x/ban"), ("get", "/v1/moderation/wordlists"),
    ("put", "/v1/moderation/wordlists"), ("put", "/v1/articles/a/settings"),
])
def test_moderator_endpoints_refuse_other_roles(client, auth, count_rows, method, url):
    before = count_rows()
    assert_error(getattr(client, method)(url, json={}), 401, "unauthorized")
    assert_error(getattr(client, method)(url, json={}, headers=auth["backend"]), 403, "forbidden")
    assert count_rows() == before


def test_audit_row_moderator_is_null_for_system(app, client, auth):
    comment = submit(client, auth)
    with app.app_context():
        action = db.session.scalar(select(ModerationAction).where(ModerationAction.comment_id == comment["id"]))
        assert action.moderator is None
