"""SQLite (no planner statistics) must use the index meant for each hot query, not walk a larger one.

Each query is recorded as the service issues it, then run under EXPLAIN QUERY PLAN on a migrated database.
`benchmarks/query_plans.py` prints the same plans with timings on 200,000 (SQLite) and 1,000,000
(PostgreSQL) comments.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import event
from sqlalchemy.orm import Session

from moderation.cli import cli
from moderation.db import make_engine, utcnow
from moderation.services import articles, authors, queue
from moderation.services.comments import NewComment, _article_and_checks


@pytest.fixture
def engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'plans.db'}"
    assert CliRunner().invoke(cli, ["db", "upgrade"], env={"MODERATION_DATABASE_URL": url}).exit_code == 0
    engine = make_engine(url)
    with Session(engine) as session:
        articles.update_settings(session, "artikel-1", comments_open=True, premoderation=False)
        session.commit()
    yield engine
    engine.dispose()


def plans(engine, call: Callable[[Session], Any]) -> dict[str, list[str]]:
    """Run `call`, then return the query plan of every SELECT on comments it issued."""
    issued: list[tuple[str, Any]] = []

    def listener(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM comments" in statement:
            issued.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listener)
    try:
        with Session(engine) as session:
            call(session)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    with engine.connect() as conn:
        return {sql: [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)]
                for sql, params in issued}


def test_duplicate_check_uses_the_author_index(engine):
    new = NewComment(author_id="leser-1", author_name="L", text="Hallo")
    found = plans(engine, lambda s: _article_and_checks(s, "artikel-1", new, utcnow(), timedelta(minutes=5)))
    (plan,) = found.values()
    subquery = plan[plan.index(next(p for p in plan if "CORRELATED SCALAR SUBQUERY" in p)) + 1]
    assert "ix_comments_author_article_created" in subquery, plan


@pytest.mark.parametrize("sort", ["toxicity", "oldest"])
def test_one_articles_queue_uses_the_article_index(engine, sort):
    found = plans(engine, lambda s: queue.list_queue(s, queue="pending", article_id="artikel-1", sort=sort,
                                                      limit=20, cursor=None))
    assert len(found) == 2  # the total and the page
    for sql, plan in found.items():
        on_comments = [step for step in plan if " comments " in f" {step} "]
        assert on_comments and all("ix_comments_article_" in step for step in on_comments), (sql, plan)


def test_author_histories_are_counted_from_the_index_alone(engine):
    found = plans(engine, lambda s: authors.histories(s, {"leser-1", "leser-2"}))
    (plan,) = found.values()
    assert any("COVERING INDEX ix_comments_author_status" in step for step in plan), plan
