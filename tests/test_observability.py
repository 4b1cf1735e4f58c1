"""Request ids, JSON logs without personal data, Prometheus metrics."""

from __future__ import annotations

import json
import logging
import random
import re
import string

import pytest

from moderation.observability import JsonFormatter
from tests.moderation_helpers import submit

SECRET = "Geheimtext von Frau Quittenbaum"


def test_request_id_is_echoed_or_made(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz").headers["X-Request-ID"]
    assert len(made) == 32
    hostile = client.get("/healthz", headers={"X-Request-ID": "x" * 500}).headers["X-Request-ID"]
    assert hostile != "x" * 500 and len(hostile) == 32


def test_logs_are_json_and_carry_no_text_names_or_tokens(client, auth, tokens, caplog):
    caplog.set_level(logging.INFO)
    submit(client, auth, text=SECRET, author_name="Zora Quittenbaum", author="zora-1")
    client.post("/v1/articles/a/comments", headers=auth["backend"], data="{kaputt", content_type="application/json")
    client.get("/v1/articles/a/comments?cursor=Quittenbaum")
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert {"ts", "level", "logger", "event"} <= set(entry)
        for secret in ("Quittenbaum", "Geheimtext", "zora-1", tokens["backend"], tokens["backend"][:12]):
            assert secret not in line
    access = [json.loads(line) for line in lines if '"event": "request"' in line]
    assert {e["status"] for e in access} >= {201, 400}
    assert all("request_id" in e and "duration_ms" in e and "route" in e for e in access)


def test_metrics_endpoint(client, auth):
    submit(client, auth)
    client.get("/v1/articles/artikel-1/comments")
    body = client.get("/metrics").get_data(as_text=True)
    route = "/v1/articles/<article_id:article_id>/comments"
    assert f'moderation_http_requests_total{{endpoint="{route}",method="POST",status="201"}}' in body
    assert "moderation_http_request_duration_seconds_bucket" in body
    assert "moderation_comments_total{status=" in body
    assert "moderation_scoring_duration_seconds_count" in body
    assert 'moderation_queue_size{queue="pending"}' in body
    assert "moderation_model_info{version=" in body


@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING"])
def test_formatter_drops_unknown_extras(level):
    record = logging.LogRecord("x", getattr(logging, level), __file__, 1, "event", None, None)
    record.text = SECRET  # an extra nobody whitelisted
    record.request_id = "r1"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["request_id"] == "r1" and SECRET not in json.dumps(entry)


# Ways a comment's INSERT fails inside the database itself, on either engine: a trigger that refuses it,
# and a unique index the text breaks (PostgreSQL then quotes the stored value in its DETAIL line).
FAILURES = {
    "trigger": {
        "sqlite": ["CREATE TRIGGER refuse_comments BEFORE INSERT ON comments "
                   "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"],
        "postgresql": ["CREATE FUNCTION refuse_comments() RETURNS trigger LANGUAGE plpgsql AS "
                       "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
                       "CREATE TRIGGER refuse_comments BEFORE INSERT ON comments FOR EACH ROW "
                       "EXECUTE FUNCTION refuse_comments()"],
    },
    "unique_text": {
        "sqlite": ["CREATE UNIQUE INDEX test_unique_text ON comments (text)"],
        "postgresql": ["CREATE UNIQUE INDEX test_unique_text ON comments (text)"],
    },
}
UNDO = ["DROP TRIGGER IF EXISTS refuse_comments ON comments", "DROP FUNCTION IF EXISTS refuse_comments()",
        "DROP INDEX IF EXISTS test_unique_text"]


@pytest.fixture
def failing_inserts(app):
    """Install a database-side failure for comment INSERTs (PostgreSQL's test database outlives the test)."""
    engine = app.extensions["moderation.db"][0]

    def install(kind: str) -> None:
        with engine.begin() as conn:
            for statement in FAILURES[kind][engine.dialect.name]:
                conn.exec_driver_sql(statement)

    yield install
    with engine.begin() as conn:
        for statement in UNDO if engine.dialect.name == "postgresql" else UNDO[2:]:
            conn.exec_driver_sql(statement)
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS refuse_comments")


@pytest.mark.parametrize("kind", list(FAILURES))
def test_database_errors_log_no_text_names_or_ids(client, auth, caplog, failing_inserts, kind):
    if kind == "unique_text":  # the stored comment whose text the next one repeats
        submit(client, auth, text=SECRET, author_name="Zora Quittenbaum", author="zora-1")
    failing_inserts(kind)
    caplog.set_level(logging.INFO)
    caplog.clear()
    response = client.post("/v1/articles/artikel-1/comments", headers=auth["backend"],
                           json={"author_id": "zora-2", "author_name": "Zora Quittenbaum", "text": SECRET})
    assert response.status_code == 500 and response.json["error"]["code"] == "internal_error"
    formatter = JsonFormatter()
    errors = [record for record in caplog.records if record.getMessage() == "database_error"]
    assert len(errors) == 1 and errors[0].exc_info  # logged, with its traceback, for the operator
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert "comments" in logged  # the statement and table stay visible
    for secret in ("Quittenbaum", "Geheimtext", "zora-1", "zora-2"):
        assert secret not in logged, secret


def _http_series(client) -> set[tuple[str, str, str]]:
    """The (metric, method, endpoint) label sets of the HTTP metrics /metrics shows."""
    body = client.get("/metrics").get_data(as_text=True)
    found = set()
    for name, labels in re.findall(r"^(moderation_http_request\w*)\{([^}]*)\}", body, re.M):
        values = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels))
        found.add((name, values["method"], values["endpoint"]))
    return found


def test_random_methods_and_paths_add_a_bounded_number_of_metric_series(client):
    rng = random.Random(18)
    letters = string.ascii_uppercase
    client.get("/healthz")
    before = _http_series(client)
    for i in range(200):
        method = "".join(rng.choice(letters) for _ in range(rng.randint(3, 12)))
        path = "/" + "".join(rng.choice(string.ascii_lowercase + "/._-") for _ in range(rng.randint(1, 40)))
        assert client.open(path, method=method).status_code in (404, 405)
        assert client.open(f"/v1/articles/a-{i}/comments", method=method).status_code == 405
        assert client.get(f"{path}-{i}").status_code == 404
    added = _http_series(client) - before
    assert {method for _, method, _ in added} <= {"other", "GET"}
    assert {endpoint for _, _, endpoint in added} <= {"unmatched"}
    assert len({(method, endpoint) for _, method, endpoint in added}) <= 2
