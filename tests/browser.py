"""The dashboard in a real browser: Debian's headless chromium driven by Playwright (never `playwright install`,
which downloads a browser). ``make test`` installs chromium as it installs PostgreSQL.

    with chromium() as browser:
        page = signed_in(browser, server, KEY)      # a fresh context, logged in with the server's key
        page.get_by_role("button", name="Rate reply #2 up").click()
        shot(page, "log")                          # test-output/screenshots/log.png
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = Path(os.environ.get("TUNELOOP_SCREENSHOTS", ROOT / "test-output" / "screenshots"))
# Text that would run as script if a page let it through; a test that shows it checks that window.pwned stays unset.
PAYLOADS = [
    "<script>window.pwned = 'script'</script>",
    "<img src=x onerror=\"window.pwned='img'\">",
    "<svg onload=\"window.pwned='svg'\"><circle r=1></circle></svg>",
    "<a href=\"javascript:window.pwned='link'\">click me</a>",
    "\"><script>window.pwned='attr'</script>",
]
HOSTILE = " ".join(PAYLOADS)
CHROMIUM = os.environ.get("TUNELOOP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium for one test module (a context per test is cheap; a browser is not)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "the browser tests need Debian's chromium: `make test` installs it"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


def ui_url(server: Any, path: str = "/ui/") -> str:
    """The address of a dashboard page of a ``serving(...)`` server (its base_url ends in /v1)."""
    return server.base_url.removesuffix("/v1") + path


def new_page(browser: Any, **options: Any) -> Any:
    """A page in a fresh context (its own cookies) that fails the test on any script error or CSP violation it
    reports (``page.problems`` lists them) and on any dialog (an alert is a script that ran)."""
    context = browser.new_context(**options)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(f"script error: {error}"))
    # Console errors other than an answer's status (a 401 or 400 page is expected where a test asks for one): a CSP
    # violation ("Refused to execute inline script…") is one.
    page.on("console", lambda message: message.type == "error" and not message.text.startswith(
        "Failed to load resource") and page.problems.append(message.text))
    page.on("dialog", lambda dialog: (page.problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    return page


def signed_in(browser: Any, server: Any, key: str | None, path: str = "/ui/log", **options: Any) -> Any:
    """A fresh page signed in with ``key`` (None: a server without one) and showing ``path``."""
    page = new_page(browser, **options)
    page.goto(ui_url(server, path))
    if key is not None:
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"**{path}*")
    return page


def shot(page: Any, name: str) -> Path:
    """A full-page screenshot in the test output (test-output/screenshots/NAME.png, or $TUNELOOP_SCREENSHOTS)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def follow_task(page: Any, link: str) -> None:
    """On a task's page (where a form that starts long work lands): wait for the task to end (the page follows it
    live and reloads), then follow its result ``link``."""
    page.wait_for_url("**/ui/tasks/*")
    page.get_by_role("link", name=link).click(timeout=600_000)
