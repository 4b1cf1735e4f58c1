"""The least a comment submission must do, as a bare Flask app: the floor that benchmarks/load.py puts
beside the service to show how much of the gap to the echo app any implementation would have.

Served by the service's own gunicorn.conf.py (`gunicorn -c gunicorn.conf.py benchmarks.floor_app:app`)
on a database that `python -m moderation db upgrade` created, with `MODERATION_DATABASE_URL` and
`MODERATION_MODEL_DIR` as for the service. `POST /v1/articles/<id>/comments` compares the bearer token
with `FLOOR_TOKEN` from the environment, parses the JSON body, scores the text with the shipped model's
fast path, and in one write transaction on the raw driver (sqlite3 or psycopg, no SQLAlchemy) looks
for the article and a duplicate, inserts the comment and its audit row and commits; it answers 201
with the comment as JSON.

Everything else the service does is left out: key lookup and roles, validation and text cleaning,
word lists, bans and routing rules, idempotency keys, error answers, metrics and the access log.
Not for use: no error handling at all, and one driver connection per worker process, so only with
one thread per worker (as load.py runs it).
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, request

from moderation.ml import load_model

_FIND = ("SELECT a.id, (SELECT c.id FROM comments c WHERE c.author_id = {p} AND c.article_id = a.id "
         "AND c.created_at >= {p} AND c.text = {p} LIMIT 1) FROM articles a WHERE a.external_id = {p}")
_NEW_ARTICLE = ("INSERT INTO articles (external_id, comments_open, premoderation, created_at) "
                "VALUES ({p}, {true}, {false}, {p})")
_INSERT = ("INSERT INTO comments (article_id, author_id, author_name, text, status, toxicity, category, reasons, "
           "model_version, created_at, updated_at, report_count, reported) "
           "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, 0, {false})")
_AUDIT = ("INSERT INTO moderation_actions (comment_id, to_status, reasons, created_at) "
          "VALUES ({p}, {p}, {p}, {p})")


class _NoEngine:
    """gunicorn.conf.py's post_fork disposes the service's database engine; this app has none."""

    def dispose(self, close: bool = True) -> None:
        """Do nothing: the connection is opened in the worker, on first use."""


class _Store:
    """One raw driver connection per worker and the statements in its placeholder style."""

    def __init__(self, url: str) -> None:
        self.url, self.connection = url, None
        self.sqlite = url.startswith("sqlite")
        words = {"p": "?", "true": "1", "false": "0"} if self.sqlite else {"p": "%s", "true": "true", "false": "false"}
        self.find, self.new_article, self.insert, self.audit = (
            sql.format(**words) for sql in (_FIND, _NEW_ARTICLE, _INSERT, _AUDIT))
        if not self.sqlite:
            self.insert += " RETURNING id"

    def connect(self) -> Any:
        if self.connection is None:
            if self.sqlite:
                self.connection = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
                for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000"):
                    self.connection.execute(f"PRAGMA {pragma}")
            else:
                import psycopg

                self.connection = psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://"))
        return self.connection

    def _end(self, connection: Any, how: str) -> None:
        if self.sqlite:
            connection.execute(how)
        elif how == "COMMIT":
            connection.commit()
        else:
            connection.rollback()

    def store(self, article: str, data: dict[str, Any], status: str, toxicity: float, category: str | None,
              version: str) -> tuple[int, datetime]:
        """Insert the comment and its audit row in one transaction; return its id and time."""
        now = datetime.now(UTC)
        stamp: Any = now.strftime("%Y-%m-%d %H:%M:%S.%f") if self.sqlite else now
        since: Any = stamp  # the duplicate window's start; its length does not matter for the cost
        connection = self.connect()
        if self.sqlite:
            connection.execute("BEGIN IMMEDIATE")
        cursor = connection.cursor()
        try:
            check = (data["author_id"], since, data["text"], article)
            row = cursor.execute(self.find, check).fetchone()
            if row is None:
                cursor.execute(self.new_article, (article, stamp))
                row = cursor.execute(self.find, check).fetchone()
            cursor.execute(self.insert, (row[0], data["author_id"], data["author_name"], data["text"], status,
                                         toxicity, category, "[]", version, stamp, stamp))
            comment_id = cursor.lastrowid if self.sqlite else cursor.fetchone()[0]
            cursor.execute(self.audit, (comment_id, status, "[]", stamp))
            self._end(connection, "COMMIT")
        except BaseException:
            self._end(connection, "ROLLBACK")
            raise
        return comment_id, now


def create_app() -> Flask:
    """Build the floor app on the environment's database and model."""
    app = Flask(__name__)
    app.extensions["moderation.db"] = (_NoEngine(), None)
    model = load_model(os.environ.get("MODERATION_MODEL_DIR", "model"))
    store = _Store(os.environ["MODERATION_DATABASE_URL"])
    authorization = f"Bearer {os.environ['FLOOR_TOKEN']}"

    @app.post("/v1/articles/<article_id>/comments")
    def submit(article_id: str) -> Response:
        if request.headers.get("Authorization") != authorization:
            return Response('{"error": "unauthorized"}', 401, mimetype="application/json")
        data = request.get_json()
        score = model.score(data["text"], explain=False)
        status = "approved" if score.toxicity < model.approve_threshold else "pending"  # else held
        comment_id, now = store.store(article_id, data, status, score.toxicity, score.category, model.version)
        body = {"id": comment_id, "article_id": article_id, "parent_id": None, "author_id": data["author_id"],
                "author_name": data["author_name"], "text": data["text"], "status": status,
                "toxicity": score.toxicity, "category": score.category, "reasons": [],
                "model_version": model.version, "created_at": now.isoformat()}
        return Response(json.dumps(body, ensure_ascii=False), 201, mimetype="application/json")

    @app.get("/readyz")
    def ready() -> Response:
        return Response('{"status": "ready"}', mimetype="application/json")

    return app


app = create_app()
