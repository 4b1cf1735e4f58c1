"""Every stored author id can be exported, erased and banned; ids are cleaned as intake cleans them."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from alembic import command
from sqlalchemy import text

from moderation.db import make_engine, utcnow
from moderation.migrations import alembic_config
from moderation.text import text_fingerprint
from tests.conftest import POSTGRES_URL, scratch_postgres_database
from tests.integrations.test_coral import SECRET, coral_request, send
from tests.moderation_helpers import submit
from tests.test_bad_input import assert_error

# Ids intake accepts that a URL path cannot carry as one segment, or that clients and proxies rewrite.
AWKWARD_IDS = ["a/b", "/führend", "endet/", "..", ".", "a/../b", "a//b", "a%2Fb", "x?y=1#z", "mit Leerzeichen",
               "ü", "\\backslash"]


def export(client, auth, author_id):
    return client.get("/v1/authors/export", headers=auth["admin"], query_string={"author_id": author_id})


def erase(client, auth, author_id):
    return client.delete("/v1/authors", headers=auth["admin"], query_string={"author_id": author_id})


def ban(client, auth, author_id, **body):
    return client.put("/v1/moderation/authors/ban", headers=auth["moderator"], query_string={"author_id": author_id},
                      json={"reason": "Beleidigung", **body})


def lift(client, auth, author_id):
    return client.delete("/v1/moderation/authors/ban", headers=auth["moderator"],
                         query_string={"author_id": author_id})


@pytest.mark.parametrize("author_id", AWKWARD_IDS)
def test_any_stored_id_can_be_exported_banned_and_erased(client, auth, author_id):
    mine = submit(client, auth, author=author_id, text="Ein Kommentar mit Inhalt.")
    body = export(client, auth, author_id)
    assert body.status_code == 200 and [c["id"] for c in body.json["comments"]] == [mine["id"]]
    assert ban(client, auth, author_id).status_code == 200
    assert submit(client, auth, author=author_id, text="Noch einer.")["reasons"][0] == "author_banned"
    assert "author_banned" not in submit(client, auth, author="jemand-anderes", text="Hallo.")["reasons"]
    erased = erase(client, auth, author_id)
    assert erased.status_code == 200 and erased.json["comments_erased"] == 2 and erased.json["ban_anonymised"]
    assert submit(client, auth, author=author_id, text="Und wieder.")["reasons"][0] == "author_banned"
    assert lift(client, auth, author_id).status_code == 204
    assert "author_banned" not in submit(client, auth, author=author_id, text="Frieden.")["reasons"]


@pytest.mark.parametrize("variant", [
    "zora-77", " zora-77\n", "zora\u202e-77", "zora-\x0077", "\u2066zora-77\u2069",
])
def test_ids_are_cleaned_like_intake_cleans_them(client, auth, variant):
    mine = submit(client, auth, author=variant, text="Ein Kommentar.")
    assert mine["author_id"] == "zora-77"
    for response in (export(client, auth, variant), client.get(f"/v1/authors/{quote(variant)}/export",
                                                                 headers=auth["admin"])):
        assert response.status_code == 200 and [c["id"] for c in response.json["comments"]] == [mine["id"]]
        assert response.json["author_id"] == "zora-77"
    assert ban(client, auth, variant).json["author_id"] == "zora-77"
    assert submit(client, auth, author="zora-77", text="Gesperrt?")["reasons"][0] == "author_banned"
    assert erase(client, auth, variant).json["comments_erased"] == 2


def test_nfd_and_nfc_spellings_are_one_author(client, auth):
    nfc, nfd = "jürgen-5", "ju\u0308rgen-5"
    mine = submit(client, auth, author=nfd, text="Ein Kommentar.")
    assert mine["author_id"] == nfc
    assert [c["id"] for c in export(client, auth, nfc).json["comments"]] == [mine["id"]]
    assert client.delete(f"/v1/authors/{quote(nfd)}", headers=auth["admin"]).json["comments_erased"] == 1


def test_coral_author_ids_are_cleaned_like_the_apis(app, client, auth):
    app.config["CORAL_SIGNING_SECRETS"] = SECRET
    payload = coral_request("<p>Ein Kommentar aus Coral.</p>")
    payload["author"]["id"] = "\u202ecoral-7\x00"
    assert send(client, payload, SECRET).status_code in (200, 204)
    body = export(client, auth, "coral-7")
    assert body.status_code == 200 and [c["author_id"] for c in body.json["comments"]] == ["coral-7"]


@pytest.mark.parametrize("author_id", ["", "   ", "\x00\u202e", "x" * 201])
def test_ids_that_clean_to_nothing_or_too_long_are_refused(client, auth, count_rows, author_id):
    submit(client, auth, author="zora-77")
    before = count_rows()
    for response in (export(client, auth, author_id), erase(client, auth, author_id), ban(client, auth, author_id),
                     lift(client, auth, author_id)):
        assert_error(response, 422, "validation_failed", {"author_id"})
    if author_id.strip():  # an empty path segment routes nowhere: nothing to test there
        segment = quote(author_id)
        for response in (client.get(f"/v1/authors/{segment}/export", headers=auth["admin"]),
                         client.delete(f"/v1/authors/{segment}", headers=auth["admin"]),
                         client.put(f"/v1/moderation/authors/{segment}/ban", headers=auth["moderator"],
                                    json={"reason": "x"})):
            assert_error(response, 422, "validation_failed", {"author_id"})
    assert count_rows() == before


def test_a_missing_author_id_is_refused(client, auth, count_rows):
    before = count_rows()
    assert_error(client.get("/v1/authors/export", headers=auth["admin"]), 422, "validation_failed", {"author_id"})
    assert_error(client.delete("/v1/authors", headers=auth["admin"]), 422, "validation_failed", {"author_id"})
    assert count_rows() == before


@pytest.mark.parametrize("path", [
    "/v1/authors/zora%252F77",          # double-encoded: arrives as the literal "zora%2F77"
    "/v1/authors/niemand",
])
def test_erasing_or_exporting_an_unknown_author_is_404_and_changes_nothing(client, auth, count_rows, path):
    submit(client, auth, author="zora/77", text="Ein Kommentar.")
    before = count_rows()
    assert_error(client.delete(path, headers=auth["admin"]), 404, "not_found")
    assert_error(client.get(f"{path}/export", headers=auth["admin"]), 404, "not_found")
    assert count_rows() == before
    assert export(client, auth, "zora/77").json["comments"][0]["text"] == "Ein Kommentar."


def test_erasing_twice_is_404_the_second_time(client, auth):
    submit(client, auth, author="zora-77")
    assert erase(client, auth, "zora-77").status_code == 200
    assert_error(erase(client, auth, "zora-77"), 404, "not_found")


def test_the_old_urls_keep_working_for_plain_ids(client, auth):
    mine = submit(client, auth, author="leser-42")
    assert client.put("/v1/moderation/authors/leser-42/ban", headers=auth["moderator"],
                      json={"reason": "x"}).status_code == 200
    assert [c["id"] for c in client.get("/v1/authors/leser-42/export", headers=auth["admin"]).json["comments"]] == [
        mine["id"]]
    assert client.delete("/v1/moderation/authors/leser-42/ban", headers=auth["moderator"]).status_code == 204
    assert client.delete("/v1/authors/leser-42", headers=auth["admin"]).json["comments_erased"] == 1


def test_openapi_documents_the_query_routes(client):
    paths = client.get("/openapi.json").json["paths"]
    for path, method in (("/v1/authors/export", "get"), ("/v1/authors", "delete"),
                         ("/v1/moderation/authors/ban", "put"), ("/v1/moderation/authors/ban", "delete")):
        operation = paths[path][method]
        assert any(p["name"] == "author_id" and p["in"] == "query" for p in operation["parameters"]), path
        assert {"404", "422"} <= set(operation["responses"]) or method == "put", path


@pytest.fixture(params=["sqlite", "postgres"])
def database_before_erasure(request, tmp_path):
    """A database migrated to the revision before erasure's, as an existing deployment has it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        command.upgrade(alembic_config(url), "0006")
        yield url
        return
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests skipped: set MODERATION_TEST_POSTGRES_URL (`.ci/run` does)")
    with scratch_postgres_database("moderation_0007") as url:
        command.upgrade(alembic_config(url), "0006")
        yield url


def test_the_migration_fingerprints_feedback_and_cleans_stored_author_ids(database_before_erasure):
    engine = make_engine(database_before_erasure)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO articles (id, external_id, comments_open, premoderation, created_at) "
                          "VALUES (1, 'a-1', true, false, :now)"), {"now": now})
        for author in ("\u202ecoral-7", "coral-7", "plain-1"):
            conn.execute(text(
                "INSERT INTO comments (article_id, author_id, author_name, text, status, toxicity, reasons, "
                "model_version, created_at, updated_at, report_count, reported) VALUES (1, :author, 'N', 'Hallo', "
                "'approved', 0.1, '[]', 'v', :now, :now, 0, false)"), {"author": author, "now": now})
        for author in ("\u202ecoral-7", "coral-7", " troll-3 "):
            conn.execute(text("INSERT INTO author_bans (author_id, reason, banned_by, created_at) "
                              "VALUES (:author, 'x', 'm', :now)"), {"author": author, "now": now})
        conn.execute(text("INSERT INTO feedback_labels (source, external_id, text, label, attribute, created_at, "
                          "updated_at) VALUES ('perspective', 'c-1', 'Ein  Text', 1, 'TOXICITY', :now, :now)"),
                     {"now": now})
    command.upgrade(alembic_config(database_before_erasure), "head")
    with engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT author_id FROM comments")).scalars()) == [
            "coral-7", "coral-7", "plain-1"]
        assert sorted(conn.execute(text("SELECT author_id FROM author_bans")).scalars()) == ["coral-7", "troll-3"]
        assert conn.execute(text("SELECT text_key FROM feedback_labels")).scalar() == text_fingerprint("ein text")
        key = conn.execute(text("SELECT value FROM server_keys WHERE name = 'author_pseudonyms'")).scalar()
        assert len(bytes.fromhex(key)) == 32
    engine.dispose()
