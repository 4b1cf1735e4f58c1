"""/docs in real headless Chromium against a real gunicorn, with every request off this machine refused."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.servers import ROOT, free_port, running, service_env
from tests.web.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
SUBMIT = "POST /v1/articles/{article_id}/comments"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[str]:
    """gunicorn serving the app on a fresh, migrated SQLite file; yields its base URL."""
    if not CHROMIUM.exists():
        pytest.skip("browser tests skipped: install Debian's chromium")
    tmp = tmp_path_factory.mktemp("docs")
    port = free_port()
    env = service_env(PORT=str(port), WEB_CONCURRENCY="1", SERVER_LOG=str(tmp / "server.log"),
                      MODERATION_DATABASE_URL=f"sqlite:///{tmp / 'docs.db'}",
                      MODERATION_MODEL_DIR=str(tiny_model_dir), MODERATION_RATELIMIT_ENABLED="0")
    subprocess.run([sys.executable, "-m", "moderation", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    url = f"http://127.0.0.1:{port}"
    with running([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], env, f"{url}/healthz"):
        yield url


def test_docs_list_the_operations_with_the_network_blocked(base: str):
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []
    problems: list[str] = []

    def offline(route) -> None:
        """Let requests to this machine through and abort every other one, as without internet."""
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
            context.set_default_timeout(15_000)
            context.route("**/*", offline)
            page = context.new_page()
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            # Chromium reports what the Content-Security-Policy refused as console errors.
            page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
                    if message.type == "error" else None)
            response = page.goto(f"{base}/docs")
            assert response.status == 200
            page.locator(".opblock").first.wait_for(state="visible")
            # Swagger UI puts zero-width spaces into long paths so that they can wrap.
            operations = page.eval_on_selector_all(".opblock", """blocks => blocks.map(b =>
                (b.querySelector('.opblock-summary-method').textContent + ' '
                 + b.querySelector('.opblock-summary-path').textContent).replace(/\\u200b/g, ''))""")
            assert SUBMIT in operations and "GET /readyz" in operations
            assert len(operations) > 10
            assert page.locator(".info .title").first.inner_text().startswith("Kommentare moderation service")

            # Open the submission: its parameters and body come from our own document.
            submit = page.locator(".opblock").nth(operations.index(SUBMIT))
            submit.locator(".opblock-summary").click()
            submit.locator(".parameters-container").wait_for(state="visible")
            opened = submit.inner_text()
            assert "article_id" in opened and "author_id" in opened
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "docs-offline.png"), full_page=False)
            context.close()
        finally:
            browser.close()
    assert blocked == [], f"/docs asked for files elsewhere: {blocked}"
    assert problems == [], problems
