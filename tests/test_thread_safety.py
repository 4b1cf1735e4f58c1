"""Threads of one worker share its caches: a change this process commits applies at once in every thread.

gunicorn runs several threads per worker (gunicorn.conf.py). A request that read the data before a change
was committed must not put its now stale answer into a cache after the change dropped that cache.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy.orm import Session

from moderation.extensions import db
from moderation.models import BANNED
from moderation.services import comments as comment_service
from moderation.services import wordlists
from tests.conftest import FRIENDLY

WAIT = 10.0


@pytest.fixture
def cached_app(app_config, make_app):
    # Long enough that a stale answer left in the cache would still be served when the test looks.
    return make_app({**app_config, "LISTING_CACHE_SECONDS": 60.0})


def test_takedown_applies_at_once_while_another_thread_builds_the_listing(cached_app, auth, monkeypatch):
    client = cached_app.test_client()
    created = client.post("/v1/articles/gleich/comments", headers=auth["backend"],
                          json={"author_id": "a", "author_name": "A", "text": FRIENDLY[1]}).json
    assert created["status"] == "approved"

    read, go = threading.Event(), threading.Event()
    real = comment_service.list_published

    def slow_listing(*args, **kwargs):
        page = real(*args, **kwargs)
        if not read.is_set():  # only the reader thread below waits, after it has read
            read.set()
            assert go.wait(WAIT)
        return page

    monkeypatch.setattr(comment_service, "list_published", slow_listing)
    answers = []
    reader = threading.Thread(target=lambda: answers.append(
        cached_app.test_client().get("/v1/articles/gleich/comments").json))
    reader.start()
    assert read.wait(WAIT)
    takedown = client.post(f"/v1/moderation/comments/{created['id']}/decision", headers=auth["moderator"],
                           json={"decision": "reject", "force": True})
    assert takedown.status_code == 200, takedown.json
    go.set()
    reader.join(WAIT)
    assert answers[0]["total"] == 1  # it read before the takedown
    assert client.get("/v1/articles/gleich/comments").json["total"] == 0


def test_new_word_list_applies_at_once_while_another_thread_loads_the_old_one(app, monkeypatch):
    read, go = threading.Event(), threading.Event()
    real = wordlists.get_wordlists

    def slow_read(session):
        lists = real(session)
        if not read.is_set():
            read.set()
            assert go.wait(WAIT)
        return lists

    monkeypatch.setattr(wordlists, "get_wordlists", slow_read)

    def load_in_other_thread():
        with app.app_context():
            wordlists.load_matcher(db.session)

    loader = threading.Thread(target=load_in_other_thread)
    loader.start()
    assert read.wait(WAIT)
    with app.app_context():
        wordlists.replace_wordlists(db.session, ["kartoffelkopf"], [])
        db.session.commit()
    go.set()
    loader.join(WAIT)
    with app.app_context():
        assert wordlists.load_matcher(db.session).find(BANNED, "Du Kartoffelkopf!") == ["kartoffelkopf"]


def test_word_lists_read_before_the_change_commits_are_not_kept(app):
    with app.app_context():
        changing = db.session
        wordlists.replace_wordlists(changing, ["kartoffelkopf"], [])  # flushed, not yet committed
        with Session(db.engine) as other:  # another request of this process, meanwhile
            assert wordlists.load_matcher(other).find(BANNED, "Du Kartoffelkopf!") == []
        changing.commit()
        assert wordlists.load_matcher(db.session).find(BANNED, "Du Kartoffelkopf!") == ["kartoffelkopf"]
