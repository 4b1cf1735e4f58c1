"""Optional article titles and links from the site's backend: validated, stored on the article, shown in the queue."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from moderation.extensions import db
from moderation.models import Article
from tests.conftest import FRIENDLY
from tests.moderation_helpers import premoderate

TITLE = "Stadtrat beschließt neue Radwege"
URL = "https://www.stadtanzeiger.example/lokales/radwege-2026.html?utm=x#kommentare"


def article_row(app, external_id: str = "artikel-1") -> tuple[str | None, str | None] | None:
    with app.app_context():
        article = db.session.scalar(select(Article).where(Article.external_id == external_id))
        return None if article is None else (article.title, article.url)


def post_comment(client, auth, article="artikel-1", **extra):
    return client.post(f"/v1/articles/{article}/comments", headers=auth["backend"],
                       json={"author_id": "leser-1", "author_name": "Leserin", "text": FRIENDLY[0], **extra})


def put_settings(client, auth, article="artikel-1", **extra):
    return client.put(f"/v1/articles/{article}/settings", headers=auth["moderator"],
                      json={"comments_open": True, "premoderation": True, **extra})


def test_submission_stores_title_and_link_on_the_article(app, client, auth):
    response = post_comment(client, auth, article_title=f"  {TITLE}\u202e\n ", article_url=URL)
    assert response.status_code == 201, response.json
    assert article_row(app) == (TITLE, URL)  # cleaned like any text: controls, overrides and edges removed
    # Later submissions without them (or with null) keep what the article has; a new title replaces it.
    assert post_comment(client, auth, text=FRIENDLY[1]).status_code == 201
    assert post_comment(client, auth, text=FRIENDLY[2], article_title=None, article_url=None).status_code == 201
    assert article_row(app) == (TITLE, URL)
    assert post_comment(client, auth, text=FRIENDLY[3], article_title="Neuer Titel").status_code == 201
    assert article_row(app) == ("Neuer Titel", URL)


def test_settings_set_keep_and_clear_title_and_link(app, client, auth):
    response = put_settings(client, auth, article_title=TITLE, article_url=URL)
    assert response.status_code == 200
    assert response.json == {"article_id": "artikel-1", "comments_open": True, "premoderation": True,
                             "article_title": TITLE, "article_url": URL}
    assert put_settings(client, auth).json["article_title"] == TITLE  # absent: kept
    cleared = put_settings(client, auth, article_title=None, article_url=None).json
    assert cleared["article_title"] is None and cleared["article_url"] is None
    assert article_row(app) == (None, None)
    unseen = client.get("/v1/articles/nie-gesehen/settings", headers=auth["moderator"]).json
    assert unseen["article_title"] is None and unseen["article_url"] is None


BAD = [
    ("article_title", "x" * 301),
    ("article_title", " \n\t "),
    ("article_title", 42),
    ("article_title", ["Titel"]),
    ("article_url", "javascript:alert(1)"),
    ("article_url", "ftp://example.com/artikel"),
    ("article_url", "/lokales/radwege"),
    ("article_url", "https://example.com/" + "a" * 1990),
    ("article_url", "https://example.com/mit leerzeichen"),
    ("article_url", "data:text/html,<script>alert(1)</script>"),
    ("article_url", 7),
    ("article_url", ""),
]


@pytest.mark.parametrize("field, value", BAD)
def test_bad_title_or_link_with_a_submission_is_refused_and_stores_nothing(app, client, auth, count_rows, field,
                                                                          value):
    assert put_settings(client, auth, article_title=TITLE, article_url=URL).status_code == 200
    before = count_rows()
    response = post_comment(client, auth, **{field: value})
    assert response.status_code == 422
    error = response.json["error"]
    assert error["code"] == "validation_failed" and field in error["fields"]
    assert count_rows() == before and article_row(app) == (TITLE, URL)


@pytest.mark.parametrize("field, value", BAD)
def test_bad_title_or_link_in_the_settings_is_refused_and_changes_nothing(app, client, auth, count_rows, field,
                                                                         value):
    assert put_settings(client, auth, article_title=TITLE, article_url=URL).status_code == 200
    before = count_rows()
    response = client.put("/v1/articles/artikel-1/settings", headers=auth["moderator"],
                          json={"comments_open": False, "premoderation": False, field: value})
    assert response.status_code == 422
    assert field in response.json["error"]["fields"]
    assert count_rows() == before
    with app.app_context():
        article = db.session.scalar(select(Article).where(Article.external_id == "artikel-1"))
        assert (article.title, article.url, article.comments_open, article.premoderation) == (TITLE, URL, True, True)


@pytest.mark.parametrize("url", ["http://localhost:8000/artikel/1", "https://www.zeitung.example/a?b=c&d=e",
                                 "HTTPS://ZEITUNG.EXAMPLE/Artikel"])
def test_good_links_are_accepted(app, client, auth, url):
    assert put_settings(client, auth, article_url=url).status_code == 200
    assert article_row(app)[1] == url


def test_title_at_the_limit_is_accepted(app, client, auth):
    assert post_comment(client, auth, article_title="T" * 300).status_code == 201
    assert article_row(app)[0] == "T" * 300


def test_queue_api_carries_title_and_link(client, auth):
    premoderate(client, auth)
    post_comment(client, auth, article_title=TITLE, article_url=URL)
    post_comment(client, auth, article="ohne-titel", text=FRIENDLY[1])
    premoderate(client, auth, "ohne-titel")
    post_comment(client, auth, article="ohne-titel", text=FRIENDLY[2])
    items = client.get("/v1/moderation/queue", headers=auth["moderator"]).json["comments"]
    shown = {item["article_id"]: (item["article_title"], item["article_url"]) for item in items}
    assert shown == {"artikel-1": (TITLE, URL), "ohne-titel": (None, None)}
