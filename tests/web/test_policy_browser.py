"""The policy dial in real headless Chromium against a real gunicorn: the curve drawn under the strict CSP, a change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.servers import ROOT, free_port, running, service_env
from tests.web.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_admin_turns_the_dial_in_the_browser(tmp_path: Path, calibrated_model_dir: Path):
    if not CHROMIUM.exists():
        pytest.skip("browser tests skipped: install Debian's chromium")
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = service_env(PORT=str(port), WEB_CONCURRENCY="1", SERVER_LOG=str(tmp_path / "server.log"),
                      MODERATION_DATABASE_URL=f"sqlite:///{tmp_path / 'dial.db'}",
                      MODERATION_MODEL_DIR=str(calibrated_model_dir), MODERATION_RATELIMIT_ENABLED="0")
    subprocess.run([sys.executable, "-m", "moderation", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    token = subprocess.run([sys.executable, "-m", "moderation", "keys", "create", "--role", "admin", "--name",
                            "chefredaktion"], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    base = f"http://127.0.0.1:{port}"
    with running([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], env,
                 f"{base}/moderation/login"), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="de-DE")
        context.set_default_timeout(10_000)
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        # A Content-Security-Policy violation (an inline style or script) shows as a console error.
        # (The browser's own request for /favicon.ico answers 404: not a problem of the page.)
        page.on("console", lambda message: problems.append(message.text)
                if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico") else None)
        page.goto(f"{base}/moderation/login?next=/moderation/policy")
        page.fill("#api_key", token.strip())
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/moderation/policy")

        curve = page.locator("svg.chart path.curve")
        box = curve.bounding_box()
        assert box is not None and box["width"] > 400 and box["height"] > 20
        assert page.locator("svg.chart g.marker").count() == 4
        assert page.locator("svg.chart g.marker-current").count() == 1
        assert page.text_content("#fig-approve").strip() == "0,322"
        # The removal rates: none measured yet (no decision), the expected one in use.
        rates = page.locator("#removal-rate")
        assert rates.is_visible()
        assert page.text_content("#rate-measured").strip() == "–"
        assert page.text_content("#rate-expected").strip() == "10,0 %"
        assert " ".join(page.text_content("#rate-in-use").split()).startswith(
            "In Gebrauch: die erwartete Löschquote von 10,0 %.")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "policy.png"), full_page=True)
        rates.screenshot(path=str(ARTIFACTS / "policy-removal-rate.png"))

        page.fill("#max_leak", "5")
        page.click("form.policy-form button[type=submit]")
        page.wait_for_selector(".notice-success")
        assert page.text_content("#fig-approve").strip() == "0,500"
        assert "chefredaktion" in page.text_content("#policy-history")
        assert page.locator("svg.chart g.marker-current title").text_content().startswith("Fehlerquote 5 %")
        page.screenshot(path=str(ARTIFACTS / "policy-changed.png"), full_page=True)
        context.close()
        browser.close()
        stored = requests.get(f"{base}/v1/moderation/policy", timeout=10,
                              headers={"Authorization": f"Bearer {token.strip()}"}).json()
        assert stored["policy"]["max_leak"] == 0.05 and stored["updated_by"] == "chefredaktion"
    assert problems == [], problems
