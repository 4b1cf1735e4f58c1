"""Every bad input gets a clear error in the one JSON shape and changes nothing."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FRIENDLY

GOOD = {"author_id": "leser-1", "author_name": "Leserin K.", "text": FRIENDLY[0]}
URL = "/v1/articles/artikel-1/comments"


def assert_error(response, status: int, code: str, fields: set[str] | None = None) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    error = response.json["error"]
    assert set(response.json) == {"error"}
    assert set(error) == {"code", "message", "fields"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    if fields is not None:
        assert set(error["fields"]) == fields


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"author_id", "author_name", "text"}),
        ({**GOOD, "text": ""}, {"text"}),
        ({**GOOD, "text": "   \n\t "}, {"text"}),
        ({**GOOD, "text": "\u0000\u0001"}, {"text"}),
        ({**GOOD, "text": "x" * 5001}, {"text"}),
        ({**GOOD, "text": 42}, {"text"}),
        ({**GOOD, "text": None}, {"text"}),
        ({**GOOD, "author_name": "n" * 101}, {"author_name"}),
        ({**GOOD, "author_id": ""}, {"author_id"}),
        ({**GOOD, "parent_id": "7"}, {"parent_id"}),
        ({**GOOD, "parent_id": 0}, {"parent_id"}),
        ({**GOOD, "parent_id": 999999}, {"parent_id"}),
        ({**GOOD, "score": 0.1}, {"score"}),
        ({**GOOD, "status": "approved"}, {"status"}),
        ([GOOD], {"_schema"}),
        ("ein Kommentar", {"_schema"}),
    ],
)
def test_schema_violations_are_422_naming_fields(client, auth, count_rows, body, fields):
    before = count_rows()
    response = client.post(URL, json=body, headers=auth["backend"])
    assert_error(response, 422, "validation_failed", fields)
    assert count_rows() == before


def test_limit_is_configurable(app, client, auth):
    app.config["MAX_TEXT_LENGTH"] = 10
    assert_error(client.post(URL, json={**GOOD, "text": "elf Zeichen"}, headers=auth["backend"]),
                 422, "validation_failed", {"text"})
    assert client.post(URL, json={**GOOD, "text": "zehn Zeich"}, headers=auth["backend"]).status_code == 201


def test_5000_characters_is_accepted(client, auth):
    assert client.post(URL, json={**GOOD, "text": "a" * 5000}, headers=auth["backend"]).status_code == 201


def test_parent_of_another_article_is_refused_and_article_not_created(client, auth, count_rows):
    other = client.post("/v1/articles/anderer/comments", json=GOOD, headers=auth["backend"]).json
    before = count_rows()
    response = client.post("/v1/articles/neu/comments", json={**GOOD, "parent_id": other["id"]},
                           headers=auth["backend"])
    assert_error(response, 422, "validation_failed", {"parent_id"})
    assert count_rows() == before


@pytest.mark.parametrize("raw", [b"{", b'{"text": }', b"\xff\xfe", b"{'a': 1}", b'{"a": NaN'])
def test_malformed_json_is_400(client, auth, count_rows, raw):
    before = count_rows()
    response = client.post(URL, data=raw, content_type="application/json", headers=auth["backend"])
    assert_error(response, 400, "malformed_json")
    assert count_rows() == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_body_is_415(client, auth, count_rows, content_type):
    before = count_rows()
    kwargs = {"content_type": content_type} if content_type else {}
    response = client.post(URL, data=json.dumps(GOOD), headers=auth["backend"], **kwargs)
    assert_error(response, 415, "unsupported_media_type")
    assert count_rows() == before


def test_body_over_limit_is_413(client, auth, count_rows):
    before = count_rows()
    body = json.dumps({**GOOD, "text": "a" * 70_000})
    response = client.post(URL, data=body, content_type="application/json", headers=auth["backend"])
    assert_error(response, 413, "payload_too_large")
    assert count_rows() == before


@pytest.mark.parametrize("article_id", ["a" * 201, "mit leerzeichen", "ümlaut", "semi;colon"])
def test_bad_article_id_is_422(client, auth, count_rows, article_id):
    before = count_rows()
    response = client.post(f"/v1/articles/{article_id}/comments", json=GOOD, headers=auth["backend"])
    assert_error(response, 422, "validation_failed", {"article_id"})
    assert client.get(f"/v1/articles/{article_id}/comments").status_code == 422
    assert count_rows() == before


@pytest.mark.parametrize(
    ("query", "fields"),
    [({"limit": 0}, {"limit"}), ({"limit": 101}, {"limit"}), ({"limit": "viele"}, {"limit"}),
     ({"order": "random"}, {"order"}), ({"cursor": "kaputt!"}, {"cursor"}), ({"cursor": "YzI6MQ"}, {"cursor"})],
)
def test_bad_listing_query_is_422(client, query, fields):
    assert_error(client.get(URL, query_string=query), 422, "validation_failed", fields)


def test_unknown_query_parameters_are_ignored(client):
    # Sites add cache busters such as `_=1699999999` to GET requests; only bodies are strict.
    assert client.get(URL, query_string={"_": "1699999999"}).status_code == 200


def test_unknown_comment_is_404(client, auth):
    assert_error(client.get("/v1/comments/424242", headers=auth["backend"]), 404, "not_found")


def test_unknown_route_and_method_use_the_shape(client, auth):
    assert_error(client.get("/v1/nichts"), 404, "not_found")
    assert_error(client.delete(URL, headers=auth["backend"]), 405, "method_not_allowed")


@pytest.mark.parametrize("body", [{}, {"text": ""}, {"text": "x" * 5001}, {"text": "a", "extra": 1}])
def test_score_validation(client, auth, body):
    assert_error(client.post("/v1/score", json=body, headers=auth["backend"]), 422, "validation_failed")
