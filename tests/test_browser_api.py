"""The example's JSON API and the devices page in a real browser (Chromium through Playwright),
against a real server (``python -m examples.flask_app``), as ``test_browser.py`` runs them.

Sign in in the browser, mint a token through the API (``fetch`` from the page, as a
single-page app would), see it on the devices page as an "API token", revoke it
there: the next API call with it is anonymous (401).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_browser import (  # noqa: F401 (fixtures)
    EMAIL,
    PASSWORD,
    ExampleServer,
    browser,
    device_rows,
    new_device,
    server,
    session_cookie,
    sign_up,
    sync_api,
)

FETCH = """async ([path, method, token, body, credentials]) => {
    const headers = {};
    if (token) headers["Authorization"] = "Bearer " + token;
    if (body) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {method, headers, credentials,
                                        body: body ? JSON.stringify(body) : undefined});
    const text = await response.text();
    return {status: response.status, text, vary: response.headers.get("Vary")};
}"""


def api(page: Any, path: str, method: str = "GET", token: str | None = None, body: Any = None,
        credentials: str = "omit") -> dict[str, Any]:
    return page.evaluate(FETCH, [path, method, token, body, credentials])  # type: ignore[no-any-return]


def test_mint_a_token_see_it_on_the_devices_page_revoke_it_there(new_device: Any, server: ExampleServer,
                                                                  tmp_path: Path) -> None:
    expect = sync_api.expect
    page = new_device()
    sign_up(page)
    cookie_before = session_cookie(page)
    assert cookie_before is not None

    # Minted from the signed-in page: the browser's cookie goes along ("include") and
    # is neither replaced nor cleared; no CSRF token is needed.
    minted = api(page, "/api/token", "POST", body={"email": EMAIL, "password": PASSWORD}, credentials="include")
    assert minted["status"] == 201, minted
    token = json.loads(minted["text"])["token"]
    assert session_cookie(page) == cookie_before

    me = api(page, "/api/me", token=token)
    assert me["status"] == 200 and json.loads(me["text"])["email"] == EMAIL
    assert "Authorization" in (me["vary"] or "")
    assert api(page, "/api/me")["status"] == 401

    page.goto("/devices/")
    expect(device_rows(page)).to_have_count(2)
    token_row = page.locator("tr[data-kind='api-token']")
    expect(token_row).to_have_count(1)
    expect(token_row.locator(".device-name")).to_have_text("API token")
    expect(token_row.locator("td[data-label='Last used'] time")).to_have_count(1)
    page.screenshot(path=str(tmp_path / "devices-with-api-token.png"), full_page=True)

    token_row.get_by_role("button", name="Revoke this token").click()
    expect(page.locator(".flash.success")).to_have_text("That device has been signed out.")
    expect(device_rows(page)).to_have_count(1)
    expect(page.locator("tr[data-kind='api-token']")).to_have_count(0)

    after = api(page, "/api/me", token=token)
    assert after["status"] == 401, after
    page.goto("/")
    expect(page.get_by_test_id("signed-in-as")).to_have_text(EMAIL)
    assert session_cookie(page) == cookie_before


def test_delete_token_from_the_api_and_a_fresh_login_over_it(new_device: Any) -> None:
    page = new_device()
    sign_up(page)
    first = json.loads(api(page, "/api/token", "POST", body={"email": EMAIL, "password": PASSWORD})["text"])["token"]
    assert api(page, "/api/token", "DELETE", token=first)["status"] == 204
    assert api(page, "/api/me", token=first)["status"] == 401
    assert api(page, "/api/token", "POST", body={"email": EMAIL, "password": "wrong"})["status"] == 401
