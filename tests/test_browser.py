"""The Flask example in a real browser (Debian's Chromium through Playwright) against a real server.

The app runs as ``python -m examples.flask_app`` (waitress) in a subprocess on a
free loopback port with a temporary SQLite file, exactly as ``make run`` starts
it.  Two browser contexts are two separate devices with their own cookie jars.

Chromium is the system one (``/usr/bin/chromium``), never a downloaded build:
without it these tests skip locally and fail in CI (``KITSESSION_REQUIRE_SERVICES=1``).
Screenshots go to the test's ``tmp_path``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from servers import free_port, service_missing, wait_for_port

try:
    from playwright import sync_api
except ImportError:  # pragma: no cover - playwright is a dev dependency
    sync_api = None

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery"
EMAIL = "ada@example.com"
COOKIE = "session"


class ExampleServer:
    """``python -m examples.flask_app`` on a free loopback port, stopped by its pid.

    Output goes to ``log_path`` so a failing test can show what the server said.
    """

    def __init__(self, database: Path, log_path: Path) -> None:
        self.database = database
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ExampleServer:
        env = {key: value for key, value in os.environ.items() if key != "KITSESSION_STORE"}
        env.update(
            HOST="127.0.0.1",
            PORT=str(self.port),
            KITSESSION_EXAMPLE_DB=str(self.database),
            SECRET_KEY="browser-test-secret",
            PYTHONUNBUFFERED="1",
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "examples.flask_app"],
                cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        if not wait_for_port(self.port, timeout=30) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError(f"the example server did not start:\n{self.log()}")
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def restart(self) -> None:
        """Stop the process and start a new one on the same port and database."""
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if sync_api is None:
        service_missing("Playwright for Python not installed (pip install -e '.[dev]')")
    if not os.path.exists(CHROMIUM):
        service_missing("Chromium not installed (apt-get install -y chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ExampleServer]:
    example = ExampleServer(tmp_path / "example.sqlite3", tmp_path / "server.log").start()
    yield example
    example.stop()


@pytest.fixture
def new_device(browser: Any, server: ExampleServer) -> Iterator[Any]:
    """Open a new browser context (a separate device: own cookies) with one page."""
    contexts: list[Any] = []

    def open_page() -> Any:
        context = browser.new_context(base_url=server.url, viewport={"width": 1100, "height": 760})
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def wait_for_path(page: Any, path: str) -> None:
    """Wait until the page is at ``path`` (any query string)."""
    page.wait_for_url(lambda url: urlsplit(url).path == path)


def sign_up(page: Any) -> None:
    page.goto("/signup")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    page.click("button:has-text('Sign up')")
    wait_for_path(page, "/")
    sync_api.expect(page.get_by_test_id("signed-in-as")).to_have_text(EMAIL)


def log_in(page: Any) -> None:
    page.goto("/login")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("form[action='/login'] button")
    wait_for_path(page, "/")
    sync_api.expect(page.get_by_test_id("signed-in-as")).to_have_text(EMAIL)


def session_cookie(page: Any) -> dict[str, Any] | None:
    """The session cookie in this device's cookie jar, or ``None``."""
    return next((c for c in page.context.cookies() if c["name"] == COOKIE), None)


def device_rows(page: Any) -> Any:
    return page.locator("table.devices tbody tr")


def test_sign_out_every_other_device_in_two_browsers(new_device: Any, server: ExampleServer,
                                                      tmp_path: Path) -> None:
    expect = sync_api.expect
    laptop = new_device()
    sign_up(laptop)
    laptop.goto("/devices/")
    expect(device_rows(laptop)).to_have_count(1)
    expect(laptop.locator("tr.current .badge")).to_have_text("This device")
    laptop.screenshot(path=str(tmp_path / "devices-one.png"), full_page=True)

    phone = new_device()
    log_in(phone)
    laptop.reload()
    expect(device_rows(laptop)).to_have_count(2)
    expect(laptop.locator("tr.current")).to_have_count(1)
    expect(laptop.get_by_role("button", name="Sign out this device")).to_have_count(1)
    laptop.screenshot(path=str(tmp_path / "devices-two.png"), full_page=True)

    laptop.get_by_role("button", name="Sign out every other device").click()
    expect(laptop.locator(".flash.success")).to_have_text("Signed out 1 other device.")
    expect(device_rows(laptop)).to_have_count(1)
    laptop.screenshot(path=str(tmp_path / "devices-after-sign-out.png"), full_page=True)

    # The phone's next request finds its session gone and lands on the login page.
    phone.goto("/devices/")
    wait_for_path(phone, "/login")
    assert urlsplit(phone.url).query == "next=/devices/"
    expect(phone.locator(".flash.info")).to_contain_text("signed out from another device")
    expect(phone.get_by_test_id("signed-in-as")).to_have_count(0)

    # The laptop is still logged in.
    laptop.goto("/")
    expect(laptop.get_by_test_id("signed-in-as")).to_have_text(EMAIL)

    cookie = session_cookie(laptop)
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/"

    laptop.get_by_role("button", name="Log out").click()
    wait_for_path(laptop, "/signed-out")
    expect(laptop.locator("h1")).to_have_text("You have been signed out")
    assert session_cookie(laptop) is None
    laptop.goto("/devices/")
    wait_for_path(laptop, "/login")

    assert server.process is not None and server.process.poll() is None
    assert '"POST /devices/revoke-others" 302' in server.log()  # one access-log line per request


def test_sign_out_one_device_from_its_row(new_device: Any) -> None:
    expect = sync_api.expect
    laptop = new_device()
    sign_up(laptop)
    phone = new_device()
    log_in(phone)
    tablet = new_device()
    log_in(tablet)

    laptop.goto("/devices/")
    expect(device_rows(laptop)).to_have_count(3)
    phone.goto("/devices/")
    phone_handle = phone.locator("tr.current").get_attribute("data-handle")
    laptop.locator(f"tr[data-handle='{phone_handle}']").get_by_role("button", name="Sign out this device").click()
    expect(laptop.locator(".flash.success")).to_have_text("That device has been signed out.")
    expect(device_rows(laptop)).to_have_count(2)
    expect(laptop.locator(f"tr[data-handle='{phone_handle}']")).to_have_count(0)

    phone.reload()
    wait_for_path(phone, "/login")
    tablet.goto("/")
    expect(tablet.get_by_test_id("signed-in-as")).to_have_text(EMAIL)


def test_a_forged_csrf_token_gets_400(new_device: Any) -> None:
    page = new_device()
    sign_up(page)
    page.locator("nav form input[name=csrf_token]").evaluate("input => { input.value = 'forged'; }")
    with page.expect_response(lambda response: response.url.endswith("/logout")) as answer:
        page.get_by_role("button", name="Log out").click()
    assert answer.value.status == 400
    sync_api.expect(page.locator("h1")).to_contain_text("400")
    page.goto("/")
    sync_api.expect(page.get_by_test_id("signed-in-as")).to_have_text(EMAIL)


def test_the_browser_stays_logged_in_across_a_server_restart(new_device: Any, server: ExampleServer,
                                                              tmp_path: Path) -> None:
    expect = sync_api.expect
    page = new_device()
    sign_up(page)
    expect(page.get_by_test_id("visits")).to_have_text("1")
    before = session_cookie(page)

    server.restart()

    page.goto("/")
    expect(page.get_by_test_id("signed-in-as")).to_have_text(EMAIL)
    expect(page.get_by_test_id("visits")).to_have_text("2")  # flask.session data survived too
    assert session_cookie(page) == before
    page.goto("/devices/")
    expect(device_rows(page)).to_have_count(1)
    page.screenshot(path=str(tmp_path / "devices-after-restart.png"), full_page=True)
