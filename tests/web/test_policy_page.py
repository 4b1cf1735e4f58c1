"""The policy dial page: the curve, the German form (admins only), validation, CSRF and the audit trail."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import select

from moderation.extensions import db
from moderation.models import SettingChange
from moderation.services import policy as policy_service
from moderation.web.security import CONTENT_SECURITY_POLICY
from tests.web.conftest import csrf_from, session_csrf, sign_in

PAGE = "/moderation/policy"
VALID = {"max_leak": "5", "min_reject_precision": "95", "expected_removal_rate": "10", "audit_rate": "2,5"}


@pytest.fixture
def admin(client, tokens):
    assert sign_in(client, tokens["admin"]).status_code == 302
    return client


@pytest.fixture
def calibrated_pages(app_config, calibrated_model_dir, make_app, tokens):
    """A signed-in admin on an app whose thresholds follow the policy (no manual thresholds)."""
    config = {key: value for key, value in app_config.items() if key not in ("APPROVE_THRESHOLD", "REJECT_THRESHOLD")}
    client = make_app({**config, "MODEL_DIR": str(calibrated_model_dir)}).test_client()
    assert sign_in(client, tokens["admin"]).status_code == 302
    return client


def stored_policy(app):
    with app.app_context():
        return policy_service.current_policy(db.session, app.config)


def test_admin_sees_the_curve_and_the_form_in_german(calibrated_pages):
    page = calibrated_pages.get(PAGE)
    assert page.status_code == 200 and 'lang="de"' in page.text
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    text = page.text
    assert "Automatik-Richtlinie" in text and "Automatisierung je erlaubter Fehlerquote" in text
    # The curve is inline SVG drawn on the server: a path, the four marked budgets, no script.
    assert '<path class="curve" d="M' in text and text.count('<g class="marker') == 4
    assert "<script" not in text and "style=" not in text
    for budget in ("<td>1 %</td>", "<td>2 %</td>", "<td>3 %</td>", "<td>5 %</td>"):
        assert budget in text
    assert 'id="fig-approve">0,322<' in text and "aus der Richtlinie" in text
    assert 'name="max_leak"' in text and 'value="2"' in text and csrf_from(text)
    assert "Richtlinie speichern" in text and "Noch keine Änderung" in text


def test_moderators_read_but_cannot_change(app, moderator, count_rows):
    page = moderator.get(PAGE)
    assert page.status_code == 200
    assert "Nur Administratoren können die Richtlinie ändern." in page.text
    assert 'class="policy-form"' not in page.text
    before = count_rows()
    refused = moderator.post(PAGE, data={**VALID, "csrf_token": session_csrf(moderator)})
    assert refused.status_code == 403 and "Kein Zugriff" in refused.text
    assert count_rows() == before and stored_policy(app).source == "environment"


def test_admin_changes_the_policy_with_an_audit_row(app, admin):
    response = admin.post(PAGE, data={**VALID, "csrf_token": session_csrf(admin)})
    assert response.status_code == 302 and response.location.endswith(PAGE)
    stored = stored_policy(app)
    assert stored.source == "database" and stored.updated_by == "test-admin"
    assert stored.policy.as_dict() == {"max_leak": 0.05, "min_reject_precision": 0.95,
                                       "expected_removal_rate": 0.1, "audit_rate": 0.025}
    with app.app_context():
        change = db.session.scalars(select(SettingChange)).one()
        assert (change.changed_by, change.old_value["max_leak"], change.new_value["max_leak"]) == (
            "test-admin", 0.02, 0.05)
    page = admin.get(PAGE)
    assert "Die Richtlinie ist gespeichert" in page.text
    assert "test-admin" in page.text and "Fehlerquote 2 %" in page.text and "Fehlerquote 5 %" in page.text
    assert 'value="2,5"' in page.text


@pytest.mark.parametrize(("field", "value", "message"), [
    ("max_leak", "", "Bitte eine Zahl in Prozent angeben"),
    ("max_leak", "zwei", "Bitte eine Zahl in Prozent angeben"),
    ("max_leak", "nan", "Bitte eine Zahl in Prozent angeben"),
    ("max_leak", "0", "größer als 0 % und kleiner als 100 %"),
    ("max_leak", "100", "größer als 0 % und kleiner als 100 %"),
    ("min_reject_precision", "101", "größer als 0 % und höchstens 100 %"),
    ("expected_removal_rate", "-5", "größer als 0 % und kleiner als 100 %"),
    ("audit_rate", "150 %", "mindestens 0 % und höchstens 100 %"),
])
def test_bad_values_are_refused_in_german_and_change_nothing(app, admin, count_rows, field, value, message):
    before = count_rows()
    response = admin.post(PAGE, data={**VALID, field: value, "csrf_token": session_csrf(admin)})
    assert response.status_code == 422
    assert "Die Richtlinie wurde nicht gespeichert" in response.text and message in response.text
    assert 'aria-invalid="true"' in response.text
    assert count_rows() == before and stored_policy(app).source == "environment"


@pytest.mark.parametrize("csrf", [None, "falsch"])
def test_change_without_csrf_is_refused(app, admin, count_rows, csrf):
    before = count_rows()
    data = {**VALID, **({"csrf_token": csrf} if csrf else {})}
    response = admin.post(PAGE, data=data)
    assert response.status_code == 400 and "Sicherheitsmerkmal" in response.text
    assert count_rows() == before and stored_policy(app).source == "environment"


def test_navigation_links_the_policy(moderator):
    page = moderator.get("/moderation/dashboard")
    assert 'href="/moderation/policy"' in page.text and ">Richtlinie</a>" in page.text


def test_page_needs_sign_in(client):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/moderation/login" in response.location


def _decided(app, removed: int, kept: int, *, audited: tuple[int, float] | None = None) -> None:
    """Have a moderator decide held comments (and `audited` = (removed ones, rate) drawn into the audit sample)."""
    from moderation.models import Comment
    from moderation.services import articles, queue
    from moderation.services.comments import NewComment, submit_comment
    from moderation.services.routing import Thresholds

    hold_all = Thresholds(approve=0.0, reject=1.01, decision=0.5)
    rows = [("reject", False)] * removed + [("approve", False)] * kept
    if audited:
        rows += [("reject", True)] * audited[0]
    with app.app_context():
        model = app.extensions["moderation.classifier"].serving.model
        articles.update_settings(db.session, "leserbriefe", comments_open=True, premoderation=False)
        for n, (decision, sampled) in enumerate(rows):
            comment = submit_comment(db.session, model, hold_all, "leserbriefe",
                                     NewComment(author_id=f"leser-{n}", author_name="L", text=f"Kommentar {n}")).comment
            if sampled:  # drawn into the audit sample at this rate: it stands for 1 / rate comments
                comment = db.session.get(Comment, comment.id)
                comment.audited, comment.audit_rate, comment.reasons = True, audited[1], ["audit_sample"]
                db.session.commit()
            queue.decide(db.session, comment.id, "anna", decision=decision)


def test_the_page_shows_the_measured_removal_rate_beside_the_expected_one(app_config, calibrated_model_dir, make_app,
                                                                          tokens):
    """No retrain yet: the thresholds use the expected rate; the page says so and shows what the decisions measure,
    weighted as retrain weighs them (an audited comment at a 50 % rate counts twice)."""
    config = {key: value for key, value in app_config.items() if key not in ("APPROVE_THRESHOLD", "REJECT_THRESHOLD")}
    app = make_app({**config, "MODEL_DIR": str(calibrated_model_dir)})
    client = app.test_client()
    assert sign_in(client, tokens["admin"]).status_code == 302
    before = client.get(PAGE).text
    assert 'id="rate-measured">–<' in before and "noch keine auswertbaren Entscheidungen" in before
    assert 'id="rate-expected">10,0 %<' in before and "aus <code>MODERATION_EXPECTED_REMOVAL_RATE</code>" in before
    assert "In Gebrauch: die erwartete Löschquote von 10,0 %." in before
    assert "erwartet bei 10,0 % Löschquote (Vorgabe)" in before

    _decided(app, removed=2, kept=6, audited=(1, 0.5))  # (2 + 2) / (8 + 2) removed
    page = client.get(PAGE).text
    assert 'id="rate-measured">40,0 %<' in page and "aus 9 auswertbaren Entscheidungen" in page
    assert "In Gebrauch: die erwartete Löschquote von 10,0 %." in page  # until a retrain measures it
    assert "mindestens 100, davon je 20 entfernte und behaltene" in page


def test_a_retrained_model_calibrates_at_the_measured_rate_and_the_page_says_so(app_config, calibrated_model_dir,
                                                                               make_app, tokens, tmp_path):
    from moderation.ml.model import read_metadata, write_metadata

    retrained = tmp_path / "retrained"
    shutil.copytree(calibrated_model_dir, retrained)
    metadata = read_metadata(retrained)
    metadata["calibration"]["measured_removal_rate"] = 0.25  # as retrain records it
    write_metadata(retrained, metadata)
    config = {key: value for key, value in app_config.items() if key not in ("APPROVE_THRESHOLD", "REJECT_THRESHOLD")}
    app = make_app({**config, "MODEL_DIR": str(retrained)})
    client = app.test_client()
    assert sign_in(client, tokens["admin"]).status_code == 302
    assert client.post(PAGE, data={**VALID, "expected_removal_rate": "8",
                                   "csrf_token": session_csrf(client)}).status_code == 302
    page = client.get(PAGE).text
    assert "In Gebrauch: die gemessene Löschquote von 25,0 %</strong>" in page
    assert 'id="rate-expected">8,0 %<' in page and "in dieser Richtlinie gespeichert" in page
    assert "erwartet bei 25,0 % Löschquote (gemessen)" in page
    assert "gewichtet auf die Löschquote von 25,0 % (gemessen)" in page
