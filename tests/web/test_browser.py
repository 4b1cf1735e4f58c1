"""The moderator pages in real headless Chromium against a real gunicorn: keyboard, clicks, escaping."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from moderation.db import make_engine
from moderation.models import ModerationAction
from tests.conftest import FRIENDLY
from tests.servers import ROOT, free_port, running, service_env

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
ARTIFACTS = ROOT / "test-artifacts"
MODERATOR = "anna.moderation"

# Friendly sentences the tiny model publishes at once; premoderation holds them for the queue instead.
QUEUE_TEXTS = FRIENDLY + [
    "Mehr Parkplätze wären mir ehrlich gesagt lieber gewesen.",
    "Die Ampel an der Hauptstraße ist viel zu kurz geschaltet.",
    "Endlich sichere Schulwege für unsere Kinder.",
]
XSS = "Interessant <script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\"> du Idiot"


class Site:
    """The running server, its database and a backend and moderator key."""

    def __init__(self, base: str, database: str, env: dict[str, str]) -> None:
        self.base, self.database, self.env = base, database, env
        self.tokens: dict[str, str] = {}

    def cli(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "moderation", *args], cwd=ROOT, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def premoderate(self, article: str) -> None:
        response = requests.put(f"{self.base}/v1/articles/{article}/settings", timeout=10,
                                json={"comments_open": True, "premoderation": True},
                                headers={"Authorization": f"Bearer {self.tokens['moderator']}"})
        assert response.status_code == 200, response.text

    def submit(self, article: str, text: str, author: str) -> dict:
        response = requests.post(f"{self.base}/v1/articles/{article}/comments", timeout=10,
                                 json={"author_id": author, "author_name": f"Leser {author}", "text": text},
                                 headers={"Authorization": f"Bearer {self.tokens['backend']}"})
        assert response.status_code == 201, response.text
        return response.json()

    def comment(self, comment_id: int) -> tuple[str, list[str | None]]:
        """Return a comment's status and the moderators of its audit rows, straight from the database."""
        engine = make_engine(self.database)
        try:
            with engine.connect() as conn:
                status = conn.exec_driver_sql("SELECT status FROM comments WHERE id = ?", (comment_id,)).scalar_one()
                moderators = list(conn.scalars(select(ModerationAction.moderator)
                                               .where(ModerationAction.comment_id == comment_id)
                                               .order_by(ModerationAction.id)))
        finally:
            engine.dispose()
        return status, moderators


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Site]:
    """gunicorn serving the app with the pages on a fresh, migrated SQLite file."""
    if not CHROMIUM.exists():
        pytest.skip("browser tests skipped: install Debian's chromium")
    tmp = tmp_path_factory.mktemp("browser")
    port = free_port()
    database = f"sqlite:///{tmp / 'pages.db'}"
    env = service_env(PORT=str(port), WEB_CONCURRENCY="2", SERVER_LOG=str(tmp / "server.log"),
                      MODERATION_DATABASE_URL=database, MODERATION_MODEL_DIR=str(tiny_model_dir),
                      MODERATION_APPROVE_THRESHOLD="0.35", MODERATION_REJECT_THRESHOLD="0.65",
                      MODERATION_RATELIMIT_ENABLED="0", MODERATION_DEMO="1")
    built = Site(f"http://127.0.0.1:{port}", database, env)
    subprocess.run([sys.executable, "-m", "moderation", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    makers = {role: built.cli("keys", "create", "--role", role, "--name", name)
              for role, name in (("moderator", MODERATOR), ("backend", "website"))}
    for role, process in makers.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        built.tokens[role] = out.strip()
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    with running(command, env, f"{built.base}/moderation/login"):
        yield built


@pytest.fixture(scope="module")
def browser(site: Site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, site: Site):
    """A fresh browser context signed in as the moderator through the login form."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="de-DE")
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(f"{site.base}/moderation/")
    assert "/moderation/login" in tab.url
    tab.fill("#api_key", site.tokens["moderator"])
    tab.click("button[type=submit]")
    tab.wait_for_url(re.compile(r"/moderation/$"))
    yield tab
    context.close()
    assert errors == [], errors


def entry_ids(tab) -> list[int]:
    return [int(x) for x in tab.eval_on_selector_all("li.entry", "els => els.map(e => e.dataset.id)")]


def test_keyboard_approve_click_reject_and_escaping(site: Site, page):
    site.premoderate("stadtrat-radwege")
    seeded = [site.submit("stadtrat-radwege", text, f"leser-{i}") for i, text in enumerate(QUEUE_TEXTS[:4])]
    xss = site.submit("stadtrat-radwege", XSS, "leser-xss")
    assert {c["status"] for c in [*seeded, xss]} == {"pending"}
    page.goto(f"{site.base}/moderation/?article=stadtrat-radwege")

    # Comment text is text: the markup shows literally and nothing of it ran.
    shown = page.text_content(f"#c-{xss['id']} .text")
    assert "<script>window.__xss=1</script>" in shown and "<img" in shown
    assert page.evaluate("window.__xss") is None
    assert page.locator(f"#c-{xss['id']} .text mark").count() >= 1
    assert page.locator(f"#c-{xss['id']} .text script, #c-{xss['id']} .text img").count() == 0

    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#shortcut-help").wait_for(state="hidden")
    page.screenshot(path=str(ARTIFACTS / "queue.png"), full_page=True)

    # The help panel toggles with "?".
    page.keyboard.press("?")
    assert page.is_visible("#shortcut-help")
    page.keyboard.press("?")
    assert page.is_hidden("#shortcut-help")

    # Keyboard: select the second entry with j and approve it with a.
    ids = entry_ids(page)
    assert page.get_attribute("li.entry.selected", "data-id") == str(ids[0])
    page.keyboard.press("j")
    assert page.get_attribute("li.entry.selected", "data-id") == str(ids[1])
    page.keyboard.press("a")
    page.locator(f"#c-{ids[1]}").wait_for(state="detached")
    assert page.get_attribute("li.entry.selected", "data-id") == str(ids[2])
    assert "freigegeben" in page.text_content("#live")
    assert site.comment(ids[1]) == ("approved", [None, MODERATOR])

    # Mouse: reject the first entry with its button (a plain form post).
    page.click(f"#c-{ids[0]} .btn-reject")
    page.wait_for_url(re.compile(r"/moderation/\?"))
    assert f"Kommentar {ids[0]} abgelehnt." in page.text_content(".notice-success")
    assert ids[0] not in entry_ids(page)
    assert site.comment(ids[0]) == ("rejected", [None, MODERATOR])
    assert page.evaluate("window.__xss") is None


def test_clear_a_queue_of_ten_with_the_keyboard_alone(site: Site, page):
    site.premoderate("haushalt-2026")
    comments = [site.submit("haushalt-2026", text, f"haushalt-{i}") for i, text in enumerate(QUEUE_TEXTS)]
    assert all(c["status"] == "pending" for c in comments)
    page.goto(f"{site.base}/moderation/?article=haushalt-2026&sort=oldest")
    assert len(entry_ids(page)) == 10
    decided: dict[int, str] = {}
    for step in range(10):
        if step % 3 == 1:
            page.keyboard.press("j")  # move around a little: j then k lands on the same entry
            page.keyboard.press("k")
        target = int(page.get_attribute("li.entry.selected", "data-id"))
        key, status = ("r", "rejected") if step % 2 else ("a", "approved")
        page.keyboard.press(key)
        page.locator(f"#c-{target}").wait_for(state="detached")
        decided[target] = status
    assert page.is_visible("#empty")
    assert "Keine Kommentare in dieser Warteschlange" in page.text_content("#empty")
    assert sorted(decided) == sorted(c["id"] for c in comments)
    for comment_id, status in decided.items():
        assert site.comment(comment_id) == (status, [None, MODERATOR])
    # A full reload agrees: the queue for this article is empty.
    page.reload()
    assert page.is_visible("#empty") and entry_ids(page) == []


def test_conflict_from_another_moderator_shows_german_message(site: Site, page):
    site.premoderate("konflikt")
    comment = site.submit("konflikt", QUEUE_TEXTS[0], "konflikt-1")
    page.goto(f"{site.base}/moderation/?article=konflikt")
    # Another moderator rejects it while the page is open.
    engine = make_engine(site.database)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE comments SET status = 'rejected', decided_by = 'bernd' WHERE id = ?",
                             (comment["id"],))
    engine.dispose()
    page.keyboard.press("a")
    page.locator("#live.notice-error").wait_for()
    assert "von jemand anderem entschieden" in page.text_content("#live")
    assert site.comment(comment["id"])[0] == "rejected"


def test_dashboard_and_demo_loop(site: Site, browser):
    site.premoderate("demo-stadtrat-radwege")
    context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="de-DE")
    context.set_default_timeout(10_000)
    reader = context.new_page()
    reader.goto(f"{site.base}/demo/")
    assert reader.url.endswith("/demo/demo-stadtrat-radwege")
    reader.fill("#name-neu", "Clara")
    reader.fill("#text-neu", "Wann kommt der Radweg zur Schule? <b>Bitte bald</b>")
    reader.click("#form-neu button[type=submit]")
    assert reader.get_attribute("#result", "data-status") == "pending"
    assert "wird geprüft" in reader.text_content("#result")
    assert "Bitte bald" not in reader.text_content("#kommentare")

    moderator = context.new_page()
    moderator.goto(f"{site.base}/moderation/login")
    moderator.fill("#api_key", site.tokens["moderator"])
    moderator.click("button[type=submit]")
    moderator.goto(f"{site.base}/moderation/?article=demo-stadtrat-radwege&sort=oldest")
    newest = entry_ids(moderator)[-1]
    assert "<b>Bitte bald</b>" in moderator.text_content(f"#c-{newest} .text")
    moderator.click(f"#c-{newest}")
    moderator.keyboard.press("a")
    moderator.locator(f"#c-{newest}").wait_for(state="detached")

    reader.reload()
    assert "<b>Bitte bald</b>" in reader.text_content("#kommentare")

    moderator.goto(f"{site.base}/moderation/dashboard")
    assert moderator.locator("svg.chart rect").count() >= 2
    assert "Automatisierungsquote" in moderator.text_content(".figures")
    ARTIFACTS.mkdir(exist_ok=True)
    moderator.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    reader.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
    context.close()
