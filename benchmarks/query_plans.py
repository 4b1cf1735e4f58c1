"""Print the plans and timings of the hot queries on a large database, exactly as the app issues them.

    .venv/bin/python benchmarks/query_plans.py [--rows 1000000] [--sqlite-rows 200000] [--skip-postgres]

PostgreSQL: creates the scratch database `bench_plans_<pid>`, migrates it with `python -m moderation
db upgrade`, fills it with INSERT ... SELECT generate_series (2,000 articles, comment counts skewed
towards a few hot articles, ~70% approved, ~17% pending, ~3% pending because readers reported them,
~10% rejected; authors skewed too), ANALYZEs, then calls the app's own service functions (public
listing, its total, the moderation queue, a claim, author histories, the duplicate check) with a
listener on the engine that records every SQL statement and its parameters. Each recorded SELECT on
`comments` is run again under EXPLAIN (ANALYZE, BUFFERS) with the same parameters; the second (warm)
run is printed. The database is dropped at the end. SQLite: the same on a temporary file with
--sqlite-rows rows, printing EXPLAIN QUERY PLAN and the median of repeated runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scratch import scratch_postgres  # noqa: E402  (benchmarks/ is the script folder)
from sqlalchemy import Engine, event  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from moderation.db import make_engine  # noqa: E402
from moderation.services import authors, queue  # noqa: E402
from moderation.services import comments as comment_service  # noqa: E402
from moderation.services.routing import Thresholds  # noqa: E402

ARTICLES = 2000
AUTHORS = 100_000
SENTENCES = (
    "Danke für den ausgewogenen Bericht zur Verkehrswende in unserer Region.",
    "Die Mieten in unserer Stadt sind in fünf Jahren um ein Drittel gestiegen.",
    "Der Stadtrat sollte die Bürger früher in solche Planungen einbeziehen.",
    "Bus und Bahn fahren bei uns am Wochenende nur alle zwei Stunden.",
    "Ohne verlässliche Förderung investiert kein Betrieb in neue Technik.",
    "Beim Radweg an der Hauptstraße wurde leider wieder gespart.",
    "Mal sehen, was der Gemeinderat daraus macht, ich bin gespannt.",
    "Die Pflegekräfte verdienen mehr als nur Applaus vom Balkon.",
)


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def migrate(url: str) -> None:
    """Create the schema with the app's own migrations."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODERATION_")}
    env["MODERATION_DATABASE_URL"] = url
    subprocess.run([sys.executable, "-m", "moderation", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)


# --- filling -----------------------------------------------------------------------------------------

# One row per g: h (0..99) picks the status, r the toxicity inside that status's band; the article is
# skewed (random()^2) so that a few articles carry tens of thousands of comments, the authors more so.
POSTGRES_FILL = """
INSERT INTO comments (article_id, author_id, author_name, text, status, toxicity, category, reasons,
                      model_version, created_at, updated_at, report_count, reported)
SELECT 1 + floor({articles} * random() ^ 2)::int,
       'leser-' || a, 'Leser ' || a,
       (ARRAY[{sentences}])[1 + mod(g, {n})] || ' ' || (ARRAY[{sentences}])[1 + mod(g / {n}, {n})] || ' #' || g,
       CASE WHEN h < 70 THEN 'approved' WHEN h < 90 THEN 'pending' ELSE 'rejected' END,
       CASE WHEN h < 70 THEN r * 0.07 WHEN h < 90 THEN 0.07 + r * 0.86 ELSE 0.93 + r * 0.07 END,
       CASE WHEN h >= 90 THEN 'insult' END,
       CASE WHEN h < 70 THEN '[]' WHEN h < 87 THEN '["toxicity_uncertain"]' WHEN h < 90 THEN '["reported"]'
            ELSE '["toxicity_high"]' END::json,
       'bench', now() - ({rows} - g) * interval '7 seconds', now() - ({rows} - g) * interval '7 seconds',
       CASE WHEN h BETWEEN 87 AND 89 THEN 3 ELSE 0 END, h BETWEEN 87 AND 89
FROM (SELECT g, floor(random() * 100)::int AS h, random() AS r,
             floor({authors} * random() ^ 3)::int AS a
      FROM generate_series(1, {rows}) AS g) AS s
"""

SQLITE_FILL = """
WITH RECURSIVE seq(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM seq WHERE g < {rows}),
     s AS MATERIALIZED (SELECT g, abs(random()) % 100 AS h, (abs(random()) % 1000000) / 1000000.0 AS r,
                  CAST({authors} * pow((abs(random()) % 1000000) / 1000000.0, 3) AS INTEGER) AS a,
                  1 + CAST({articles} * pow((abs(random()) % 1000000) / 1000000.0, 2) AS INTEGER) AS art
           FROM seq)
INSERT INTO comments (article_id, author_id, author_name, text, status, toxicity, category, reasons,
                      model_version, created_at, updated_at, report_count, reported)
SELECT art, 'leser-' || a, 'Leser ' || a,
       json_extract('[{sentences}]', '$[' || (g % {n}) || ']') || ' '
         || json_extract('[{sentences}]', '$[' || ((g / {n}) % {n}) || ']') || ' #' || g,
       CASE WHEN h < 70 THEN 'approved' WHEN h < 90 THEN 'pending' ELSE 'rejected' END,
       CASE WHEN h < 70 THEN r * 0.07 WHEN h < 90 THEN 0.07 + r * 0.86 ELSE 0.93 + r * 0.07 END,
       CASE WHEN h >= 90 THEN 'insult' END,
       CASE WHEN h < 70 THEN '[]' WHEN h < 87 THEN '["toxicity_uncertain"]' WHEN h < 90 THEN '["reported"]'
            ELSE '["toxicity_high"]' END,
       'bench', datetime('now', '-' || (({rows} - g) * 7) || ' seconds'),
       datetime('now', '-' || (({rows} - g) * 7) || ' seconds'),
       CASE WHEN h BETWEEN 87 AND 89 THEN 3 ELSE 0 END, h BETWEEN 87 AND 89
FROM s
"""


def fill(engine: Engine, rows: int) -> None:
    """Insert the articles and `rows` comments in bulk, then ANALYZE."""
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        sentences = ", ".join("'" + s.replace("'", "''") + "'" for s in SENTENCES)
        articles = ("INSERT INTO articles (external_id, comments_open, premoderation, created_at) "
                    f"SELECT 'artikel-' || g, true, false, now() FROM generate_series(1, {ARTICLES}) AS g")
        comments = POSTGRES_FILL
    else:
        sentences = ", ".join('"' + s + '"' for s in SENTENCES)
        articles = (f"WITH RECURSIVE seq(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM seq WHERE g < {ARTICLES}) "
                    "INSERT INTO articles (external_id, comments_open, premoderation, created_at) "
                    "SELECT 'artikel-' || g, 1, 0, datetime('now') FROM seq")
        comments = SQLITE_FILL
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql(articles)
        conn.exec_driver_sql(comments.format(articles=ARTICLES, authors=AUTHORS, rows=rows, n=len(SENTENCES),
                                             sentences=sentences))
    with engine.connect() as conn:
        if postgres:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
        else:
            conn.exec_driver_sql("ANALYZE")
    log(f"{engine.dialect.name}: inserted {rows} comments in {time.perf_counter() - started:.1f} s (with ANALYZE)")


def describe(engine: Engine) -> dict[str, Any]:
    """Return the shape of the data and the articles/authors the queries are run for."""
    with engine.connect() as conn:
        by_status = dict(conn.exec_driver_sql(
            "SELECT status || CASE WHEN reported THEN '/reported' ELSE '' END, count(*) FROM comments GROUP BY 1"
        ).all())
        hot = conn.exec_driver_sql(
            "SELECT a.external_id, count(*) FROM comments c JOIN articles a ON a.id = c.article_id "
            "WHERE c.status = 'approved' GROUP BY a.external_id ORDER BY count(*) DESC LIMIT 1").one()
        median = conn.exec_driver_sql(
            "SELECT a.external_id, count(c.id) AS n FROM articles a LEFT JOIN comments c ON c.article_id = a.id "
            "AND c.status = 'approved' GROUP BY a.external_id ORDER BY n LIMIT 1 OFFSET 1000").one()
        author = conn.exec_driver_sql(
            "SELECT c.author_id, a.external_id, c.text, count(*) OVER (PARTITION BY c.author_id) AS n "
            "FROM comments c JOIN articles a ON a.id = c.article_id "
            "WHERE c.author_id = (SELECT author_id FROM comments GROUP BY author_id ORDER BY count(*) DESC LIMIT 1) "
            "ORDER BY c.id DESC LIMIT 1").one()
    return {"by_status": by_status, "hot": hot, "median": median, "author": author}


# --- recording the app's statements ------------------------------------------------------------------


@contextmanager
def recording(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """Collect every (statement, parameters) the engine sends while the block runs."""
    seen: list[tuple[str, Any]] = []

    def listener(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listener)


def _stub_model() -> Any:
    """Stands in for the classifier in submit_comment: the duplicate check runs after scoring."""
    score = SimpleNamespace(toxicity=0.5, category=None)
    return SimpleNamespace(score=lambda text, explain=False: score, version="bench")


def hot_queries(facts: dict[str, Any]) -> list[tuple[str, Callable[[Session], Any], Callable[[str], bool]]]:
    """(label, service call, which recorded statements to explain) for every hot query."""
    hot = facts["hot"][0]
    author_id, author_article, author_text = facts["author"][:3]

    def page2(session: Session, oldest: bool) -> Any:
        first = comment_service.list_published(session, hot, limit=20, cursor=None, oldest_first=oldest)
        session.rollback()
        return first.next_cursor

    def listing(oldest: bool, second: bool) -> Callable[[Session], Any]:
        def call(session: Session) -> Any:
            cursor = page2(session, oldest) if second else None
            return comment_service.list_published(session, hot, limit=20, cursor=cursor, oldest_first=oldest)
        return call

    def is_page(sql: str) -> bool:
        return "FROM comments" in sql and "LIMIT" in sql and "count(" not in sql

    def is_count(sql: str) -> bool:
        return "count(" in sql and "FROM comments" in sql and "GROUP BY" not in sql

    def submit(session: Session) -> Any:
        new = comment_service.NewComment(author_id=author_id, author_name="Bench", text=author_text)
        try:
            comment_service.submit_comment(session, _stub_model(), Thresholds(0.07, 0.93), author_article, new)
        except comment_service.DuplicateComment:
            session.rollback()

    return [
        ("public listing, newest, first page", listing(False, False), is_page),
        ("public listing, newest, second page (cursor)", listing(False, True),
         lambda sql: is_page(sql) and "comments.id <" in sql),
        ("public listing, oldest, first page", listing(True, False), is_page),
        ("public listing, oldest, second page (cursor)", listing(True, True),
         lambda sql: is_page(sql) and "comments.id >" in sql),
        ("public listing total (count of the article's approved comments)", listing(False, False), is_count),
        ("moderation queue, pending, all articles, by toxicity: total", lambda s: queue.list_queue(
            s, queue="pending", article_id=None, sort="toxicity", limit=20, cursor=None), is_count),
        ("moderation queue, pending, all articles, by toxicity: page", lambda s: queue.list_queue(
            s, queue="pending", article_id=None, sort="toxicity", limit=20, cursor=None), is_page),
        ("moderation queue, pending, one article, by toxicity: total", lambda s: queue.list_queue(
            s, queue="pending", article_id=hot, sort="toxicity", limit=20, cursor=None), is_count),
        ("moderation queue, pending, one article, by toxicity: page", lambda s: queue.list_queue(
            s, queue="pending", article_id=hot, sort="toxicity", limit=20, cursor=None), is_page),
        ("author history counts for a queue page (20 authors)", lambda s: queue.list_queue(
            s, queue="pending", article_id=None, sort="toxicity", limit=20, cursor=None),
         lambda sql: "GROUP BY comments.author_id" in sql),
        (f"author history counts of the most active author ({facts['author'][3]} comments)",
         lambda s: authors.histories(s, {author_id}), lambda sql: "GROUP BY comments.author_id" in sql),
        ("claim 10, pending, all articles (FOR UPDATE SKIP LOCKED on PostgreSQL)", lambda s: queue.claim(
            s, "bench-moderator", limit=10), lambda sql: "claimed_until" in sql and "LIMIT" in sql),
        ("claim 10, pending, one article", lambda s: queue.claim(
            s, "bench-moderator", limit=10, article_id=hot), lambda sql: "claimed_until" in sql and "LIMIT" in sql),
        ("duplicate check of a submission (most active author)", submit, lambda sql: "comments.text =" in sql),
    ]


def record(engine: Engine, call: Callable[[Session], Any], wanted: Callable[[str], bool]) -> tuple[str, Any]:
    """Run the service call and return the last recorded statement that `wanted` picks."""
    with recording(engine) as seen, Session(engine, expire_on_commit=False) as session:
        call(session)
        session.rollback()
    picked = [(sql, params) for sql, params in seen if sql.lstrip().upper().startswith("SELECT") and wanted(sql)]
    if not picked:
        raise RuntimeError("no statement recorded:\n" + "\n".join(sql for sql, _ in seen))
    return picked[-1]


def explain_postgres(engine: Engine, sql: str, params: Any) -> tuple[list[str], float, float]:
    """EXPLAIN (ANALYZE, BUFFERS) twice in a rolled-back transaction; return the warm plan and both times."""
    times, plan = [], []
    with engine.connect() as conn:
        for _ in range(2):
            plan = [row[0] for row in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)]
            times.append(next(float(line.split(":")[1].split()[0]) for line in plan if "Execution Time" in line))
        conn.rollback()
    return plan, times[0], times[1]


def explain_sqlite(engine: Engine, sql: str, params: Any, runs: int = 7) -> tuple[list[str], float, float]:
    """EXPLAIN QUERY PLAN, then the first and the median of `runs` executions in ms."""
    with engine.connect() as conn:
        plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)]
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            conn.exec_driver_sql(sql, params).all()
            times.append((time.perf_counter() - started) * 1000)
        conn.rollback()
    return plan, times[0], statistics.median(times[1:])


def one_line(sql: str) -> str:
    return " ".join(sql.split())


def run(engine: Engine, rows: int) -> None:
    """Fill, describe and explain every hot query on `engine`."""
    fill(engine, rows)
    facts = describe(engine)
    name = engine.dialect.name
    print(f"\n{'=' * 100}\n{name}: {rows} comments, {ARTICLES} articles; by status: "
          + ", ".join(f"{k} {v}" for k, v in sorted(facts["by_status"].items())))
    print(f"hot article {facts['hot'][0]!r}: {facts['hot'][1]} approved comments; median article "
          f"{facts['median'][0]!r}: {facts['median'][1]}; most active author {facts['author'][0]!r}: "
          f"{facts['author'][3]} comments")
    summary = []
    for label, call, wanted in hot_queries(facts):
        sql, params = record(engine, call, wanted)
        if name == "postgresql":
            plan, cold, warm = explain_postgres(engine, sql, params)
        else:
            plan, cold, warm = explain_sqlite(engine, sql, params)
        summary.append((label, cold, warm))
        print(f"\n--- {label}\n{one_line(sql)}\nparameters: {params}")
        print("\n".join(f"    {line}" for line in plan))
        print(f"    => first run {cold:.3f} ms, warm {warm:.3f} ms")
    print(f"\n{name} summary (ms, first run / warm{' median of 6' if name == 'sqlite' else ''}):")
    for label, cold, warm in summary:
        print(f"  {cold:>10.3f} {warm:>10.3f}  {label}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="comments in PostgreSQL (default 1,000,000)")
    parser.add_argument("--sqlite-rows", type=int, default=200_000, help="comments in SQLite (default 200,000)")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="admin connection that may create and drop bench_plans_<pid>")
    args = parser.parse_args()
    started = time.perf_counter()
    if not args.skip_postgres:
        with scratch_postgres(args.postgres, "bench_plans", log) as url:
            migrate(url)
            engine = make_engine(url)
            try:
                run(engine, args.rows)
            finally:
                engine.dispose()
    with tempfile.TemporaryDirectory(prefix="bench-plans-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'plans.db'}"
        migrate(url)
        engine = make_engine(url)
        try:
            run(engine, args.sqlite_rows)
        finally:
            engine.dispose()
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
