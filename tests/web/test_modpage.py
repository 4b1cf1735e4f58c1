"""The queue page a newsroom expects: undo, the "Entschieden" tab, local times, live counts, honest highlights."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from moderation.config import ConfigError, load_config
from moderation.extensions import db
from moderation.models import PENDING, REJECTED, Article, Comment, ModerationAction
from moderation.services import articles
from moderation.services import queue as queue_service
from moderation.services.keys import create_key
from tests.conftest import ROOT
from tests.web.conftest import session_csrf, sign_in

FETCH = {"X-Requested-With": "fetch"}
HARMLESS = "Wann wird die Brücke in unserer Stadt endlich saniert?"
INSULT = "Du bist ein dummer Idiot und solltest die Klappe halten."


def post(client, url: str, **data):
    return client.post(url, data={**data, "csrf_token": session_csrf(client)})


def fetch(client, url: str, **data):
    return client.post(url, data=data, headers={**FETCH, "X-CSRF-Token": session_csrf(client)})


def trail(app, comment_id: int) -> tuple[str, list[tuple]]:
    with app.app_context():
        comment = db.session.get(Comment, comment_id)
        rows = db.session.scalars(select(ModerationAction).where(ModerationAction.comment_id == comment_id)
                                  .order_by(ModerationAction.id))
        return comment.status, [(a.moderator, a.to_status, a.reasons, a.reverses_action_id) for a in rows]


def set_created(app, comment_id: int, when: datetime) -> None:
    with app.app_context():
        db.session.execute(update(Comment).where(Comment.id == comment_id).values(created_at=when))
        db.session.commit()


def second_moderator(app, client_factory, name: str = "bernd", role: str = "moderator"):
    with app.app_context():
        token = create_key(db.session, role=role, name=name)[1]
        db.session.commit()
    other = client_factory()
    assert sign_in(other, token).status_code == 302
    return other


# --- undo ---

def test_fetch_decision_carries_undo_and_the_new_counts(app, moderator, seed):
    ids = [seed(f"Frage {i} zur Brücke?", author=f"l{i}") for i in range(3)]
    seed("Frage zum Haushalt?", article="a-2", author="l9")
    response = fetch(moderator, f"/moderation/comments/{ids[0]}/decision", decision="approve", article="a-1")
    assert response.status_code == 200
    body = response.json
    assert body["message"] == f"Kommentar {ids[0]} freigegeben." and body["status"] == "approved"
    assert body["counts"] == {"pending": 2, "reported": 0}  # of the article the page shows
    assert body["undo_url"] == f"/moderation/actions/{body['action_id']}/reversal"
    everything = fetch(moderator, f"/moderation/comments/{ids[1]}/decision", decision="reject").json
    assert everything["counts"] == {"pending": 2, "reported": 0}  # no filter: all articles

    undone = fetch(moderator, body["undo_url"], article="a-1")
    assert undone.status_code == 200
    assert undone.json == {"id": ids[0], "status": "pending", "queue": "pending", "counts": {"pending": 2,
                           "reported": 0}, "message": f"Entscheidung zu Kommentar {ids[0]} zurückgenommen: "
                           "Er wartet wieder."}
    status, rows = trail(app, ids[0])
    assert status == PENDING
    assert rows[-1] == ("test-moderator", "pending", ["moderator_reversal"], body["action_id"])


def test_form_decision_offers_undo_on_the_queue_page(app, moderator, seed):
    comment_id = seed(HARMLESS)
    response = post(moderator, f"/moderation/comments/{comment_id}/decision", decision="reject",
                    next="/moderation/?queue=pending")
    page = moderator.get(response.location)
    assert f"Kommentar {comment_id} abgelehnt." in page.text and 'id="last-decision"' in page.text
    undo_url = re.search(r'<form method="post" action="(/moderation/actions/\d+/reversal)">', page.text).group(1)
    assert "Rückgängig" in page.text
    # Shown once: the next page view has no stale undo.
    assert 'id="last-decision"' not in moderator.get("/moderation/").text
    undone = post(moderator, undo_url, next="/moderation/?queue=pending")
    assert undone.status_code == 302 and undone.location == "/moderation/?queue=pending"
    assert "Entscheidung zu Kommentar" in moderator.get(undone.location).text
    assert trail(app, comment_id)[0] == PENDING


@pytest.mark.parametrize("case, status, message", [
    ("other_moderator", 403, "Nur wer entschieden hat, oder ein Admin"),
    ("decided_since", 409, "kann nicht mehr zurückgenommen werden"),
    ("twice", 409, "kann nicht mehr zurückgenommen werden"),
    ("no_csrf", 400, "Sicherheitsmerkmal"),
])
def test_refused_undo_on_the_page_changes_nothing(app, client, moderator, seed, count_rows, case, status, message):
    comment_id = seed(HARMLESS)
    undo_url = fetch(moderator, f"/moderation/comments/{comment_id}/decision", decision="reject").json["undo_url"]
    actor = moderator
    if case == "other_moderator":
        actor = second_moderator(app, app.test_client)
    elif case == "decided_since":
        with app.app_context():
            queue_service.decide(db.session, comment_id, "bernd", decision="approve", force=True)
    elif case == "twice":
        assert fetch(moderator, undo_url).status_code == 200
    before, state = count_rows(), trail(app, comment_id)
    if case == "no_csrf":
        response = actor.post(undo_url, data={})
    else:
        response = post(actor, undo_url)
    assert response.status_code == status and message in response.text
    assert count_rows() == before and trail(app, comment_id) == state


def test_an_admin_may_undo_anyones_decision_on_the_page(app, moderator, seed):
    comment_id = seed(HARMLESS)
    undo_url = fetch(moderator, f"/moderation/comments/{comment_id}/decision", decision="reject").json["undo_url"]
    admin = second_moderator(app, app.test_client, name="chefin", role="admin")
    assert fetch(admin, undo_url).status_code == 200
    assert trail(app, comment_id)[1][-1][0] == "chefin"


# --- the "Entschieden" tab ---

def test_decided_tab_lists_who_when_why_newest_first_with_undo(app, moderator, seed):
    ids = [seed(f"Frage {i} zur Brücke?", author=f"l{i}") for i in range(3)]
    with app.app_context():
        queue_service.decide(db.session, ids[0], "test-moderator", decision="approve")
        queue_service.decide(db.session, ids[1], "bernd", decision="reject", reason="Beleidigt die <Nachbarn>")
        queue_service.decide(db.session, ids[2], "test-moderator", decision="reject", reason="Spam")
        db.session.execute(update(ModerationAction).where(ModerationAction.moderator.is_not(None))
                           .values(created_at=datetime(2026, 12, 7, 8, 41, tzinfo=UTC)))
        db.session.commit()
    page = moderator.get("/moderation/decided")
    assert page.status_code == 200
    text = page.text
    positions = [text.index(f"#{i}</span>") for i in (ids[2], ids[1], ids[0])]
    assert positions == sorted(positions)  # newest first
    assert "7. Dez. 2026, 09:41" in text and "UTC" not in text
    assert "Beleidigt die &lt;Nachbarn&gt;" in text and "Spam" in text and "bernd" in text
    assert 'aria-current="page">Entschieden</a>' in text
    # Only one's own decisions can be taken back (bernd's row has no button).
    forms = re.findall(r'action="/moderation/actions/(\d+)/reversal"', text)
    with app.app_context():
        mine = {a.id for a in db.session.scalars(select(ModerationAction)
                                                 .where(ModerationAction.moderator == "test-moderator"))}
    assert len(forms) == 2 and {int(f) for f in forms} == mine
    undone = post(moderator, f"/moderation/actions/{forms[0]}/reversal", next="/moderation/decided")
    assert undone.location == "/moderation/decided"
    again = moderator.get("/moderation/decided").text
    assert "Zurückgenommen" in again
    assert f"Nimmt Entscheidung <a href=\"#d-{forms[0]}\">Nr. {forms[0]}</a> zurück" in again
    assert len(re.findall(r'action="/moderation/actions/(\d+)/reversal"', again)) == 1


def test_decided_tab_pages(app, moderator, seed):
    ids = [seed(f"Kommentar {i} zur Sitzung.", author=f"l{i}") for i in range(23)]
    with app.app_context():
        for comment_id in ids:
            queue_service.decide(db.session, comment_id, "test-moderator", decision="approve")
    first = moderator.get("/moderation/decided").text
    assert first.count('class="decision card"') == 20
    older = re.search(r'href="(/moderation/decided\?before=\d+)"', first).group(1)
    second = moderator.get(older).text
    assert second.count('class="decision card"') == 3 and "Zu den neuesten" in second
    for junk in ("abc", "0", "-5", "99999999999", "٣"):
        assert moderator.get(f"/moderation/decided?before={junk}").text.count('class="decision card"') == 20


def test_decided_tab_needs_sign_in(client):
    assert client.get("/moderation/decided").status_code == 302


# --- times in the newsroom's zone ---

def test_queue_shows_times_in_the_newsrooms_zone(app, moderator, seed):
    comment_id = seed(HARMLESS)
    set_created(app, comment_id, datetime(2026, 12, 7, 8, 41, tzinfo=UTC))
    page = moderator.get("/moderation/").text
    assert "7. Dez. 2026, 09:41" in page and " UTC" not in page
    assert 'datetime="2026-12-07T08:41:00+00:00"' in page


@pytest.mark.parametrize("zone, shown", [("UTC", "7. Dez. 2026, 08:41"), ("America/New_York", "7. Dez. 2026, 03:41"),
                                         ("Asia/Kolkata", "7. Dez. 2026, 14:11")])
def test_the_zone_is_configurable(app_config, make_app, zone, shown):
    app = make_app({**app_config, "TIMEZONE": zone})
    with app.app_context():
        token = create_key(db.session, role="moderator", name="test-moderator")[1]
        articles.update_settings(db.session, "a-1", comments_open=True, premoderation=True)
        db.session.commit()
    client = app.test_client()
    sign_in(client, token)
    assert client.post("/v1/articles/a-1/comments", json={"author_id": "x", "author_name": "X", "text": HARMLESS},
                       headers={"Authorization": f"Bearer {create_backend(app)}"}).status_code == 201
    with app.app_context():
        comment_id = db.session.scalar(select(Comment.id))
    set_created(app, comment_id, datetime(2026, 12, 7, 8, 41, tzinfo=UTC))
    assert shown in client.get("/moderation/").text


def create_backend(app) -> str:
    with app.app_context():
        token = create_key(db.session, role="backend", name="backend-zone")[1]
        db.session.commit()
    return token


def test_demo_page_shows_local_times(app_config, make_app):
    app = make_app({**app_config, "DEMO": True})
    client = app.test_client()
    page = client.get("/demo/demo-artikel").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/demo/demo-artikel", data={"author_name": "Clara", "text": "Danke für den Bericht, sehr gut.",
                                            "csrf_token": token})
    with app.app_context():
        db.session.execute(update(Comment).values(status="approved", created_at=datetime(2026, 7, 1, 22, 5,
                                                                                          tzinfo=UTC)))
        db.session.commit()
    shown = client.get("/demo/demo-artikel").text
    assert "2. Juli 2026, 00:05" in shown and "UTC" not in shown


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Europe/Berlinn", "../../etc/passwd", "UTC+2"])
def test_an_unknown_zone_refuses_to_start(app_config, zone):
    from moderation import create_app

    with pytest.raises(ConfigError, match="MODERATION_TIMEZONE"):
        load_config({"MODERATION_TIMEZONE": zone})
    with pytest.raises(ConfigError, match="MODERATION_TIMEZONE"):
        create_app({**app_config, "TIMEZONE": zone})


def test_the_server_refuses_to_start_with_an_unknown_zone(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "MODERATION_TIMEZONE": "Mars/Olympus",
           "MODERATION_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    result = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "MODERATION_TIMEZONE='Mars/Olympus' is invalid" in result.stderr


def test_default_zone_is_berlin():
    assert load_config({})["TIMEZONE"] == "Europe/Berlin"


# --- scores, labels and highlights ---

def test_harmless_comment_held_by_a_zero_threshold_has_no_yellow_and_no_uncertain_label(app_config, make_app):
    app = make_app({**app_config, "APPROVE_THRESHOLD": 0.0, "REJECT_THRESHOLD": 1.0})
    with app.app_context():
        token = create_key(db.session, role="moderator", name="test-moderator")[1]
        db.session.commit()
    client = app.test_client()
    sign_in(client, token)
    backend = {"Authorization": f"Bearer {create_backend(app)}"}
    for author, text in (("a", HARMLESS), ("b", INSULT)):
        response = client.post("/v1/articles/a-1/comments", headers=backend,
                               json={"author_id": author, "author_name": "X", "text": text})
        assert response.json["status"] == PENDING and response.json["reasons"] in (
            ["toxicity_uncertain"], ["toxicity_likely"])
    page = client.get("/moderation/").text
    entries = split_entries(page)
    harmless, insult = entries["Brücke"], entries["Idiot"]
    assert "<mark" not in harmless and "Modell unsicher" not in harmless
    assert "Keine automatische Freigabe" in harmless
    assert re.search(r"<mark[^>]*>Idiot</mark>", insult)
    assert re.search(r'<span class="score-value">\d{1,2},\d %</span>', harmless)


def split_entries(page: str) -> dict[str, str]:
    """The queue's entries by a keyword of their text."""
    out = {}
    for entry in re.findall(r'<li class="entry".*?</li>', page, re.S):
        for keyword in ("Brücke", "Idiot"):
            if keyword in entry:
                out[keyword] = entry
    return out


def test_scores_show_one_decimal(app, moderator, seed):
    comment_id = seed(HARMLESS)
    with app.app_context():
        db.session.execute(update(Comment).where(Comment.id == comment_id).values(toxicity=0.9967))
        db.session.commit()
    page = moderator.get("/moderation/").text
    assert '<span class="score-value">99,7 %</span>' in page and "100 %" not in page


# --- article titles and links ---

def test_queue_shows_article_title_as_escaped_link(app, moderator, seed):
    seed(HARMLESS, article="a-1")
    seed("Frage zum Haushalt?", article="a-2", author="l2")
    with app.app_context():
        db.session.execute(update(Article).where(Article.external_id == "a-1").values(
            title='Radwege <script>alert(1)</script> & "Parkplätze"',
            url='https://zeitung.example/a?x=1&y="><script>'))
        db.session.commit()
    page = moderator.get("/moderation/").text
    assert ('<a class="article-title" href="https://zeitung.example/a?x=1&amp;y=&#34;&gt;&lt;script&gt;" '
            'target="_blank" rel="noopener noreferrer">Radwege &lt;script&gt;alert(1)&lt;/script&gt; &amp; '
            '&#34;Parkplätze&#34;</a>') in page
    assert "<script>alert(1)" not in page
    assert 'title="Nur diesen Artikel zeigen (a-1)">filtern</a>' in page
    assert '>a-2</a>' in page  # no title: the id, as before


def test_counts_on_the_page_agree_with_the_queues(app, moderator, seed):
    ids = [seed(f"Frage {i}?", author=f"l{i}") for i in range(3)]
    with app.app_context():
        queue_service.decide(db.session, ids[0], "test-moderator", decision="reject")
    page = moderator.get("/moderation/").text
    assert re.search(r'data-queue="pending"\s+aria-current="page">Wartend <span class="count">2</span>', page)
    assert '<span class="muted" id="total">2 Kommentare insgesamt</span>' in page
    assert trail(app, ids[0])[0] == REJECTED
