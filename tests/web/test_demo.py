"""The demo article: off unless MODERATION_DEMO=1, never in production, and only for `demo-` articles."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from moderation.config import ConfigError
from moderation.extensions import db
from moderation.models import Comment
from moderation.services import articles
from moderation.services import queue as queue_service
from tests.web.conftest import csrf_from

DEMO_ARTICLE = "demo-stadtrat-radwege"
NOT_DEMO = ["stadtrat-radwege", "politik-123", "a-1", "demo", "demo-", "Demo-1", "DEMO-1", "xdemo-1", "demo_1"]


@pytest.fixture
def app_config(app_config: dict) -> dict:
    """The pages with the demo switched on (MODERATION_DEMO=1)."""
    return {**app_config, "DEMO": True}


def demo_post(client, article: str, **data: str):
    token = csrf_from(client.get(f"/demo/{DEMO_ARTICLE}").text)
    return client.post(f"/demo/{article}", data={"csrf_token": token, **data})


# --- switched off, refused in production ----------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("get", "/demo/"), ("get", f"/demo/{DEMO_ARTICLE}"), ("post", f"/demo/{DEMO_ARTICLE}"),
    ("get", "/demo/politik-123"), ("post", "/demo/politik-123"), ("get", "/demo/a-1/gibts-nicht"),
])
def test_demo_is_off_by_default(app_config, make_app, count_rows, method, path):
    app = make_app({key: value for key, value in app_config.items() if key != "DEMO"})
    assert "demo" not in app.blueprints
    before = count_rows()
    response = getattr(app.test_client(), method)(path, data={"author_name": "Anna", "text": "Hallo"})
    assert response.status_code == 404
    assert count_rows() == before


def test_demo_is_refused_in_production(app_config, make_app):
    with pytest.raises(ConfigError, match="MODERATION_DEMO"):
        make_app({**app_config, "ENV": "production", "SECRET_KEY": "s" * 16 + "ecret-for-the-demo-test-only"})


# --- only demo- articles ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("article", NOT_DEMO)
def test_other_articles_are_404_even_when_on(app, client, count_rows, article):
    with app.app_context():
        articles.update_settings(db.session, "politik-123", comments_open=True, premoderation=False)
    before = count_rows()
    page = client.get(f"/demo/{article}")
    assert page.status_code == 404 and "Seite nicht gefunden" in page.text
    response = demo_post(client, article, author_name="Anna", text="Eine Meinung, die hier nicht hingehört.")
    assert response.status_code == 404 and "Seite nicht gefunden" in response.text
    assert count_rows() == before


@pytest.mark.parametrize("path", ["/demo/demo-1/gibts-nicht", "/demo/%3Cscript%3E", "/demo/demo-%3Cx%3E"])
def test_unknown_demo_pages_are_german_html(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.content_type.startswith("text/html") and "Seite nicht gefunden" in response.text
    assert "<script>" not in response.text


def test_demo_index_redirects_to_the_demo_article(client):
    assert client.get("/demo/").location == f"/demo/{DEMO_ARTICLE}"


# --- the demo itself -------------------------------------------------------------------------------------------------

def test_demo_submit_creates_exactly_one_comment(app, client, count_rows):
    before = count_rows()
    response = demo_post(client, DEMO_ARTICLE, author_name="Anna", text="Endlich mehr Radwege, danke!")
    assert response.status_code == 302 and response.location == f"/demo/{DEMO_ARTICLE}#kommentare"
    after = count_rows()
    assert after["comments"] == before["comments"] + 1
    assert after["moderation_actions"] == before["moderation_actions"] + 1
    page = client.get(f"/demo/{DEMO_ARTICLE}")
    with app.app_context():
        comment = db.session.scalars(select(Comment)).one()
        assert comment.article.external_id == DEMO_ARTICLE
    assert comment.author_id.startswith("demo-") and comment.author_name == "Anna"
    message = {"approved": "veröffentlicht", "pending": "wird geprüft", "rejected": "abgelehnt"}[comment.status]
    assert message in page.text
    # The result is shown once, and the same browser keeps its reader id.
    assert 'id="result"' not in client.get(f"/demo/{DEMO_ARTICLE}").text
    demo_post(client, DEMO_ARTICLE, author_name="Anna", text="Noch ein Gedanke zur Hauptstraße.")
    with app.app_context():
        assert len({c.author_id for c in db.session.scalars(select(Comment))}) == 1


def test_demo_says_pending_for_premoderated_article(app, client):
    with app.app_context():
        articles.update_settings(db.session, "demo-vorab", comments_open=True, premoderation=True)
    demo_post(client, "demo-vorab", author_name="Ben", text="Interessante Recherche.")
    page = client.get("/demo/demo-vorab")
    assert "wird geprüft" in page.text and "Interessante Recherche" not in page.text


def test_demo_shows_only_published_comments_with_replies_nested(app, client, seed):
    parent = seed("Danke für den ausgewogenen Artikel, sehr informativ.", article="demo-1", premoderation=False)
    seed("Ich sehe das ähnlich, gute Argumente auf beiden Seiten.", article="demo-1", premoderation=False,
         parent_id=parent)
    held = seed("Wartender Kommentar <script>alert(1)</script>", article="demo-1")
    rejected = seed("Abgelehnter Kommentar.", article="demo-1")
    with app.app_context():
        queue_service.decide(db.session, rejected, "test-moderator", decision="reject")
    page = client.get("/demo/demo-1")
    assert "Danke für den ausgewogenen Artikel, sehr informativ." in page.text
    assert "Wartender Kommentar" not in page.text and "Abgelehnter Kommentar" not in page.text
    nested = page.text.split('<ol class="replies">', 1)[1]
    assert "Ich sehe das ähnlich, gute Argumente auf beiden Seiten." in nested
    assert held  # still pending, never shown


@pytest.mark.parametrize("data, message", [
    ({"author_name": "Anna", "text": "   "}, "Bitte schreiben Sie einen Kommentar."),
    ({"author_name": "", "text": "Hallo"}, "Bitte geben Sie einen Namen an."),
    ({"author_name": "A" * 101, "text": "Hallo"}, "höchstens 100 Zeichen"),
])
def test_demo_invalid_input_is_german_422(client, count_rows, data, message):
    before = count_rows()
    response = demo_post(client, "demo-1", **data)
    assert response.status_code == 422 and message in response.text
    assert count_rows() == before


def test_demo_post_without_csrf_is_400(client, count_rows):
    before = count_rows()
    response = client.post("/demo/demo-1", data={"author_name": "Anna", "text": "Hallo"})
    assert response.status_code == 400 and "Sicherheitsmerkmal" in response.text
    assert "Zurück zum Artikel" in response.text
    assert count_rows() == before


def test_demo_closed_article(app, client, count_rows):
    with app.app_context():
        articles.update_settings(db.session, "demo-zu", comments_open=False, premoderation=False)
    page = client.get("/demo/demo-zu")
    assert "Kommentarfunktion ist für diesen Artikel geschlossen" in page.text and "comment-form" not in page.text
    before = count_rows()
    response = demo_post(client, "demo-zu", author_name="A", text="Hallo")
    assert response.status_code == 409 and "Kommentare geschlossen" in response.text
    assert count_rows() == before
