"""The example in Chromium at a phone's width (390 px) and a laptop's (1280 px): long text wraps,
and the ordinary two-tab flows end on a page that says what happened.

Against a real server (``python -m examples.flask_app``), as ``test_browser.py`` runs it; two
pages of one browser context are two tabs (one cookie jar), two contexts two devices.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from test_browser import (  # noqa: F401 (fixtures)
    PASSWORD,
    ExampleServer,
    browser,
    server,
    sync_api,
    wait_for_path,
)

#: 150 characters, no space to break at
LONG_EMAIL = "a" * 30 + "." + "b" * 40 + "." + "c" * 50 + "@" + "d" * 15 + ".example"
#: the longest note the form takes (200 characters), one unbreakable word
LONG_NOTE = "n" * 200
WIDTHS = [pytest.param(390, id="phone-390px"), pytest.param(1280, id="laptop-1280px")]

#: Elements sticking out past the right edge of the viewport (what to look at when the check fails).
OVERFLOWING = """() => {
    const width = window.innerWidth;
    return [...document.querySelectorAll("body *")]
        .filter(element => element.getBoundingClientRect().right > width + 0.5)
        .map(element => element.tagName.toLowerCase() + (element.className ? "." + element.className : ""));
}"""


def assert_fits(page: Any, what: str, screenshots: Path) -> None:
    """Nothing on the page is wider than the viewport: no horizontal scrolling."""
    page.screenshot(path=str(screenshots / f"{what}.png"), full_page=True)
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    inner_width = page.evaluate("window.innerWidth")
    assert scroll_width <= inner_width, (what, scroll_width, inner_width, page.evaluate(OVERFLOWING))


@pytest.fixture
def open_context(browser: Any, server: ExampleServer) -> Iterator[Any]:
    """``open_context(width)``: a new browser context (a device with its own cookies) at that width."""
    contexts: list[Any] = []

    def open_context(width: int = 1280) -> Any:
        context = browser.new_context(base_url=server.url, viewport={"width": width, "height": 800})
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield open_context
    for context in contexts:
        context.close()


def sign_up(page: Any, email: str = LONG_EMAIL) -> None:
    page.goto("/signup")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    page.click("form[action='/signup'] button")
    wait_for_path(page, "/")
    sync_api.expect(page.get_by_test_id("visits")).to_have_text("1")


def log_in(page: Any, email: str = LONG_EMAIL, *, keep_signed_in: bool = False) -> None:
    page.goto("/login")
    fill_login(page, email, keep_signed_in=keep_signed_in)
    wait_for_path(page, "/")


def fill_login(page: Any, email: str = LONG_EMAIL, *, keep_signed_in: bool = False) -> None:
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    if keep_signed_in:
        page.check("input[name=keep_signed_in]")
    page.click("form[action='/login'] button")


def log_out(page: Any) -> None:
    page.locator("nav").get_by_role("button", name="Log out").click()
    wait_for_path(page, "/signed-out")


@pytest.mark.parametrize("width", WIDTHS)
def test_long_text_wraps_on_every_page(open_context: Any, width: int, tmp_path: Path) -> None:
    """Regression: a 150-character e-mail made the page 2,485 px wide (37 characters overflowed a phone)."""
    context = open_context(width)
    page = context.new_page()
    for path in ("/", "/signup", "/login", "/no-such-page"):
        page.goto(path)
        assert_fits(page, f"anonymous-{path.strip('/') or 'landing'}", tmp_path)

    sign_up(page)
    page.fill("input[name=note]", LONG_NOTE)
    page.get_by_role("button", name="Save").click()
    sync_api.expect(page.locator(".flash.success")).to_have_text("Note saved in this session.")
    assert page.input_value("input[name=note]") == LONG_NOTE
    assert_fits(page, "home", tmp_path)

    other_device = open_context(width).new_page()
    log_in(other_device, keep_signed_in=True)
    page.goto("/devices/")
    sync_api.expect(page.locator("table.devices tbody tr")).to_have_count(2)
    assert_fits(page, "devices", tmp_path)

    # The second tab's note form, after the first tab logged out: the login page shows the note back.
    second_tab = context.new_page()
    second_tab.goto("/")
    log_out(page)
    assert_fits(page, "signed-out", tmp_path)
    second_tab.fill("input[name=note]", LONG_NOTE[:-1] + "!")
    second_tab.get_by_role("button", name="Save").click()
    sync_api.expect(second_tab.get_by_test_id("pending-note")).to_have_text(LONG_NOTE[:-1] + "!")
    assert_fits(second_tab, "login-with-pending-note", tmp_path)

    # The other device, kept signed in, shows the long address in its header.
    other_device.goto("/")
    sync_api.expect(other_device.get_by_test_id("signed-in-as")).to_have_text(LONG_EMAIL)
    assert_fits(other_device, "home-kept-signed-in", tmp_path)


def test_logging_in_from_a_second_tab_when_already_signed_in(open_context: Any) -> None:
    """Regression: the second tab's login form answered "400 Bad Request: the form was out of date"."""
    expect = sync_api.expect
    context = open_context()
    first = context.new_page()
    sign_up(first, "ada@example.com")
    log_out(first)
    first.goto("/login")
    second = context.new_page()
    second.goto("/login?next=/devices/")

    fill_login(first, "ada@example.com")
    wait_for_path(first, "/")
    with second.expect_response(lambda response: response.url.endswith("/login")) as answer:
        fill_login(second, "ada@example.com")
    assert answer.value.status == 302
    wait_for_path(second, "/devices/")
    expect(second.locator(".flash.info")).to_have_text("You are already signed in as ada@example.com.")
    expect(second.locator("table.devices tbody tr")).to_have_count(1)


def test_a_note_saved_after_logging_out_in_another_tab_is_kept(open_context: Any) -> None:
    """Regression: the note form answered 400 and what was typed was lost."""
    expect = sync_api.expect
    context = open_context()
    first = context.new_page()
    sign_up(first, "ada@example.com")
    second = context.new_page()
    second.goto("/")
    second.fill("input[name=note]", "buy milk")

    log_out(first)
    second.get_by_role("button", name="Save").click()

    expect(second.get_by_test_id("login-notice")).to_contain_text("your note was not saved yet")
    expect(second.get_by_test_id("pending-note")).to_have_text("buy milk")
    fill_login(second, "ada@example.com")
    wait_for_path(second, "/")
    expect(second.locator(".flash.success")).to_have_text("You are logged in, and your note is saved.")
    assert second.input_value("input[name=note]") == "buy milk"


def test_a_device_signed_out_from_another_is_told_why_whatever_it_opens(open_context: Any) -> None:
    expect = sync_api.expect
    laptop = open_context().new_page()
    sign_up(laptop, "ada@example.com")
    phone = open_context(390).new_page()
    log_in(phone, "ada@example.com")

    laptop.goto("/devices/")
    laptop.get_by_role("button", name="Sign out every other device").click()
    expect(laptop.locator(".flash.success")).to_have_text("Signed out 1 other device.")

    phone.goto("/")  # the landing page, not a protected one
    expect(phone.locator(".flash.info")).to_have_text(
        "This device was signed out from another device. Log in again to continue.")
    expect(phone.get_by_test_id("signed-in-as")).to_have_count(0)
    phone.reload()
    expect(phone.locator(".flash")).to_have_count(0)  # told once


def test_keep_me_signed_in_decides_whether_the_cookie_outlives_the_browser(open_context: Any) -> None:
    expect = sync_api.expect
    context = open_context()
    page = context.new_page()
    sign_up(page, "ada@example.com")
    expect(page.get_by_test_id("session-ends")).to_have_text("when the browser closes")
    (cookie,) = [c for c in context.cookies() if c["name"] == "session"]
    assert cookie["expires"] == -1, "a browser-session cookie"

    log_out(page)
    log_in(page, "ada@example.com", keep_signed_in=True)
    expect(page.get_by_test_id("session-ends")).to_have_text("in 7 days")
    (cookie,) = [c for c in context.cookies() if c["name"] == "session"]
    assert cookie["expires"] > 0, "a persistent cookie"
    assert urlsplit(page.url).path == "/"
