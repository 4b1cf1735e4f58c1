"""Helpers for tests that need comments in a given state."""

from __future__ import annotations

from tests.conftest import FRIENDLY


def submit(client, auth, *, article="artikel-1", author="leser-1", text=FRIENDLY[0], **extra):
    response = client.post(f"/v1/articles/{article}/comments", headers=auth["backend"],
                           json={"author_id": author, "author_name": "Leserin", "text": text, **extra})
    assert response.status_code == 201, response.json
    return response.json


def premoderate(client, auth, article="artikel-1", *, open_=True):
    response = client.put(f"/v1/articles/{article}/settings", headers=auth["moderator"],
                          json={"comments_open": open_, "premoderation": True})
    assert response.status_code == 200, response.json


def pending_comments(client, auth, n, *, article="artikel-1"):
    """Submit `n` comments that wait in the pending queue (the article is pre-moderated)."""
    premoderate(client, auth, article)
    return [submit(client, auth, article=article, author=f"leser-{i}", text=f"{FRIENDLY[i % len(FRIENDLY)]} ({i})")
            for i in range(n)]
