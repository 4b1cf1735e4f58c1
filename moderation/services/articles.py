"""Articles: the desk's settings for one article's Kommentare section."""

from __future__ import annotations

from sqlalchemy.orm import Session

from moderation.db import begin_write
from moderation.models import Article
from moderation.services.comments import find_article, get_or_create_article


def get_settings(session: Session, article_id: str) -> Article:
    """Return the article, or an unsaved one with the defaults if it has never been seen."""
    return find_article(session, article_id) or Article(external_id=article_id, comments_open=True,
                                                        premoderation=False)


ARTICLE_INFO = ("title", "url")


def update_settings(session: Session, article_id: str, *, comments_open: bool, premoderation: bool,
                    **info: str | None) -> Article:
    """Open or close an article's comments and switch pre-moderation; creates the article if needed.

    `title` and `url`, where given, replace the stored ones (None clears them).
    """
    unknown = set(info) - set(ARTICLE_INFO)
    if unknown:
        raise TypeError(f"unknown article fields: {sorted(unknown)}")
    begin_write(session)
    article = get_or_create_article(session, article_id)
    article.comments_open, article.premoderation = comments_open, premoderation
    for name, value in info.items():
        setattr(article, name, value)
    session.commit()
    return article
