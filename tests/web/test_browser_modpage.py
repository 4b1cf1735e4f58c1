"""The moderator page in real headless Chromium against gunicorn: undo, Entschieden, live counts, 390 px, times.

Screenshots go to test-artifacts/ (queue-390.png, undo.png, decided-tab.png, highlights.png, ...).
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import requests

from tests.web import test_browser as shared
from tests.web.test_browser import ARTIFACTS, MODERATOR, QUEUE_TEXTS, Site, entry_ids

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The same gunicorn, Chromium and signed-in tab as the other browser tests (one server per module).
site, browser, page = shared.site, shared.browser, shared.page

INSULT = "Interessant du Idiot"  # held by the tiny model between the test thresholds (0.35 and 0.65)
LONG_TITLE = ("Stadtrat beschließt nach monatelanger Debatte ein Netz geschützter Radwege in der Innenstadt – "
              "Einzelhandel fürchtet um Parkplätze")


def submit(site: Site, article: str, text: str, author: str, **extra) -> dict:
    response = requests.post(f"{site.base}/v1/articles/{article}/comments", timeout=10,
                             json={"author_id": author, "author_name": f"Leser {author}", "text": text, **extra},
                             headers={"Authorization": f"Bearer {site.tokens['backend']}"})
    assert response.status_code == 201, response.text
    return response.json()


def badge(tab, queue: str) -> int:
    return int(tab.text_content(f'.tabs a[data-queue="{queue}"] .count'))


def screenshot(tab, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_undo_from_the_notice_and_counts_that_follow(site: Site, page):
    site.premoderate("undo-artikel")
    comments = [submit(site, "undo-artikel", text, f"undo-{i}") for i, text in enumerate(QUEUE_TEXTS[:3])]
    page.goto(f"{site.base}/moderation/?article=undo-artikel&sort=oldest")
    ids = entry_ids(page)
    assert ids == [c["id"] for c in comments]
    assert badge(page, "pending") == 3 and page.text_content("#total") == "3 Kommentare insgesamt"

    page.keyboard.press("r")
    page.locator(f"#c-{ids[0]}").wait_for(state="detached")
    # The notice says what happened and offers the undo; the counts changed without a reload.
    assert f"Kommentar {ids[0]} abgelehnt." in page.text_content("#live")
    assert page.is_visible("#live .btn-undo")
    assert badge(page, "pending") == 2 and page.text_content("#total") == "2 Kommentare insgesamt"
    assert page.title().startswith("Wartend (2)")
    screenshot(page, "undo.png")
    assert site.comment(ids[0]) == ("rejected", [None, MODERATOR])

    page.click("#live .btn-undo")
    page.locator(f"#c-{ids[0]}").wait_for()
    assert "zurückgenommen" in page.text_content("#live")
    assert entry_ids(page) == ids  # back where it was, and selected
    assert page.get_attribute("li.entry.selected", "data-id") == str(ids[0])
    assert badge(page, "pending") == 3 and page.text_content("#total") == "3 Kommentare insgesamt"
    assert site.comment(ids[0]) == ("pending", [None, MODERATOR, MODERATOR])
    screenshot(page, "undo-done.png")

    # The keyboard too: a approves the selected entry, u takes it back.
    page.keyboard.press("a")
    page.locator(f"#c-{ids[0]}").wait_for(state="detached")
    assert badge(page, "pending") == 2
    page.keyboard.press("u")
    page.locator(f"#c-{ids[0]}").wait_for()
    assert badge(page, "pending") == 3
    assert site.comment(ids[0]) == ("pending", [None, MODERATOR, MODERATOR, MODERATOR, MODERATOR])
    listing = requests.get(f"{site.base}/v1/articles/undo-artikel/comments", timeout=10).json()
    assert listing["comments"] == []  # the approval was taken back: not published


def test_undo_refused_once_someone_else_decided(site: Site, page):
    site.premoderate("undo-konflikt")
    comment = submit(site, "undo-konflikt", QUEUE_TEXTS[4], "undo-k")
    page.goto(f"{site.base}/moderation/?article=undo-konflikt")
    page.keyboard.press("a")
    page.locator(f"#c-{comment['id']}").wait_for(state="detached")
    response = requests.post(f"{site.base}/v1/moderation/comments/{comment['id']}/decision", timeout=10,
                             json={"decision": "reject", "force": True},
                             headers={"Authorization": f"Bearer {site.tokens['moderator']}"})
    assert response.status_code == 200
    page.click("#live .btn-undo")
    page.locator("#live.notice-error").wait_for()
    assert "kann nicht mehr zurückgenommen werden" in page.text_content("#live")
    assert site.comment(comment["id"])[0] == "rejected"


def test_decided_tab_shows_who_when_why_and_reverses(site: Site, page):
    site.premoderate("entschieden")
    comments = [submit(site, "entschieden", text, f"ent-{i}", article_title="Haushalt 2027: Was die Stadt plant",
                       article_url="https://zeitung.example/haushalt")
                for i, text in enumerate(QUEUE_TEXTS[5:8])]
    for comment, decision in zip(comments, ("approve", "reject", "approve"), strict=True):
        response = requests.post(f"{site.base}/v1/moderation/comments/{comment['id']}/decision", timeout=10,
                                 json={"decision": decision, "reason": f"Begründung {comment['id']}"},
                                 headers={"Authorization": f"Bearer {site.tokens['moderator']}"})
        assert response.status_code == 200
    page.goto(f"{site.base}/moderation/")
    page.click("text=Entschieden")
    page.wait_for_url(re.compile(r"/moderation/decided$"))
    rows = page.locator("li.decision")
    newest = rows.nth(0)
    assert f"#{comments[2]['id']}" in newest.text_content()
    assert MODERATOR in newest.text_content() and f"Begründung {comments[2]['id']}" in newest.text_content()
    assert "Haushalt 2027" in newest.text_content()
    when = newest.locator("time")
    expected = datetime.fromisoformat(when.get_attribute("datetime")).astimezone(ZoneInfo("Europe/Berlin"))
    assert when.text_content() == f"{expected.day}. Dez. {expected.year}, {expected:%H:%M}" or \
        re.fullmatch(r"\d{1,2}\. [A-ZÄ][a-zä]+\.? \d{4}, \d{2}:\d{2}", when.text_content())
    screenshot(page, "decided-tab.png")

    # Take the middle decision (a rejection) back: the comment waits again.
    target = page.locator(f"li.decision:has(span.cid:text-is('#{comments[1]['id']}'))").first
    target.locator("button.btn-undo").click()
    page.wait_for_url(re.compile(r"/moderation/decided$"))
    assert "zurückgenommen" in page.text_content(".notice-success")
    assert site.comment(comments[1]["id"]) == ("pending", [None, MODERATOR, MODERATOR])
    assert "Zurückgenommen" in page.locator("li.decision").nth(0).text_content()


def test_highlights_only_where_they_explain_and_one_decimal(site: Site, page):
    site.premoderate("markierung")
    harmless = submit(site, "markierung", QUEUE_TEXTS[1], "mark-1")
    insult = submit(site, "markierung", INSULT, "mark-2")
    assert harmless["toxicity"] < 0.35 <= insult["toxicity"] < 0.65
    page.goto(f"{site.base}/moderation/?article=markierung")
    calm = page.locator(f"#c-{harmless['id']}")
    assert calm.locator("mark").count() == 0 and "Modell unsicher" not in calm.text_content()
    assert re.fullmatch(r"\d{1,2},\d %", calm.locator(".score-value").text_content())
    held = page.locator(f"#c-{insult['id']}")
    assert held.locator("mark").all_text_contents() == ["Idiot"]
    shown = held.locator(".score-value").text_content()
    assert shown == f"{insult['toxicity'] * 100:.1f}".replace(".", ",") + " %"
    time = held.locator("time")
    expected = datetime.fromisoformat(time.get_attribute("datetime")).astimezone(ZoneInfo("Europe/Berlin"))
    months = ("Jan.", "Feb.", "März", "Apr.", "Mai", "Juni", "Juli", "Aug.", "Sept.", "Okt.", "Nov.", "Dez.")
    assert time.text_content() == f"{expected.day}. {months[expected.month - 1]} {expected.year}, {expected:%H:%M}"
    screenshot(page, "highlights.png")


def no_sideways_scroll(tab) -> None:
    width = tab.evaluate("document.scrollingElement.scrollWidth")
    inner = tab.evaluate("window.innerWidth")
    assert width <= inner, f"{tab.url}: scrollWidth {width} > innerWidth {inner}"
    # A phone zooms out to fit content that is too wide (innerWidth grows): that is sideways overflow too.
    assert inner == 390, f"{tab.url}: the page was zoomed out to {inner} px"


@pytest.mark.parametrize("mobile", [False, True], ids=["desktop-390", "phone-390"])
def test_layout_at_390_px(site: Site, browser, mobile):
    site.premoderate("schmal")
    submit(site, "schmal", "Ein sehr langes Wort: Donaudampfschifffahrtsgesellschaftskapitänsmützenabzeichen "
           + "und eine Adresse https://www.stadtanzeiger.example/lokales/verkehr/radwege-innenstadt-2026",
           f"schmal-1-{mobile}",
           article_title=LONG_TITLE, article_url="https://www.stadtanzeiger.example/lokales/verkehr/radwege")
    submit(site, "schmal", INSULT, f"schmal-2-{mobile}")
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="de-DE", device_scale_factor=2,
                                  is_mobile=mobile, has_touch=mobile)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(f"{site.base}/moderation/login")
    no_sideways_scroll(tab)
    tab.fill("#api_key", site.tokens["moderator"])
    tab.click("button[type=submit]")
    tab.wait_for_url(re.compile(r"/moderation/$"))
    for path, name in (("/moderation/?article=schmal", "queue-390.png"), ("/moderation/decided", "decided-390.png"),
                       ("/moderation/dashboard", "dashboard-390.png")):
        tab.goto(site.base + path)
        no_sideways_scroll(tab)
        logout = tab.locator("form.whoami button", has_text="Abmelden")
        assert logout.is_visible()
        box = logout.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["y"] + box["height"] <= 844
        screenshot(tab, name if mobile else name.replace("-390", "-390-desktop"))
    # The article title is a link out, safely; the decision buttons fit.
    title = tab.goto(f"{site.base}/moderation/?article=schmal") and tab.locator("a.article-title").first
    assert title.get_attribute("rel") == "noopener noreferrer" and title.text_content() == LONG_TITLE
    for button in tab.locator(".actions .btn").all():
        box = button.bounding_box()
        assert box["x"] + box["width"] <= 390
    tab.locator("form.whoami button").click()
    tab.wait_for_url(re.compile(r"/moderation/login"))
    reader = context.new_page()
    reader.goto(f"{site.base}/demo/")
    no_sideways_scroll(reader)
    screenshot(reader, "demo-390.png" if mobile else "demo-390-desktop.png")
    context.close()
    assert errors == []
