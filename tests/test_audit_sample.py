"""The random audit sample of the model's own decisions, and the unbiased leak estimate it gives."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from moderation.extensions import db
from moderation.models import APPROVED, PENDING, REJECTED, Comment
from moderation.services import audit
from moderation.services import queue as queue_service
from moderation.services.routing import AUDIT_SAMPLE, Rules, Thresholds, audit_draw, route, seed_audit_sampling
from tests.conftest import FRIENDLY, TOXIC
from tests.moderation_helpers import submit

T = Thresholds(approve=0.3, reject=0.8, decision=0.5, audit_rate=0.1)


@pytest.mark.parametrize(("toxicity", "rules", "draw", "status", "reasons", "auto", "audited"), [
    # The model publishes or rejects alone: drawn below the rate, the comment waits as an audit sample.
    (0.1, Rules(), 0.05, PENDING, (AUDIT_SAMPLE,), APPROVED, True),
    (0.1, Rules(), 0.1, APPROVED, (), APPROVED, False),
    (0.1, Rules(), 0.99, APPROVED, (), APPROVED, False),
    (0.9, Rules(), 0.05, PENDING, (AUDIT_SAMPLE,), REJECTED, True),
    (0.9, Rules(), 0.5, REJECTED, ("toxicity_high",), REJECTED, False),
    (0.9, Rules(premoderation=True), 0.05, PENDING, (AUDIT_SAMPLE,), REJECTED, True),
    # Rules decide, not the model: never sampled.
    (0.1, Rules(banned_terms=("x",)), 0.0, REJECTED, ("banned_term",), None, False),
    (0.9, Rules(author_banned=True), 0.0, REJECTED, ("author_banned", "toxicity_high"), None, False),
    # Held anyway: nothing to sample.
    (0.5, Rules(), 0.0, PENDING, ("toxicity_likely",), None, False),
    (0.1, Rules(premoderation=True), 0.0, PENDING, ("premoderation",), None, False),
    (0.1, Rules(suspect_terms=("x",)), 0.0, PENDING, ("suspect_term",), None, False),
])
def test_route_samples_only_the_models_own_decisions(toxicity, rules, draw, status, reasons, auto, audited):
    routing = route(toxicity, T, rules, draw=draw)
    assert (routing.status, routing.reasons, routing.auto, routing.audited) == (status, reasons, auto, audited)


def test_no_audit_rate_samples_nothing():
    assert route(0.1, Thresholds(approve=0.3, reject=0.8), draw=0.0).status == APPROVED


def test_seeded_draws_repeat():
    seed_audit_sampling(7)
    first = [audit_draw() for _ in range(5)]
    seed_audit_sampling(7)
    assert [audit_draw() for _ in range(5)] == first
    seed_audit_sampling(None)


def within_binomial_bound(k: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(k - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("rate", [0.02, 0.2])
def test_audit_rate_over_many_submissions(app, rate):
    """Through the intake service: the audited share is the rate, within 4 binomial standard deviations."""
    from moderation.extensions import classifier
    from moderation.services.comments import NewComment, submit_comment

    seed_audit_sampling(12345)
    n = 1500
    with app.app_context():
        model, thresholds = classifier.pair(db.session)
        thresholds = Thresholds(approve=1.0, reject=1.0, decision=None, audit_rate=rate)  # the model publishes all
        for i in range(n):
            submit_comment(db.session, model, thresholds, "stichprobe",
                           NewComment(author_id=f"l{i}", author_name="L", text=f"{FRIENDLY[i % 7]} ({i})"))
        rows = db.session.execute(select(Comment.status, Comment.reasons, Comment.auto_route, Comment.audited)).all()
    seed_audit_sampling(None)
    audited = [row for row in rows if row.audited]
    assert within_binomial_bound(len(audited), n, rate), len(audited)
    assert {(row.status, tuple(row.reasons), row.auto_route) for row in audited} == {
        (PENDING, (AUDIT_SAMPLE,), APPROVED)}
    assert {(row.status, row.auto_route) for row in rows if not row.audited} == {(APPROVED, APPROVED)}


def test_submission_stores_what_the_model_did(client, auth):
    published = submit(client, auth, text=FRIENDLY[0], author="a")
    rejected = submit(client, auth, text=TOXIC[0], author="b")
    with client.application.app_context():
        stored = {c.id: (c.status, c.auto_route, c.audited) for c in db.session.scalars(select(Comment))}
    assert stored[published["id"]] == (APPROVED, APPROVED, False)
    assert stored[rejected["id"]] == (REJECTED, REJECTED, False)


def test_audited_comments_wait_as_stichprobe_on_the_api_and_the_page(tokens, auth, make_app, app_config):
    sampled_app = make_app({**app_config, "AUDIT_RATE": 1.0})
    sampled = sampled_app.test_client()
    comment = submit(sampled, auth, text=FRIENDLY[0], author="a")
    assert (comment["status"], comment["reasons"]) == (PENDING, [AUDIT_SAMPLE])
    queue = sampled.get("/v1/moderation/queue", headers=auth["moderator"]).json["comments"]
    assert [(c["id"], c["reasons"]) for c in queue] == [(comment["id"], [AUDIT_SAMPLE])]
    from tests.web.conftest import sign_in

    assert sign_in(sampled, tokens["moderator"]).status_code == 302
    page = sampled.get("/moderation/")
    assert page.status_code == 200 and "Stichprobe" in page.text


def seed_audited(app, outcomes: list[tuple[str, str, str, datetime]]) -> None:
    """Store audited comments: (what the model would have done, the moderator's decision or None, version, time)."""
    from moderation.extensions import classifier
    from moderation.services.comments import NewComment, submit_comment

    with app.app_context():
        model, _ = classifier.pair(db.session)
        always = Thresholds(approve=1.0, reject=1.0, audit_rate=1.0)
        for i, (auto, decision, version, when) in enumerate(outcomes):
            text = f"{FRIENDLY[i % 7]} ({i})" if auto == APPROVED else f"{TOXIC[i % 6]} ({i})"
            thresholds = always if auto == APPROVED else Thresholds(approve=0.0, reject=0.0, audit_rate=1.0)
            stored = submit_comment(db.session, model, thresholds, "a", NewComment(f"l{i}", "L", text)).comment
            db.session.execute(update(Comment).where(Comment.id == stored.id)
                               .values(model_version=version, created_at=when))
            db.session.commit()
            if decision is not None:
                queue_service.decide(db.session, stored.id, "mod", decision=decision)


MONDAY = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
MONDAY -= timedelta(days=MONDAY.weekday())


def test_estimates_count_only_decided_audit_samples_with_clopper_pearson_intervals(app, client, auth):
    older = MONDAY - timedelta(days=7)
    outcomes = (
        [(APPROVED, "approve", "v1", older)] * 18 + [(APPROVED, "reject", "v1", older)] * 2
        + [(APPROVED, "approve", "v2", MONDAY)] * 9 + [(APPROVED, "reject", "v2", MONDAY)] * 1
        + [(APPROVED, None, "v2", MONDAY)] * 3
        + [(REJECTED, "reject", "v2", MONDAY)] * 4 + [(REJECTED, "approve", "v2", MONDAY)] * 1
    )
    seed_audited(app, outcomes)
    submit(client, auth, text=FRIENDLY[0], author="not-audited")  # published without audit: never counted
    with app.app_context():
        result = audit.audit_estimates(db.session)
    overall = result["overall"]
    assert (overall["sampled"], overall["pending"]) == (38, 3)
    assert overall["leak"] == {"decided": 30, "removed": 3, "share": 0.1, "low": 0.0211, "high": 0.2653}
    assert overall["reject_precision"] == {"decided": 5, "removed": 4, "share": 0.8, "low": 0.2836, "high": 0.9949}
    versions = {row["model_version"]: row for row in result["by_model_version"]}
    assert versions["v1"]["leak"]["share"] == 0.1 and versions["v1"]["leak"]["decided"] == 20
    assert versions["v2"]["leak"]["share"] == 0.1 and versions["v2"]["leak"]["decided"] == 10
    assert versions["v1"]["reject_precision"] == {"decided": 0, "removed": 0, "share": None, "low": None,
                                                  "high": None}
    year, week, _ = MONDAY.isocalendar()
    before_year, before_week, _ = older.isocalendar()
    weeks = {row["week"]: row for row in result["by_week"]}
    assert set(weeks) == {f"{year}-W{week:02d}", f"{before_year}-W{before_week:02d}"}
    assert weeks[f"{year}-W{week:02d}"]["leak"]["decided"] == 10

    stats = client.get("/v1/moderation/stats", headers=auth["moderator"]).json["audit"]
    assert stats["overall"] == overall and stats["budget"] == {"max_leak": 0.02, "min_reject_precision": 0.95,
                                                               "audit_rate": 0.0}
    assert [row["model_version"] for row in stats["by_model_version"]] == ["v1", "v2"]


def test_the_estimate_is_unbiased_on_a_simulated_stream(app):
    """A stream where 5 % of what the model publishes would have been removed: the audit sample, decided by the
    truth, finds about 5 %, and its 95 % interval covers it."""
    import random

    truth = random.Random(3)
    outcomes = [(APPROVED, "reject" if truth.random() < 0.05 else "approve", "v", MONDAY) for _ in range(400)]
    seed_audited(app, outcomes)
    with app.app_context():
        leak = audit.audit_estimates(db.session)["overall"]["leak"]
    assert leak["decided"] == 400
    assert leak["low"] <= 0.05 <= leak["high"] and leak["high"] - leak["low"] < 0.06


def test_dashboard_shows_the_measured_leak_next_to_the_budget(app, client, tokens):
    from tests.web.conftest import sign_in

    seed_audited(app, [(APPROVED, "approve", "v1", MONDAY)] * 9 + [(APPROVED, "reject", "v1", MONDAY)])
    assert sign_in(client, tokens["moderator"]).status_code == 302
    page = client.get("/moderation/dashboard")
    assert page.status_code == 200
    text = page.text
    assert "Gemessene Fehlerquote der Automatik (Stichprobe)" in text and "Budget 2,0 %" in text
    assert "10,0 %" in text and "1/10" in text and "Modell v1" in text and "noch unsicher" in text
