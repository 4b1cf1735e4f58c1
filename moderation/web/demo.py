"""A public demo article with its Kommentare section, to see the whole loop in a browser.

Registered only with MODERATION_DEMO=1 (refused in production), and only for articles whose id starts
with `demo-`: anyone can write through it, so it must never reach a real article.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for

from moderation.extensions import classifier, db
from moderation.models import Comment
from moderation.services import articles
from moderation.services import comments as comment_service
from moderation.text import ARTICLE_ID, clean_text
from moderation.web import security

bp = Blueprint("demo", __name__, url_prefix="/demo", template_folder="templates")
security.protect(bp)

# The demo shows this many published comments, oldest first; enough for a demo, no paging.
SHOWN = 100
DEMO_PREFIX = "demo-"
DEFAULT_ARTICLE = DEMO_PREFIX + "stadtrat-radwege"
RESULTS = {
    "approved": ("success", "Danke! Ihr Kommentar wurde veröffentlicht."),
    "pending": ("info", "Danke! Ihr Kommentar wird geprüft und erscheint, sobald die Moderation ihn freigibt."),
    "rejected": ("error", "Ihr Kommentar wurde abgelehnt, weil er gegen unsere Diskussionsregeln verstößt."),
}


@dataclass
class Thread:
    comment: Comment
    replies: list[Thread] = field(default_factory=list)


def threads(comments: Sequence[Comment]) -> list[Thread]:
    """Nest replies under their parents; a reply whose parent is not shown stands on its own."""
    nodes = {c.id: Thread(c) for c in comments}
    roots = []
    for comment in comments:
        parent = nodes.get(comment.parent_id) if comment.parent_id is not None else None
        (parent.replies if parent else roots).append(nodes[comment.id])
    return roots


def _article_id(article_id: str) -> str:
    if not (ARTICLE_ID.match(article_id) and article_id.startswith(DEMO_PREFIX) and article_id != DEMO_PREFIX):
        abort(404)
    return article_id


def _parent_id(raw: str) -> int | None:
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit() and 0 < int(raw) < 2**31):
        abort(400)
    return int(raw)


def _author_id() -> str:
    """Return this browser's pseudonymous reader id, kept in the session."""
    author = session.get("demo_author")
    if not isinstance(author, str):
        author = session["demo_author"] = "demo-" + secrets.token_hex(8)
    return author


def _page(article_id: str, *, errors: dict[str, str] | None = None, form: dict[str, str] | None = None,
          status: int = 200) -> Any:
    settings = articles.get_settings(db.session, article_id)
    page = comment_service.list_published(db.session, article_id, limit=SHOWN, cursor=None, oldest_first=True)
    return render_template(
        "web/demo.html", article_id=article_id, settings=settings, threads=threads(page.comments),
        total=page.total, result=session.pop("demo_result", None), results=RESULTS, errors=errors or {},
        form=form or {"author_name": session.get("demo_name", "")},
    ), status


@bp.get("/")
def index() -> Any:
    """Send visitors to the demo article."""
    return redirect(url_for("demo.article", article_id=DEFAULT_ARTICLE))


@bp.get("/<article_id>")
def article(article_id: str) -> Any:
    """Show the demo article and its published comments."""
    return _page(_article_id(article_id))


@bp.post("/<article_id>")
def submit(article_id: str) -> Any:
    """Submit a reader comment through the service, as the site's backend would, and say what became of it."""
    article_id = _article_id(article_id)
    config = current_app.config
    raw = {name: request.form.get(name, "") for name in ("author_name", "text", "parent_id")}
    name, text = clean_text(raw["author_name"]), clean_text(raw["text"])
    errors = {}
    if not name:
        errors["author_name"] = "Bitte geben Sie einen Namen an."
    elif len(name) > config["MAX_AUTHOR_NAME_LENGTH"]:
        errors["author_name"] = f"Der Name darf höchstens {config['MAX_AUTHOR_NAME_LENGTH']} Zeichen lang sein."
    if not text:
        errors["text"] = "Bitte schreiben Sie einen Kommentar."
    elif len(text) > config["MAX_TEXT_LENGTH"]:
        errors["text"] = f"Der Kommentar darf höchstens {config['MAX_TEXT_LENGTH']} Zeichen lang sein."
    parent_id = _parent_id(raw["parent_id"])
    if errors:
        return _page(article_id, errors=errors, form=raw, status=422)
    session["demo_name"] = name
    comment = comment_service.submit_comment(
        db.session, *classifier.pair(db.session), article_id,
        comment_service.NewComment(author_id=_author_id(), author_name=name, text=text, parent_id=parent_id),
        duplicate_window=timedelta(seconds=config["DUPLICATE_WINDOW_SECONDS"]),
    ).comment
    session["demo_result"] = {"status": comment.status, "id": comment.id}
    return redirect(url_for("demo.article", article_id=article_id, _anchor="kommentare"))


@bp.route("/<article_id>/<path:anything>", methods=["GET", "POST"])
def not_found(article_id: str, anything: str) -> Any:
    """Answer unknown pages under /demo/ with the German 404 page."""
    abort(404)
