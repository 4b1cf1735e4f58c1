"""Fixtures for the pages: the app with the web blueprints, a signed-in moderator client, seeding helpers."""

from __future__ import annotations

import re

import pytest

from moderation.extensions import classifier, db
from moderation.services import articles
from moderation.services.comments import NewComment, submit_comment

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    """Return the CSRF token a page embeds in its forms."""
    match = CSRF.search(html)
    assert match, "page has no CSRF field"
    return match.group(1)


def sign_in(client, token: str):
    """Sign in through the login form, as a browser would; return the response."""
    page = client.get("/moderation/login")
    return client.post("/moderation/login", data={"api_key": token, "csrf_token": csrf_from(page.text)})


@pytest.fixture
def moderator(client, tokens):
    """A client signed in with the moderator key `test-moderator`; returns the client."""
    response = sign_in(client, tokens["moderator"])
    assert response.status_code == 302
    return client


@pytest.fixture
def seed(app):
    """Return a function that submits a comment through the service (premoderated article: it waits)."""

    def submit(text: str, *, article: str = "a-1", author: str = "leser-1", name: str = "Leserin",
               premoderation: bool = True, parent_id: int | None = None) -> int:
        with app.app_context():
            articles.update_settings(db.session, article, comments_open=True, premoderation=premoderation)
            comment = submit_comment(db.session, classifier.model, classifier.thresholds, article,
                                     NewComment(author_id=author, author_name=name, text=text, parent_id=parent_id))
            return comment.comment.id

    return submit


def session_csrf(client) -> str:
    """Return the CSRF token stored in the client's session."""
    with client.session_transaction() as session:
        return session["csrf_token"]
