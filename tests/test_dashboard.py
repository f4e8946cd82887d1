"""The dashboard: its sign-in flow over HTTP, and the page in real headless
Chromium (Debian's package, driven by Playwright without its own browser)."""

from __future__ import annotations

import os
import shutil
import time

import pytest
import requests

from .conftest import KEY, ROOT
from .fake_backend import completion, text_stream

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def dash(gateway_factory, tmp_path, backend):
    def handler(req):
        if req.stream:
            return text_stream(["hello", " there"], usage=(120, 30))
        return completion("ok", usage=(200, 50))

    backend.handler = handler
    gw = gateway_factory(TELEMETRY_ENABLED="true", TELEMETRY_DB=str(tmp_path / "usage.db"),
                         TELEMETRY_FLUSH_INTERVAL="0.2")  # fmt: skip
    for model, stream in [("claude-opus-5-5", False), ("claude-haiku-5-5", True),
                          ("<script>alert(1)</script>", False)]:  # fmt: skip
        r = requests.post(gw.url + "/v1/messages", headers={"x-api-key": KEY, "Connection": "close"},
                          json={"model": model, "max_tokens": 50, "stream": stream,
                                "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
        assert r.status_code == 200
    requests.post(
        gw.url + "/v1/messages", headers={"x-api-key": KEY, "Connection": "close"}, json={}
    )
    time.sleep(0.5)  # one flush interval
    return gw


def test_unauthenticated_browser_is_sent_to_sign_in(dash):
    r = requests.get(dash.url + "/dashboard", allow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("/dashboard/login")
    form = requests.get(dash.url + "/dashboard/login")
    assert (
        form.status_code == 200 and 'method="post"' in form.text and 'type="password"' in form.text
    )


def test_sign_in_sets_a_signed_session_cookie_not_the_key(dash):
    s = requests.Session()
    bad = s.post(dash.url + "/dashboard/login", data={"key": "wrong"}, allow_redirects=False)
    assert bad.status_code == 401 and "not valid" in bad.text and not s.cookies
    ok = s.post(dash.url + "/dashboard/login", data={"key": KEY}, allow_redirects=False)
    assert ok.status_code == 303
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dashboard" in cookie
    assert KEY not in cookie
    page = s.get(dash.url + "/dashboard")
    assert (
        page.status_code == 200 and "<svg" in page.text and "Tokens per hour by model" in page.text
    )
    assert page.headers["cache-control"] == "no-store"
    # a tampered cookie is refused
    value = s.cookies.get("toktoken_dashboard")
    forged = value[:-1] + ("0" if value[-1] != "0" else "1")
    r = requests.get(
        dash.url + "/dashboard", cookies={"toktoken_dashboard": forged}, allow_redirects=False
    )
    assert r.status_code == 303
    # signing out ends it
    s.post(dash.url + "/dashboard/logout")
    assert s.get(dash.url + "/dashboard", allow_redirects=False).status_code == 303


def test_programs_can_use_the_api_key_header(dash):
    page = requests.get(dash.url + "/dashboard", headers={"x-api-key": KEY})
    assert page.status_code == 200 and "claude-haiku-5-5" in page.text


def test_client_supplied_names_are_escaped(dash):
    page = requests.get(dash.url + "/dashboard", headers={"x-api-key": KEY}).text
    assert (
        "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    )
    assert "<script" not in page.lower()


def test_dashboard_says_when_telemetry_is_off(gateway):
    page = requests.get(gateway.url + "/dashboard", headers={"x-api-key": KEY}).text
    assert "Telemetry is disabled" in page and "Backends" in page


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("chromium is missing in CI: .ci/run should have installed it")
    pytest.skip("chromium is not installed")


def test_dashboard_renders_in_headless_chromium(dash):
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1100})
            page.goto(dash.url + "/dashboard")
            assert page.url.endswith("/dashboard/login")  # redirected to sign in
            page.fill("input[name=key]", KEY)
            page.click("button[type=submit]")
            page.wait_for_url(dash.url + "/dashboard")
            assert "claude-" not in page.url and KEY not in page.url
            charts = page.locator("svg.chart")
            assert charts.count() == 2
            assert page.locator("svg.chart rect").count() >= 3  # bars drawn from real requests
            text = page.inner_text("body")
            for expected in ("claude-opus-5-5", "claude-haiku-5-5", "Requests and errors per hour",
                             "Time to first token", "Backends", "up"):  # fmt: skip
                assert expected in text, expected
            assert page.evaluate("document.scripts.length") == 0  # no JavaScript at all
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
