"""Bans, word lists, article settings and reader reports through the API."""

from __future__ import annotations

import pytest

from tests.conftest import FRIENDLY
from tests.moderation_helpers import submit
from tests.test_bad_input import assert_error

WORDS = "/v1/moderation/wordlists"


def ban(client, auth, author, **body):
    return client.put(f"/v1/moderation/authors/{author}/ban", headers=auth["moderator"],
                      json={"reason": "Beleidigungen", **body})


def test_banned_author_is_rejected_until_ban_is_lifted(client, auth):
    response = ban(client, auth, "troll-1")
    assert response.status_code == 200
    assert response.json["banned_by"] == "test-moderator" and response.json["until"] is None
    rejected = submit(client, auth, author="troll-1")
    assert rejected["status"] == "rejected" and "author_banned" in rejected["reasons"]
    assert submit(client, auth, author="leser-ok")["reasons"] != ["author_banned"]
    assert client.delete("/v1/moderation/authors/troll-1/ban", headers=auth["moderator"]).status_code == 204
    assert "author_banned" not in submit(client, auth, author="troll-1", text=FRIENDLY[1])["reasons"]


def test_temporary_ban_shows_in_queue_history(client, auth):
    client.put("/v1/articles/artikel-1/settings", headers=auth["moderator"],
               json={"comments_open": True, "premoderation": True})
    held = submit(client, auth, author="troll-2")
    assert ban(client, auth, "troll-2", until="2999-01-01T00:00:00+00:00").status_code == 200
    later = submit(client, auth, author="troll-2", text=FRIENDLY[2])
    assert later["status"] == "rejected" and later["reasons"][0] == "author_banned"
    queue = client.get("/v1/moderation/queue", headers=auth["moderator"]).json["comments"]
    assert [c["id"] for c in queue] == [held["id"]]
    assert queue[0]["author_history"] == {"approved": 0, "pending": 1, "rejected": 1, "banned": True,
                                          "ban_until": "2999-01-01T00:00:00+00:00"}


@pytest.mark.parametrize(("body", "fields"), [
    ({}, {"reason"}), ({"reason": ""}, {"reason"}), ({"reason": "x", "until": "morgen"}, {"until"}),
    ({"reason": "x", "until": "2999-01-01T00:00:00"}, {"until"}),
    ({"reason": "x", "until": "2001-01-01T00:00:00+00:00"}, {"until"}), ({"reason": "x", "dauer": 3}, {"dauer"}),
])
def test_ban_refuses_bad_bodies(client, auth, count_rows, body, fields):
    before = count_rows()
    response = client.put("/v1/moderation/authors/troll/ban", headers=auth["moderator"], json=body)
    assert_error(response, 422, "validation_failed", fields)
    assert count_rows() == before


def test_lifting_a_ban_that_does_not_exist_is_404(client, auth):
    assert_error(client.delete("/v1/moderation/authors/niemand/ban", headers=auth["moderator"]), 404, "not_found")


def test_wordlists_round_trip_and_route(client, auth):
    put = client.put(WORDS, headers=auth["moderator"], json={"banned": ["Arschloch", "Drecks*"],
                                                            "suspect": ["Lügenpresse"]})
    assert put.status_code == 200
    assert client.get(WORDS, headers=auth["moderator"]).json == {"banned": ["Arschloch", "Drecks*"],
                                                                 "suspect": ["Lügenpresse"]}
    banned = submit(client, auth, text=f"{FRIENDLY[0]} Du A r s c h l 0 c h.")
    assert banned["status"] == "rejected" and "banned_term" in banned["reasons"]
    suspect = submit(client, auth, text=f"{FRIENDLY[2]} Typisch Luegenpresse.", author="l2")
    assert suspect["status"] in {"pending", "rejected"} and "suspect_term" in suspect["reasons"]
    client.put(WORDS, headers=auth["moderator"], json={"banned": [], "suspect": []})
    assert "banned_term" not in submit(client, auth, text=f"{FRIENDLY[0]} Arschloch.", author="l3")["reasons"]


@pytest.mark.parametrize(("body", "fields"), [
    ({"banned": ["ok"]}, {"suspect"}), ({"banned": [""], "suspect": []}, {"banned"}),
    ({"banned": "Idiot", "suspect": []}, {"banned"}), ({"banned": [1], "suspect": []}, {"banned"}),
    ({"banned": [], "suspect": ["x" * 201]}, {"suspect"}),
])
def test_wordlists_refuse_bad_bodies(client, auth, count_rows, body, fields):
    client.put(WORDS, headers=auth["moderator"], json={"banned": ["Idiot"], "suspect": []})
    before = count_rows()
    assert_error(client.put(WORDS, headers=auth["moderator"], json=body), 422, "validation_failed", fields)
    assert count_rows() == before
    assert client.get(WORDS, headers=auth["moderator"]).json == {"banned": ["Idiot"], "suspect": []}


def test_closed_article_refuses_comments_with_409(client, auth, count_rows):
    submit(client, auth)
    response = client.put("/v1/articles/artikel-1/settings", headers=auth["moderator"],
                          json={"comments_open": False, "premoderation": False})
    assert response.json == {"article_id": "artikel-1", "comments_open": False, "premoderation": False,
                             "article_title": None, "article_url": None}
    before = count_rows()
    refused = client.post("/v1/articles/artikel-1/comments", headers=auth["backend"],
                          json={"author_id": "l", "author_name": "L", "text": FRIENDLY[1]})
    assert_error(refused, 409, "article_closed")
    assert "closed" in refused.json["error"]["message"]
    assert count_rows() == before
    assert client.get("/v1/articles/artikel-1/comments").status_code == 200


def test_premoderation_holds_everything(client, auth):
    client.put("/v1/articles/sensibel/settings", headers=auth["moderator"],
               json={"comments_open": True, "premoderation": True})
    held = submit(client, auth, article="sensibel", text=FRIENDLY[3])
    assert held["status"] == "pending" and "premoderation" in held["reasons"]
    assert client.get("/v1/articles/sensibel/settings", headers=auth["moderator"]).json["premoderation"] is True


@pytest.mark.parametrize("body", [{}, {"comments_open": "ja", "premoderation": False},
                                  {"comments_open": True}, {"comments_open": True, "premoderation": False, "x": 1}])
def test_settings_refuse_bad_bodies(client, auth, count_rows, body):
    before = count_rows()
    assert_error(client.put("/v1/articles/a/settings", headers=auth["moderator"], json=body), 422,
                 "validation_failed")
    assert count_rows() == before


def report(client, auth, comment_id, reporter, reason="insult", **extra):
    return client.post(f"/v1/comments/{comment_id}/reports", headers=auth["backend"],
                       json={"reporter_id": reporter, "reason": reason, **extra})


def published(client, auth):
    comment = submit(client, auth, text=FRIENDLY[1])
    assert comment["status"] == "approved"
    return comment


def test_three_distinct_reports_pull_a_comment_into_reported_queue(client, auth):
    comment = published(client, auth)
    first = report(client, auth, comment["id"], "r1")
    assert first.status_code == 201 and first.json["duplicate"] is False and first.json["report_count"] == 1
    again = report(client, auth, comment["id"], "r1", reason="spam")
    assert again.json["duplicate"] is True and again.json["report_count"] == 1
    report(client, auth, comment["id"], "r2", reason="spam")
    assert client.get("/v1/articles/artikel-1/comments").json["total"] == 1
    third = report(client, auth, comment["id"], "r3", note="Das ist Hetze")
    assert third.json["comment_status"] == "pending" and third.json["report_count"] == 3
    assert client.get("/v1/articles/artikel-1/comments").json["total"] == 0
    queue = client.get("/v1/moderation/queue", headers=auth["moderator"], query_string={"queue": "reported"}).json
    assert [c["id"] for c in queue["comments"]] == [comment["id"]]
    assert queue["comments"][0]["report_reasons"] == {"insult": 2, "spam": 1}
    pending_queue = client.get("/v1/moderation/queue", headers=auth["moderator"]).json["comments"]
    assert comment["id"] not in [c["id"] for c in pending_queue]
    # A moderator keeps it: it is published again and leaves the reported queue.
    client.post(f"/v1/moderation/comments/{comment['id']}/decision", headers=auth["moderator"],
                json={"decision": "approve"})
    assert client.get("/v1/articles/artikel-1/comments").json["total"] == 1
    assert client.get("/v1/moderation/queue", headers=auth["moderator"],
                      query_string={"queue": "reported"}).json["total"] == 0


@pytest.mark.parametrize(("body", "fields"), [
    ({}, {"reporter_id", "reason"}), ({"reporter_id": "r", "reason": "langweilig"}, {"reason"}),
    ({"reporter_id": "", "reason": "spam"}, {"reporter_id"}),
    ({"reporter_id": "r", "reason": "spam", "note": "x" * 1001}, {"note"}),
])
def test_reports_refuse_bad_bodies(client, auth, count_rows, body, fields):
    comment = published(client, auth)
    before = count_rows()
    response = client.post(f"/v1/comments/{comment['id']}/reports", headers=auth["backend"], json=body)
    assert_error(response, 422, "validation_failed", fields)
    assert count_rows() == before


def test_reports_on_unknown_or_unpublished_comments(client, auth, count_rows):
    assert_error(report(client, auth, 99999, "r1"), 404, "not_found")
    client.put("/v1/articles/p/settings", headers=auth["moderator"],
               json={"comments_open": True, "premoderation": True})
    held = submit(client, auth, article="p")
    before = count_rows()
    assert_error(report(client, auth, held["id"], "r1"), 409, "conflict")
    assert count_rows() == before


def test_reports_need_backend_role(client, auth):
    comment = published(client, auth)
    assert_error(report(client, {"backend": auth["moderator"]}, comment["id"], "r1"), 403, "forbidden")


def reported_queue(client, auth):
    return client.get("/v1/moderation/queue", headers=auth["moderator"], query_string={"queue": "reported"}).json


def decide(client, headers, comment_id, decision="approve"):
    response = client.post(f"/v1/moderation/comments/{comment_id}/decision", headers=headers,
                           json={"decision": decision})
    assert response.status_code == 200, response.json
    return response.json


@pytest.mark.parametrize("first_approval", ["after_reports", "from_premoderation"])
def test_reports_after_a_moderators_approval_reach_the_reported_queue(client, auth, first_approval):
    # Threshold 3: a moderator's approval resets the count; the comment stays published throughout.
    if first_approval == "after_reports":
        comment = published(client, auth)
        for reader in ("r1", "r2", "r3"):
            report(client, auth, comment["id"], reader)
        assert [c["id"] for c in reported_queue(client, auth)["comments"]] == [comment["id"]]
    else:
        client.put("/v1/articles/artikel-1/settings", headers=auth["moderator"],
                   json={"comments_open": True, "premoderation": True})
        comment = submit(client, auth, text=FRIENDLY[1])
        assert comment["status"] == "pending"
    decide(client, auth["moderator"], comment["id"])
    assert reported_queue(client, auth)["total"] == 0
    below = [report(client, auth, comment["id"], reader) for reader in ("r4", "r5")]
    assert [r.json["comment_status"] for r in below] == ["approved", "approved"]
    assert reported_queue(client, auth)["total"] == 0
    at = report(client, auth, comment["id"], "r6", reason="spam")
    assert at.status_code == 201 and at.json["comment_status"] == "approved"
    queue = reported_queue(client, auth)
    assert [c["id"] for c in queue["comments"]] == [comment["id"]] and queue["total"] == 1
    assert queue["comments"][0]["status"] == "approved"
    # It stays published while it waits, and counts in the figures as a reported comment.
    assert [c["id"] for c in client.get("/v1/articles/artikel-1/comments").json["comments"]] == [comment["id"]]
    assert client.get("/v1/moderation/stats", headers=auth["moderator"]).json["queues"]["reported"] == 1
    # Any moderator may review it again (the earlier approval is not someone else's claim on it).
    taken_down = decide(client, auth["admin"], comment["id"], "reject")
    assert taken_down["status"] == "rejected"
    assert reported_queue(client, auth)["total"] == 0
    assert client.get("/v1/articles/artikel-1/comments").json["total"] == 0


def test_reports_after_approval_below_threshold_leave_it_alone_and_approval_resets_again(client, auth):
    comment = published(client, auth)
    for reader in ("r1", "r2", "r3"):
        report(client, auth, comment["id"], reader)
    decide(client, auth["moderator"], comment["id"])
    for reader in ("r4", "r5", "r6"):
        report(client, auth, comment["id"], reader)
    assert reported_queue(client, auth)["total"] == 1
    decide(client, auth["moderator"], comment["id"])  # kept a second time
    assert reported_queue(client, auth)["total"] == 0
    report(client, auth, comment["id"], "r7")
    report(client, auth, comment["id"], "r8")
    assert reported_queue(client, auth)["total"] == 0
    assert client.get(f"/v1/comments/{comment['id']}", headers=auth["backend"]).json["status"] == "approved"
