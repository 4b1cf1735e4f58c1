"""Export and erasure of an author's data: after erasure nothing of the author remains anywhere.

"Anywhere" is every column of every row, the training labels integrations sent back, and the bytes of
the SQLite files on disk (the database, its write-ahead log and shared memory).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import event, make_url, select

from moderation.db import Base
from moderation.extensions import db
from moderation.services.feedback import feedback_labels
from tests.integrations.test_coral import SECRET, coral_request, send
from tests.moderation_helpers import submit
from tests.test_bad_input import assert_error

SECRET_TEXT = "Mein Nachbar Herbert Zwiebelmann aus der Lindenstraße ist ein Depp."
NAME = "Zora Quittenbaum"
TRACES = ("zora-77", NAME, "Zora", "Zwiebelmann", "Lindenstraße", SECRET_TEXT)
OTHERS_FEEDBACK = "Ein ganz anderer Kommentar über die Radwege in der Altstadt."
SUGGEST = "/v1alpha1/comments:suggestscore"


def _strings(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, dict | list):
        return [json.dumps(value, ensure_ascii=False), json.dumps(value)]
    return [str(value)]


def everything_in_database(app) -> str:
    """Every value of every column of every row of every table, as one text (JSON also ASCII-escaped)."""
    values = []
    with app.app_context():
        for table in Base.metadata.sorted_tables:
            for row in db.session.execute(select(table)):
                for value in row:
                    values += _strings(value)
    return "\n".join(values)


def database_files(app) -> list[Path]:
    """The SQLite database and every file beside it that SQLite keeps for it (-wal, -shm, -journal)."""
    path = Path(make_url(app.config["DATABASE_URL"]).database)
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(path.name))


def encodings(trace: str) -> list[bytes]:
    """The ways a text can sit in a file: UTF-8, UTF-16 either way round, and escaped inside JSON."""
    return [trace.encode("utf-8"), trace.encode("utf-16-le"), trace.encode("utf-16-be"),
            json.dumps(trace)[1:-1].encode("ascii")]


def traces_on_disk(app, traces=TRACES) -> set[str]:
    """Which traces appear, in any encoding, in the raw bytes of the database files."""
    found = set()
    for path in database_files(app):
        raw = path.read_bytes()
        found |= {trace for trace in traces if any(form in raw for form in encodings(trace))}
    return found


def feedback(client, auth, text: str, comment_id: str | None = None, *, html: bool = False, value: float = 1.0):
    """Send a moderator's decision back as Coral does (Perspective's SuggestCommentScore)."""
    body = {"comment": {"text": text, "type": "HTML" if html else "PLAIN_TEXT"},
            "attributeScores": {"TOXICITY": {"summaryScore": {"value": value}}}, "languages": ["de"]}
    if comment_id is not None:
        body["context"] = {"entries": [{"text": json.dumps({"commentID": comment_id, "commentStatus": "REJECTED"})}]}
        body["clientToken"] = f"comment:{comment_id}"
    response = client.post(SUGGEST, headers=auth["backend"], json=body)
    assert response.status_code == 200, response.json


def training_texts(app) -> list[str]:
    """The texts retraining would read from the integrations' labels."""
    with app.app_context():
        return [text for text, _ in feedback_labels(db.session)]


def make_history(client, auth):
    client.put("/v1/articles/artikel-1/settings", headers=auth["moderator"],
               json={"comments_open": True, "premoderation": False})
    mine = submit(client, auth, author="zora-77", text=SECRET_TEXT, author_name=NAME)
    other = submit(client, auth, author="leser-2", text="Ich antworte dir gern.", parent_id=mine["id"])
    client.post(f"/v1/moderation/comments/{mine['id']}/decision", headers=auth["moderator"],
                json={"decision": "approve", "reason": f"{NAME} meint es nicht so"})
    client.post(f"/v1/comments/{other['id']}/reports", headers=auth["backend"],
                json={"reporter_id": "zora-77", "reason": "spam", "note": "Zora findet das Spam"})
    client.post(f"/v1/comments/{mine['id']}/reports", headers=auth["backend"],
                json={"reporter_id": "leser-3", "reason": "insult", "note": f"{NAME} beleidigt Herbert"})
    client.put("/v1/moderation/authors/zora-77/ban", headers=auth["moderator"], json={"reason": "Beleidigung"})
    # The site's comment platform sends the decision back with the text as it shows it: HTML, other breaks.
    feedback(client, auth, "<p>Mein Nachbar Herbert Zwiebelmann</p><p>aus der Lindenstraße ist ein Depp.</p>",
             "coral-4f1e", html=True)
    feedback(client, auth, OTHERS_FEEDBACK, "coral-9a2b", value=0.0)
    return mine, other


def test_export_contains_everything_about_the_author(client, auth):
    mine, _ = make_history(client, auth)
    export = client.get("/v1/authors/zora-77/export", headers=auth["admin"])
    assert export.status_code == 200
    body = export.json
    assert [c["id"] for c in body["comments"]] == [mine["id"]]
    assert body["comments"][0]["text"] == SECRET_TEXT and body["comments"][0]["author_name"] == NAME
    assert [r["reason"] for r in body["reports"]] == ["spam"]
    assert body["ban"]["reason"] == "Beleidigung"


@pytest.mark.parametrize("checkpointed", [False, True], ids=["in_wal", "in_database_file"])
def test_erasure_leaves_nothing_of_the_author(app, client, auth, checkpointed):
    on_sqlite = app.config["DATABASE_URL"].startswith("sqlite")
    if on_sqlite:
        # Debian builds SQLite to zero deleted content by default; most other builds do not: start from theirs.
        engine = app.extensions["moderation.db"][0]
        event.listen(engine, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA secure_delete=OFF"), insert=True)
        engine.dispose()
    mine, other = make_history(client, auth)
    before = everything_in_database(app)
    assert all(trace in before for trace in TRACES)
    if on_sqlite:
        if checkpointed:  # as SQLite's automatic checkpoint does once the log is long enough
            with app.app_context():
                connection = db.engine.raw_connection()
                connection.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
                connection.close()
        # the scan finds them where they are before the erasure
        assert traces_on_disk(app) == set(TRACES)
    response = client.delete("/v1/authors/zora-77", headers=auth["admin"])
    assert response.status_code == 200
    assert response.json == {"comments_erased": 1, "reports_deleted": 1, "feedback_deleted": 1,
                             "ban_anonymised": True}
    after = everything_in_database(app)
    for trace in TRACES:
        assert trace not in after, trace
    if on_sqlite:
        assert traces_on_disk(app) == set()
    assert training_texts(app) == [OTHERS_FEEDBACK]
    # The structure stays: the reply keeps its parent, the audit rows remain, anonymised.
    assert client.get(f"/v1/comments/{other['id']}", headers=auth["backend"]).json["parent_id"] == mine["id"]
    trail = client.get("/v1/moderation/audit", headers=auth["moderator"],
                       query_string={"comment_id": mine["id"]}).json["actions"]
    assert [a["to_status"] for a in trail] == ["rejected", "approved", mine["status"]]
    assert trail[0]["reasons"] == ["author_erased"] and trail[-1]["moderator"] is None
    assert all(a["note"] is None for a in trail)
    # What remains about the id is the anonymised ban, and the export says so.
    export = client.get("/v1/authors/zora-77/export", headers=auth["admin"])
    assert export.status_code == 200
    assert export.json["comments"] == [] and export.json["reports"] == []
    assert export.json["ban"]["reason"] == "[erased]" and export.json["ban"]["until"] is None


@pytest.mark.parametrize(("sent", "html"), [
    (SECRET_TEXT, False),
    ("  Mein Nachbar Herbert\nZwiebelmann aus der Lindenstraße ist ein Depp.  ", False),
    ("Mein Nachbar Herbert Zwiebelmann aus der Lindenstra\u00dfe ist ein Depp.".replace("ß", "ss").upper(), False),
    ("<div>Mein Nachbar <b>Herbert</b> Zwiebelmann<br>aus der Lindenstra&szlig;e ist ein Depp.</div>", True),
])
@pytest.mark.parametrize("comment_id", ["coral-4f1e", None])
def test_erasure_removes_the_authors_texts_from_training_feedback(app, client, auth, sent, html, comment_id):
    submit(client, auth, author="zora-77", text=SECRET_TEXT, author_name=NAME)
    feedback(client, auth, sent, comment_id, html=html)
    feedback(client, auth, OTHERS_FEEDBACK, "coral-9a2b", value=0.0)
    assert len(training_texts(app)) == 2
    response = client.delete("/v1/authors/zora-77", headers=auth["admin"])
    assert response.status_code == 200 and response.json["feedback_deleted"] == 1
    assert training_texts(app) == [OTHERS_FEEDBACK]
    assert "Zwiebelmann" not in everything_in_database(app).replace(OTHERS_FEEDBACK, "")


def test_erasure_removes_feedback_on_comments_that_came_through_coral(app, client, auth):
    app.config["CORAL_SIGNING_SECRETS"] = SECRET
    payload = coral_request(f"<p>{SECRET_TEXT}</p>")
    payload["author"]["id"] = "coral-user-5"
    assert send(client, payload, SECRET).status_code in (200, 204)
    feedback(client, auth, SECRET_TEXT, "coral-comment-1")
    response = client.delete("/v1/authors/coral-user-5", headers=auth["admin"])
    assert response.status_code == 200 and response.json == {
        "comments_erased": 1, "reports_deleted": 0, "feedback_deleted": 1, "ban_anonymised": False}
    assert training_texts(app) == []


def test_an_erased_author_stays_banned_also_after_the_secret_key_rotates(app_config, make_app, app, client, auth):
    make_history(client, auth)
    assert client.delete("/v1/authors/zora-77", headers=auth["admin"]).status_code == 200
    again = submit(client, auth, author="zora-77", text="Ich bin wieder da.", author_name=NAME)
    assert again["status"] == "rejected" and again["reasons"][0] == "author_banned"
    rotated = make_app({**app_config, "SECRET_KEY": "a-new-secret-key-after-rotation-0123456789"}).test_client()
    later = submit(rotated, auth, author="zora-77", text="Und noch einmal.", author_name=NAME)
    assert later["status"] == "rejected" and later["reasons"][0] == "author_banned"
    assert "author_banned" not in submit(client, auth, author="leser-9", text="Guter Punkt.")["reasons"]
    # Lifting the ban reaches the anonymised one too.
    assert client.delete("/v1/moderation/authors/zora-77/ban", headers=auth["moderator"]).status_code == 204
    assert "author_banned" not in submit(client, auth, author="zora-77", text="Frieden?")["reasons"]
    assert_error(client.delete("/v1/moderation/authors/zora-77/ban", headers=auth["moderator"]), 404, "not_found")


def test_an_erased_temporary_ban_keeps_its_end(client, auth):
    submit(client, auth, author="zora-77", text=SECRET_TEXT)
    client.put("/v1/moderation/authors/zora-77/ban", headers=auth["moderator"],
               json={"reason": "Pause", "until": "2999-01-01T00:00:00+00:00"})
    assert client.delete("/v1/authors/zora-77", headers=auth["admin"]).json["ban_anonymised"] is True
    assert client.get("/v1/authors/zora-77/export", headers=auth["admin"]).json["ban"]["until"] == (
        "2999-01-01T00:00:00+00:00")
    assert submit(client, auth, author="zora-77", text="Neu hier.")["reasons"][0] == "author_banned"


@pytest.mark.parametrize(("decision", "force"), [("approve", False), ("approve", True), ("reject", True)])
def test_an_erased_comment_cannot_be_decided_again(app, client, auth, count_rows, decision, force):
    mine, _ = make_history(client, auth)
    client.delete("/v1/authors/zora-77", headers=auth["admin"])
    before, listing = count_rows(), client.get("/v1/articles/artikel-1/comments").json
    response = client.post(f"/v1/moderation/comments/{mine['id']}/decision", headers=auth["moderator"],
                           json={"decision": decision, "force": force})
    assert_error(response, 409, "comment_erased")
    assert count_rows() == before and client.get("/v1/articles/artikel-1/comments").json == listing
    assert client.get(f"/v1/comments/{mine['id']}", headers=auth["backend"]).json["status"] == "rejected"


def test_privacy_endpoints_are_admin_only(client, auth, count_rows):
    submit(client, auth, author="zora-77")
    before = count_rows()
    for role in ("backend", "moderator"):
        assert_error(client.get("/v1/authors/zora-77/export", headers=auth[role]), 403, "forbidden")
        assert_error(client.delete("/v1/authors/zora-77", headers=auth[role]), 403, "forbidden")
        query = {"author_id": "zora-77"}
        assert_error(client.get("/v1/authors/export", query_string=query, headers=auth[role]), 403, "forbidden")
        assert_error(client.delete("/v1/authors", query_string=query, headers=auth[role]), 403, "forbidden")
    assert_error(client.delete("/v1/authors/zora-77"), 401, "unauthorized")
    assert_error(client.delete("/v1/authors", query_string={"author_id": "zora-77"}), 401, "unauthorized")
    assert count_rows() == before
