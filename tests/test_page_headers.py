"""Page headers on every plain HTTP answer (CSP, no framing, nosniff, no referrer, no-store),
DevTools working under its CSP in Chromium and refusing to be framed, and request targets
read as paths (``//x/devtools`` is not ``/devtools``)."""

from __future__ import annotations

import asyncio
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import UNIT, http_get, wait_until
from pydantic import BaseModel

from pl3xus_rx import SyncServer
from pl3xus_rx._http import HttpRequest, HttpResponse, page_csp
from pl3xus_rx.devtools import page

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

browser_test = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (.ci/run installs it)",
)

# a WebSocket handshake, less the Origin
HANDSHAKE = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


class Speed(BaseModel):
    value: float


def assert_page_headers(headers: dict[str, str], what: str, *, cache: str = "no-store") -> None:
    csp = headers.get("content-security-policy", "")
    assert "default-src 'none'" in csp, what
    assert "frame-ancestors 'none'" in csp, what
    assert headers.get("x-frame-options") == "DENY", what
    assert headers.get("x-content-type-options") == "nosniff", what
    assert headers.get("referrer-policy") == "no-referrer", what
    assert headers.get("cache-control") == cache, what


@pytest.mark.asyncio
async def test_every_answer_carries_the_page_headers() -> None:
    server = SyncServer()
    async with server.serve("127.0.0.1", 0) as (_, port):
        answers = {
            "/": (200, "text/html"),
            "/devtools": (200, "text/html"),
            "/devtools?token=t": (200, "text/html"),
            "/metrics": (200, "text/plain"),
            "/healthz": (200, "application/json"),
            "/nothing-here": (404, "text/plain"),
        }
        for target, (status, kind) in answers.items():
            got, headers, _ = await http_get(port, target)
            assert (got, headers["content-type"].split(";")[0]) == (status, kind), target
            assert_page_headers(headers, target)
        # the tab icon may be cached (it is static), and still has the rest
        got, headers, _ = await http_get(port, "/favicon.ico")
        assert got == 200
        assert_page_headers(headers, "/favicon.ico", cache="max-age=86400")
        # a handshake from a foreign Origin: our refusal, with the headers
        got, headers, body = await http_get(port, "/", HANDSHAKE + "Origin: http://evil.test\r\n")
        assert got == 403 and b"Origin" in body
        assert_page_headers(headers, "403 Origin refusal")
        # websockets' own refusal of a broken handshake (no key) has them too
        broken = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        got, headers, _ = await http_get(port, "/", broken)
        assert got == 400
        assert_page_headers(headers, "400 from websockets")
    assert server.net.statistics().accepted == 0


@pytest.mark.asyncio
async def test_refusals_of_devtools_and_a_failing_route_carry_them() -> None:
    from pl3xus_rx import Identity, bearer_tokens

    user = Identity.of("ann")  # no admin role
    server = SyncServer(authenticate=bearer_tokens({"ann": user}))

    def broken(request: HttpRequest) -> HttpResponse:
        raise RuntimeError("boom")

    server.net.add_route("/broken", broken)
    async with server.serve("127.0.0.1", 0) as (_, port):
        for target, status in [
            ("/devtools", 401),
            ("/devtools?token=ann", 403),
            ("/metrics", 401),
            ("/broken", 500),
        ]:
            got, headers, _ = await http_get(port, target)
            assert got == status, target
            assert_page_headers(headers, target)


def test_page_csp_hashes_the_inline_script_and_style_as_served() -> None:
    import base64
    import hashlib

    html = "<style>b{}</style><p>x</p><script>go()</script><script>more()</script>"

    def sha(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    csp = page_csp(html, connect=True)
    assert f"script-src {sha('go()')} {sha('more()')};" in csp
    assert f"style-src {sha('b{}')};" in csp
    assert "connect-src 'self'" in csp and "'unsafe-inline'" not in csp
    strict = page_csp("<p>no script</p>")
    assert "script-src" not in strict and "style-src" not in strict
    assert "connect-src" not in strict and strict.startswith("default-src 'none';")
    # a module script is hashed as well; scripts_from_self lets it import from this origin
    module = page_csp('<script type="module">go()</script>', scripts_from_self=True)
    assert f"script-src 'self' {sha('go()')};" in module
    assert "script-src 'self'" not in csp
    # the DevTools page: one script (a module: it imports /pl3xus.js), one style, nothing
    # inline elsewhere that CSP would block
    devtools = page()
    assert devtools.count("<script") == 1 and devtools.count('<script type="module">') == 1
    assert devtools.count("<style") == 1 and devtools.count("<style>") == 1
    assert " style=" not in devtools
    assert not any(f" on{event}=" in devtools for event in ("click", "load", "error", "input"))


def test_request_target_is_read_as_a_path() -> None:
    for target, path in [
        ("//x/devtools", "//x/devtools"),
        ("//x/devtools?token=t", "//x/devtools"),
        ("http://x/devtools", "http://x/devtools"),
        ("/devtools?token=t", "/devtools"),
        ("/a//b", "/a//b"),
        ("", "/"),
        ("?a=1", "/"),
    ]:
        assert HttpRequest.build(target).path == path, target
    assert HttpRequest.build("//x/y?token=t&token=u").query == {"token": ("t", "u")}


@pytest.mark.asyncio
async def test_double_slash_paths_are_not_served_as_another_route() -> None:
    server = SyncServer()
    seen: list[str] = []

    def record(request: HttpRequest) -> HttpResponse | None:
        seen.append(request.path)
        return HttpResponse(403, "recorded\n")

    server.net.add_admission_check(record)
    async with server.serve("127.0.0.1", 0) as (_, port):
        for target in ("//x/devtools", "//127.0.0.1/healthz", "//x/metrics", "//x/"):
            status, headers, _ = await http_get(port, target)
            assert status == 404, target
            assert_page_headers(headers, target)
        assert (await http_get(port, "/devtools"))[0] == 200
        # a handshake's path is read the same way (what admission checks see)
        status, _, _ = await http_get(port, "//x/devtools?token=t", HANDSHAKE)
        assert status == 403
    assert seen == ["//x/devtools"]


async def loopback_only(route: Any) -> None:
    if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
        await route.continue_()
    else:
        await route.abort()


class Attacker(BaseHTTPRequestHandler):
    """Another origin's pages: ``/`` frames DevTools (and, to show that framing works at
    all here, ``/ok`` of 127.0.0.1, another origin that allows it); ``/ok`` is framable."""

    target = ""

    def do_GET(self) -> None:
        if self.path == "/ok":
            body = "<!doctype html><p id=ok>framed fine</p>"
        else:
            port = self.server.server_address[1]
            body = (
                "<!doctype html><h1>win a prize</h1>"
                f'<iframe name="devtools" src="{self.target}" width="800" height="600"></iframe>'
                f'<iframe name="control" src="http://127.0.0.1:{port}/ok"></iframe>'
            )
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.asyncio
@browser_test
@pytest.mark.timeout(120)
async def test_another_origin_cannot_frame_devtools() -> None:
    from playwright.async_api import async_playwright, expect

    server = SyncServer()
    server.sync_component(Speed)
    server.world.spawn(Speed(value=1.0))
    handshakes: list[HttpRequest] = []

    def count(request: HttpRequest) -> None:
        handshakes.append(request)

    server.net.add_admission_check(count)
    attacker = ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        async with server.serve("127.0.0.1", 0) as (host, port), async_playwright() as p:
            Attacker.target = f"http://{host}:{port}/devtools"
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                context = await browser.new_context()
                await context.route("**/*", loopback_only)
                page = await context.new_page()
                console: list[str] = []
                page.on("console", lambda msg: console.append(msg.text))
                served: list[int] = []
                page.on(
                    "response",
                    lambda r: served.append(r.status) if r.url == Attacker.target else None,
                )
                # localhost: another origin than 127.0.0.1, the same (loopback) address space
                await page.goto(f"http://localhost:{attacker.server_address[1]}/")
                control = page.frame(name="control")
                assert control is not None
                await expect(control.locator("#ok")).to_have_text("framed fine", timeout=20_000)
                await wait_until(lambda: served, what="the frame's request")
                await wait_until(
                    lambda: any("frame-ancestors" in line for line in console),
                    what="Chromium's refusal to display the frame",
                )
                await asyncio.sleep(1.0 * UNIT)  # time the page would need to connect
                frame = page.frame(name="devtools")
                assert frame is not None
                # nothing of DevTools loaded in the frame (Chromium shows its error page)
                assert not frame.url.startswith(f"http://{host}:{port}/"), frame.url
                assert "DevTools" not in (await frame.content())
                assert handshakes == [] and server.net.statistics().accepted == 0
                assert served == [200]  # the server answered; the browser refused to show it
            finally:
                await browser.close()
    finally:
        attacker.shutdown()
        attacker.server_close()


@pytest.mark.asyncio
@browser_test
@pytest.mark.timeout(180)
async def test_devtools_runs_under_its_csp_without_violations() -> None:
    from playwright.async_api import async_playwright, expect

    server = SyncServer()
    server.sync_component_builder(Speed).with_default_entity_policy().build()
    robot = server.world.spawn(Speed(value=1.5))
    async with server.serve("127.0.0.1", 0) as (host, port), async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 900})
            await context.route("**/*", loopback_only)
            # every violation a page reports, on every load (added by Playwright, outside the
            # page's CSP)
            violations: list[str] = []
            await context.expose_function("__cspReport", lambda text: violations.append(text))
            await context.add_init_script(
                "document.addEventListener('securitypolicyviolation',"
                " e => window.__cspReport(e.violatedDirective + ' ' + e.blockedURI));"
            )
            page = await context.new_page()
            console: list[str] = []
            page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            response = await page.goto(f"http://{host}:{port}/devtools")
            assert response is not None
            csp = await response.header_value("content-security-policy")
            assert csp is not None and "connect-src 'self'" in csp
            # the WebSocket (ws: under connect-src 'self'), the script and the style all work
            await expect(page.locator("#conn")).to_have_text("open", timeout=20_000)
            await expect(page.locator("body")).not_to_have_class("stale", timeout=20_000)
            row = page.locator(f'.row[data-entity="{robot}"]')
            await expect(row).to_contain_text("Speed", timeout=20_000)
            header = await page.locator("header").evaluate("e => getComputedStyle(e).display")
            assert header == "flex"  # the stylesheet applied
            # the rows are placed by script-set styles (CSSOM, which CSP allows)
            await page.locator('#types button[data-type="Speed"]').click()
            await row.click()
            await page.click("#take")
            await expect(page.locator("#detail-holder")).to_have_text("you", timeout=20_000)
            await page.locator("#conns-box summary").click()
            await page.locator("#log-box summary").click()
            await expect(page.locator("#conns")).to_contain_text("json", timeout=20_000)
            # the landing page's strict policy: nothing blocked there either
            await page.goto(f"http://{host}:{port}/")
            await expect(page.locator("h1")).to_have_text("pl3xus_rx")
            await page.goto(f"http://{host}:{port}/devtools")
            await expect(page.locator("#conn")).to_have_text("open", timeout=20_000)
            await asyncio.sleep(0.5 * UNIT)
            assert violations == []
            refused = [line for line in console if "Refused" in line or "Content Security" in line]
            assert refused == [] and errors == []
        finally:
            await browser.close()
