"""The moderator pages and the demo article through the Flask test client."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select

from moderation import web
from moderation.extensions import db
from moderation.models import APPROVED, PENDING, REJECTED, Comment, ModerationAction
from moderation.services import privacy, reports
from moderation.services import queue as queue_service
from moderation.services.keys import revoke_key
from tests.web.conftest import csrf_from, session_csrf, sign_in

FETCH = {"X-Requested-With": "fetch"}


def comment_row(app, comment_id: int) -> tuple[Comment, list[ModerationAction]]:
    with app.app_context():
        comment = db.session.get(Comment, comment_id)
        actions = list(db.session.scalars(select(ModerationAction).where(ModerationAction.comment_id == comment_id)
                                          .order_by(ModerationAction.id)))
        return comment, actions


# --- sign-in ---------------------------------------------------------------------------------------------------------

def test_login_page_is_german_with_csrf_field(client):
    page = client.get("/moderation/login")
    assert page.status_code == 200
    assert "Anmelden" in page.text and 'lang="de"' in page.text
    assert csrf_from(page.text)


def test_queue_needs_sign_in(client):
    response = client.get("/moderation/?queue=reported")
    assert response.status_code == 302
    assert response.location.startswith("/moderation/login?next=")


@pytest.mark.parametrize("case, status, message", [
    ("unknown", 401, "Unbekannter oder widerrufener Schlüssel"),
    ("backend", 403, "darf nicht moderieren"),
    ("empty", 401, "Unbekannter oder widerrufener Schlüssel"),
    ("no_csrf", 400, "Sicherheitsmerkmal"),
    ("bad_csrf", 400, "Sicherheitsmerkmal"),
    ("non_ascii_csrf", 400, "Sicherheitsmerkmal"),
])
def test_login_refusals_change_nothing(client, tokens, count_rows, case, status, message):
    before = count_rows()
    token = csrf_from(client.get("/moderation/login").text)
    data = {
        "unknown": {"api_key": "mk_" + "x" * 43, "csrf_token": token},
        "backend": {"api_key": tokens["backend"], "csrf_token": token},
        "empty": {"api_key": "  ", "csrf_token": token},
        "no_csrf": {"api_key": tokens["moderator"]},
        "bad_csrf": {"api_key": tokens["moderator"], "csrf_token": token[:-2] + "xx"},
        "non_ascii_csrf": {"api_key": tokens["moderator"], "csrf_token": "ä" * len(token)},
    }[case]
    response = client.post("/moderation/login", data=data)
    assert response.status_code == status
    assert response.content_type.startswith("text/html")
    assert message in response.text
    assert count_rows() == before
    with client.session_transaction() as session:
        assert "sid" not in session and "key_id" not in session
    assert client.get("/moderation/").status_code == 302


def test_login_sets_session_and_rotates_csrf(client, tokens):
    old = csrf_from(client.get("/moderation/login").text)
    response = sign_in(client, tokens["admin"])
    assert response.status_code == 302 and response.location == "/moderation/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    with client.session_transaction() as session:
        assert isinstance(session["sid"], str) and "key_id" not in session and "key_name" not in session
        assert session["csrf_token"] != old
    page = client.get("/moderation/")
    assert page.status_code == 200 and "test-admin" in page.text


def test_login_redirects_only_to_own_pages(client, tokens):
    token = csrf_from(client.get("/moderation/login").text)
    for target, expected in [("/moderation/dashboard", "/moderation/dashboard"),
                             ("https://evil.example/moderation/", "/moderation/"),
                             ("//evil.example/moderation/", "/moderation/")]:
        response = client.post("/moderation/login", data={"api_key": tokens["moderator"], "csrf_token": token,
                                                          "next": target})
        assert response.location == expected
        token = session_csrf(client)


def test_logout_needs_csrf_and_signs_out(moderator):
    assert moderator.post("/moderation/logout").status_code == 400
    assert moderator.get("/moderation/").status_code == 200
    response = moderator.post("/moderation/logout", data={"csrf_token": session_csrf(moderator)})
    assert response.status_code == 302
    assert moderator.get("/moderation/").status_code == 302


def test_revoked_key_is_signed_out_on_next_request(app, moderator):
    with app.app_context():
        revoke_key(db.session, "test-moderator")
        db.session.commit()
    response = moderator.get("/moderation/")
    assert response.status_code == 302 and "/moderation/login" in response.location
    assert "Schlüssel ist nicht mehr gültig" in moderator.get(response.location).text
    assert moderator.post("/moderation/comments/1/decision", data={"decision": "approve"},
                          headers={**FETCH, "X-CSRF-Token": session_csrf(moderator)}).status_code == 401


# --- queue -----------------------------------------------------------------------------------------------------------

def test_queue_escapes_comment_text_and_shows_german_labels(moderator, seed):
    seed("Interessant <script>alert(1)</script> & <b>fett</b>, du dummer Idiot", name="<i>Mallory</i>")
    page = moderator.get("/moderation/")
    assert page.status_code == 200
    # Only the words that carried it over the threshold are marked (see tests/ml/test_ml_highlights.py): for the tiny
    # model "dummer" and "Idiot", not "du".
    assert ("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;fett&lt;/b&gt;, du <mark title=\"Gewicht 0,"
            in page.text)
    assert ">dummer</mark>" in page.text and ">Idiot</mark>" in page.text and "Beleidigung" in page.text
    assert "<script>alert(1)" not in page.text and "<b>fett" not in page.text
    assert "&lt;i&gt;Mallory&lt;/i&gt;" in page.text
    assert "Vorab-Moderation" in page.text and "a-1" in page.text
    assert 'id="shortcut-hint"' in page.text and 'id="shortcut-help"' in page.text
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'; script-src 'self'")
    assert page.headers["Cache-Control"] == "no-store"


def test_queue_shows_history_reports_and_filters(app, moderator, seed):
    seed("Ich finde, die Gemeinde sollte mehr Radwege bauen.", article="rad-1", author="leser-7")
    seed("Danke für den ausgewogenen Artikel, sehr informativ.", article="rad-3", author="leser-7",
         premoderation=False)
    refused = seed("Die Grafik zur Inflation hat mir sehr geholfen.", article="rad-3", author="leser-7")
    reported = seed("Schöner Bericht über das Stadtfest.", article="rad-2", author="leser-8", premoderation=False)
    with app.app_context():
        queue_service.decide(db.session, refused, "bernd", decision="reject")
        for i, reason in enumerate(["insult", "insult", "spam"]):
            reports.report_comment(db.session, reported, reporter_id=f"r{i}", reason=reason, note=None, threshold=3)
    pending = moderator.get("/moderation/?queue=pending&article=rad-1&sort=oldest")
    assert "rad-1" in pending.text and "Radwege" in pending.text and "Stadtfest" not in pending.text
    assert "1 freigegeben · 1 abgelehnt" in pending.text
    tab = moderator.get("/moderation/?queue=reported")
    assert "Stadtfest" in tab.text and "3 Meldungen" in tab.text and "Radwege" not in tab.text
    assert "Beleidigung (2), Spam (1)" in tab.text and "Gemeldet" in tab.text
    bad = moderator.get("/moderation/?article=%3Cx%3E&sort=nonsense&queue=nope")
    assert bad.status_code == 200 and "Ungültige Artikel-ID" in bad.text


def test_empty_queue_says_so(moderator):
    page = moderator.get("/moderation/")
    assert "Keine Kommentare in dieser Warteschlange" in page.text
    assert 'id="empty" hidden' not in page.text


def test_queue_pages_with_cursor(moderator, seed):
    for i in range(23):
        seed(f"Kommentar Nummer {i} zur Sitzung.", author=f"leser-{i}")
    first = moderator.get("/moderation/?sort=oldest")
    assert first.text.count('class="entry"') == 20 and "Nächste Seite" in first.text
    next_url = re.search(r'href="([^"]*cursor=[^"]*)"', first.text).group(1)
    second = moderator.get(html.unescape(next_url))
    assert second.text.count('class="entry"') == 3 and "Zum Anfang" in second.text
    assert moderator.get("/moderation/?cursor=kaputt").status_code == 422


@pytest.mark.parametrize("decision, status", [("approve", APPROVED), ("reject", REJECTED)])
def test_form_decision_writes_audit_row_with_key_name(app, moderator, seed, decision, status):
    comment_id = seed("Wann wird die Brücke endlich saniert?")
    response = moderator.post(f"/moderation/comments/{comment_id}/decision", data={
        "decision": decision, "csrf_token": session_csrf(moderator), "next": "/moderation/?queue=pending"})
    assert response.status_code == 302 and response.location == "/moderation/?queue=pending"
    comment, actions = comment_row(app, comment_id)
    assert comment.status == status and comment.decided_by == "test-moderator"
    assert [(a.moderator, a.to_status) for a in actions][-1] == ("test-moderator", status)
    page = moderator.get(response.location)
    assert f"Kommentar {comment_id} {'freigegeben' if decision == 'approve' else 'abgelehnt'}." in page.text


def test_fetch_decision_answers_json(app, moderator, seed):
    comment_id = seed("Danke für den ausgewogenen Artikel.")
    response = moderator.post(f"/moderation/comments/{comment_id}/decision", data={"decision": "approve"},
                              headers={**FETCH, "X-CSRF-Token": session_csrf(moderator)})
    assert response.status_code == 200
    body = response.json
    assert {key: body[key] for key in ("id", "status", "message")} == {
        "id": comment_id, "status": "approved", "message": f"Kommentar {comment_id} freigegeben."}
    assert body["undo_url"] == f"/moderation/actions/{body['action_id']}/reversal"
    assert body["counts"] == {"pending": 0, "reported": 0}


@pytest.mark.parametrize("data, headers", [
    ({"decision": "approve"}, {}),
    ({"decision": "approve", "csrf_token": "falsch"}, {}),
    ({"decision": "approve"}, {**FETCH, "X-CSRF-Token": "falsch"}),
])
def test_decision_without_csrf_is_refused(app, moderator, seed, count_rows, data, headers):
    comment_id = seed("Interessante Recherche.")
    before = count_rows()
    response = moderator.post(f"/moderation/comments/{comment_id}/decision", data=data, headers=headers)
    assert response.status_code == 400
    assert "Sicherheitsmerkmal" in (response.json["message"] if headers else response.text)
    assert count_rows() == before
    assert comment_row(app, comment_id)[0].status == PENDING


def test_bad_decision_value_is_400_in_german(moderator, seed):
    comment_id = seed("Interessante Recherche.")
    response = moderator.post(f"/moderation/comments/{comment_id}/decision",
                              data={"decision": "delete", "csrf_token": session_csrf(moderator)})
    assert response.status_code == 400 and "Ungültige Anfrage" in response.text


def test_conflict_is_rendered_in_german(app, moderator, seed):
    comment_id = seed("Die Grafik zur Inflation hat mir geholfen.")
    with app.app_context():
        queue_service.decide(db.session, comment_id, "bernd", decision="reject")
    form = moderator.post(f"/moderation/comments/{comment_id}/decision",
                          data={"decision": "approve", "csrf_token": session_csrf(moderator)})
    assert form.status_code == 409 and form.content_type.startswith("text/html")
    assert "Konflikt" in form.text and "von jemand anderem entschieden" in form.text
    script = moderator.post(f"/moderation/comments/{comment_id}/decision", data={"decision": "approve"},
                            headers={**FETCH, "X-CSRF-Token": session_csrf(moderator)})
    assert script.status_code == 409 and "von jemand anderem entschieden" in script.json["message"]
    comment, actions = comment_row(app, comment_id)
    assert comment.status == REJECTED and actions[-1].moderator == "bernd"


def test_an_erased_comment_cannot_be_approved_from_the_page(app, moderator, seed, count_rows):
    comment_id = seed("Mein Nachbar Herbert ist ein Depp.", author="zora-77")
    with app.app_context():
        queue_service.decide(db.session, comment_id, "test-moderator", decision="approve")
        privacy.erase_author(db.session, "zora-77", admin="test-admin")
    before = count_rows()
    form = moderator.post(f"/moderation/comments/{comment_id}/decision",
                          data={"decision": "approve", "csrf_token": session_csrf(moderator)})
    assert form.status_code == 409 and form.content_type.startswith("text/html")
    assert "auf Wunsch seines Autors gelöscht" in form.text
    script = moderator.post(f"/moderation/comments/{comment_id}/decision", data={"decision": "approve"},
                            headers={**FETCH, "X-CSRF-Token": session_csrf(moderator)})
    assert script.status_code == 409 and "gelöscht" in script.json["message"]
    assert count_rows() == before
    comment, _ = comment_row(app, comment_id)
    assert comment.status == REJECTED and comment.text == ""


def test_unknown_comment_is_german_404(moderator):
    response = moderator.post("/moderation/comments/999/decision",
                              data={"decision": "approve", "csrf_token": session_csrf(moderator)})
    assert response.status_code == 404 and "Seite nicht gefunden" in response.text


# --- dashboard -------------------------------------------------------------------------------------------------------

def test_dashboard_shows_figures_and_chart(app, moderator, seed):
    held = [seed(f"Frage {i} zur Brücke?", author=f"l{i}") for i in range(3)]
    seed("Danke für den ausgewogenen Bericht, sehr informativ.", premoderation=False)  # approved by the model
    with app.app_context():
        queue_service.decide(db.session, held[0], "test-moderator", decision="approve")
    page = moderator.get("/moderation/dashboard")
    assert page.status_code == 200
    assert '<span class="figure-value" id="fig-pending">2</span>' in page.text
    assert '<span class="figure-value" id="fig-automation">25,0 %</span>' in page.text
    assert "1 von 4 Kommentaren ohne Moderation entschieden" in page.text
    assert "<svg" in page.text and 'class="s-approved-mod"' in page.text
    for legend in ("Automatisch freigegeben", "Von Moderation abgelehnt", "Wartet auf Prüfung"):
        assert legend in page.text


# --- errors ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/moderation/gibts-nicht", "/moderation/%3Cscript%3E"])
def test_unknown_pages_are_german_html(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.content_type.startswith("text/html") and "Seite nicht gefunden" in response.text
    assert "<script>" not in response.text


def test_api_errors_stay_json(client):
    response = client.get("/v1/comments/999")
    assert response.status_code == 401 and response.json["error"]["code"] == "unauthorized"
    assert client.get("/v1/nope").json["error"]["code"] == "not_found"


def test_init_app_is_idempotent(app):
    web.init_app(app)
    assert [name for name in app.blueprints if name in ("moderator_pages", "demo")] == ["moderator_pages"]
