"""Export and erasure of an author's data: after erasure nothing of the author remains anywhere."""

from __future__ import annotations

from sqlalchemy import String, Text, select

from moderation.db import Base
from moderation.extensions import db
from tests.moderation_helpers import submit
from tests.test_bad_input import assert_error

SECRET_TEXT = "Mein Nachbar Herbert Zwiebelmann aus der Lindenstraße ist ein Depp."
NAME = "Zora Quittenbaum"


def everything_in_database(app) -> str:
    """Every string value of every row of every table, as one text."""
    values = []
    with app.app_context():
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, String | Text) or c.name == "reasons"]
            for row in db.session.execute(select(*columns)):
                values += [str(v) for v in row if v is not None]
    return "\n".join(values)


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


def test_erasure_leaves_nothing_of_the_author(app, client, auth):
    mine, other = make_history(client, auth)
    before = everything_in_database(app)
    assert "zora-77" in before and NAME in before and "Zwiebelmann" in before
    response = client.delete("/v1/authors/zora-77", headers=auth["admin"])
    assert response.status_code == 200
    assert response.json == {"comments_erased": 1, "reports_deleted": 1, "ban_lifted": True}
    after = everything_in_database(app)
    for trace in ("zora-77", NAME, "Zora", "Zwiebelmann", "Lindenstraße", SECRET_TEXT):
        assert trace not in after, trace
    # The structure stays: the reply keeps its parent, the audit rows remain, anonymised.
    assert client.get(f"/v1/comments/{other['id']}", headers=auth["backend"]).json["parent_id"] == mine["id"]
    trail = client.get("/v1/moderation/audit", headers=auth["moderator"],
                       query_string={"comment_id": mine["id"]}).json["actions"]
    assert [a["to_status"] for a in trail] == ["rejected", "approved", mine["status"]]
    assert trail[0]["reasons"] == ["author_erased"] and trail[-1]["moderator"] is None
    assert all(a["note"] is None for a in trail)
    assert client.get("/v1/authors/zora-77/export", headers=auth["admin"]).json == {
        "author_id": "zora-77", "comments": [], "reports": [], "ban": None}


def test_privacy_endpoints_are_admin_only(client, auth, count_rows):
    submit(client, auth, author="zora-77")
    before = count_rows()
    for role in ("backend", "moderator"):
        assert_error(client.get("/v1/authors/zora-77/export", headers=auth[role]), 403, "forbidden")
        assert_error(client.delete("/v1/authors/zora-77", headers=auth[role]), 403, "forbidden")
    assert_error(client.delete("/v1/authors/zora-77"), 401, "unauthorized")
    assert count_rows() == before
