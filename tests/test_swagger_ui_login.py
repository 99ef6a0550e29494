"""A person logs in from Swagger UI at /docs, in a real (headless) Chromium.

The browser is Debian's `chromium` package, driven by Playwright's Python client
(no browser of Playwright's own is downloaded). The page runs against the app under
gunicorn, with every request that leaves 127.0.0.1 blocked and recorded: /docs
must work with no internet. Skipped when chromium is not installed, except in CI
(CI=true), where .ci/run installs it and its absence is a failure.

Set SWAGGER_UI_SCREENSHOTS=/some/folder to keep screenshots: the Authorize
dialog after the login (authorized.png) and the answer of "Try it out"
(tenants-me.png).
"""

from __future__ import annotations

import os
import shutil
from urllib.parse import urlsplit

import pytest

from tests.servers import GunicornServer
from tests.support import PASSWORD

pytestmark = pytest.mark.gunicorn

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
TIMEOUT_MS = 20_000  # a bound on each wait, not an expectation of speed


@pytest.fixture
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        reason = f"chromium is not installed ({CHROMIUM}); apt-get install chromium"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: .ci/run installs it in CI")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page, name: str) -> None:
    folder = os.environ.get("SWAGGER_UI_SCREENSHOTS")
    if folder:
        page.screenshot(path=os.path.join(folder, name))


class LoopbackOnly:
    """Lets the page reach 127.0.0.1 only; records what else it tried."""

    def __init__(self) -> None:
        self.blocked: list[str] = []
        self.paths: list[tuple[str, str]] = []

    def __call__(self, route) -> None:
        request = route.request
        url = urlsplit(request.url)
        if url.scheme in ("http", "https") and url.hostname == "127.0.0.1":
            self.paths.append((request.method, url.path))
            route.continue_()
        else:
            self.blocked.append(request.url)
            route.abort("blockedbyclient")


def test_authorize_logs_in_with_email_and_password_and_try_it_out_is_authorized(browser, factory):
    world = factory.world(name="Swagger Tea House")
    network = LoopbackOnly()
    with GunicornServer(workers=1, threads=4) as server:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        context.route("**/*", network)
        page = context.new_page()
        page.goto(f"{server.url}/docs")

        page.click(".auth-wrapper .authorize")
        dialog = page.locator(".auth-container").filter(has_text="oauth2Password")
        dialog.locator("#oauth_username").fill(world.owner.email)
        dialog.locator("#oauth_password").fill(PASSWORD)
        dialog.locator("button.authorize", has_text="Authorize").click()
        # Authorized: Swagger UI swaps the form for a Logout button.
        dialog.locator("button.authorize", has_text="Logout").wait_for()
        assert dialog.locator(".errors").count() == 0
        screenshot(page, "authorized.png")
        page.click(".modal-ux .btn-done")

        operation = page.locator(".opblock-get").filter(
            has=page.locator('.opblock-summary-path[data-path="/api/v1/tenants/me"]')
        )
        operation.locator(".opblock-summary").click()
        operation.locator("button.try-out__btn").click()
        operation.locator("button.execute").click()
        response = operation.locator(".live-responses-table .response").first
        response.wait_for()
        response.scroll_into_view_if_needed()
        screenshot(page, "tenants-me.png")
        status = response.locator(".response-col_status").inner_text().strip()
        body = response.locator(".response-col_description").inner_text()
        curl = operation.locator(".curl-command").inner_text()
        context.close()

    assert status == "200", body
    assert "Swagger Tea House" in body
    assert "Authorization: Bearer " in curl  # the token from the login, not pasted by hand
    assert ("POST", "/api/v1/auth/token") in network.paths
    assert ("GET", "/api/v1/tenants/me") in network.paths
    assert network.blocked == [], f"/docs reached beyond 127.0.0.1: {network.blocked}"
