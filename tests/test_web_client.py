"""The browser client (js/, served as /pl3xus.js) in Debian's Chromium against a real server:
both encodings, snapshots, read-your-writes, typed refusals, queries and invalidation,
control, spawn and despawn, messages and notifications, a server restart."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from browser import ARGS, CHROMIUM, loopback_only, needs_chromium
from pydantic import BaseModel, Field

from pl3xus_rx import NotFound, SyncServer, World
from pl3xus_rx._http import HttpRequest, HttpResponse
from pl3xus_rx.web import ClientAssets

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(240), needs_chromium]

# a page as an application would write it: one module script importing the served client
SCRIPT = 'import * as pl3xus from "/pl3xus.js"; window.pl3xus = pl3xus; window.ready = true;'
PAGE = (
    '<!doctype html><html><head><meta charset="utf-8"><title>t</title></head><body>'
    f'<script type="module">{SCRIPT}</script></body></html>'
)


class Place(BaseModel):
    x: float
    y: float


class Label(BaseModel):
    text: str


class Move(BaseModel):
    dx: float = Field(ge=-100, le=100)
    dy: float = 0.0


class Find(BaseModel):
    text: str


class Found(BaseModel):
    entity: int


class Alarm(BaseModel):
    text: str
    level: int


def app() -> tuple[SyncServer, dict[str, int]]:
    server = SyncServer()
    server.sync_component_builder(Place).with_default_entity_policy().build()
    server.sync_component_builder(Label).read_only().build()
    server.register_message(Alarm)
    server.allow_spawn()
    server.allow_despawn()

    def move(world: World, ctx: Any, entity: int, request: Move) -> Place:
        place = world.get(entity, Place)
        assert place is not None
        new = Place(x=place.x + request.dx, y=place.y + request.dy)
        world.insert(entity, new)
        return new

    def find(world: World, query: Find) -> Found:
        for entity, label in world.query(Label):
            if label.text == query.text:
                return Found(entity=entity)
        raise NotFound(f"no robot is labelled {query.text!r}")

    server.request(Move).targeted().with_default_entity_policy().returns(Place).register(move)
    server.query(Find).returns(Found).register(find)

    def page(request: HttpRequest) -> HttpResponse:
        digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
        csp = f"default-src 'none'; script-src 'self' 'sha256-{digest}'; connect-src 'self'"
        return HttpResponse(200, PAGE, "text/html; charset=utf-8", {"Content-Security-Policy": csp})

    server.net.add_route("/app", page)
    world = server.world
    a = world.spawn(Place(x=1, y=2), Label(text="a"))
    b = world.spawn(Place(x=3, y=4), Label(text="b"))
    return server, {"a": a, "b": b}


async def until(page: Any, expression: str, seconds: float = 10) -> None:
    """Polls ``expression`` in the page until it is true (the page's CSP forbids eval, so
    Playwright's wait_for_function cannot run there)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await page.evaluate(expression):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        await asyncio.sleep(0.02)


async def open_page(p: Any, url: str) -> tuple[Any, Any, list[str]]:
    browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
    context = await browser.new_context()
    await context.route("**/*", loopback_only)
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    await page.goto(url)
    await until(page, "window.ready === true", 20)
    return browser, page, problems


# the browser side: everything a dashboard does, returning what it saw
SCENARIO = (Path(__file__).parent / "web_client_scenario.js").read_text()


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
async def test_the_browser_client_does_what_a_dashboard_needs(encoding: str) -> None:
    from playwright.async_api import async_playwright

    server, ids = app()
    async with server.serve("127.0.0.1", 0) as (host, port), async_playwright() as p:
        browser, page, problems = await open_page(p, f"http://{host}:{port}/app")
        try:
            url = f"ws://{host}:{port}/"
            seen = await asyncio.wait_for(page.evaluate(SCENARIO, [url, encoding, ids]), 60)
            assert seen["version"] == 2 and seen["identity"] == "anonymous"
            a, b = str(ids["a"]), str(ids["b"])
            assert seen["first"] == {a: {"x": 1, "y": 2}, b: {"x": 3, "y": 4}}
            assert seen["afterMutate"] == {"x": 10, "y": 20}
            assert seen["refused"] == ["InvalidValue", True, ["dx"]]
            assert seen["readOnly"] == ["Forbidden", True]
            assert seen["missing"] is True
            assert seen["moved"] == {"x": 4, "y": 5} and seen["movedShown"] == {"x": 4, "y": 5}
            assert seen["found"] == {"entity": ids["b"]} and seen["query"] == {"entity": ids["a"]}
            assert seen["holder"] is True
            assert seen["spawnedShown"] == {"x": 7, "y": 7}
            assert server.world.get(ids["a"], Place) == Place(x=10, y=20)

            server.publish(Alarm(text="hot", level=2))
            server.notify("door open", level="warning", context={"door": 1})
            await until(page, "window.alarms.length === 1")
            assert await page.evaluate("window.alarms") == [{"text": "hot", "level": 2}]
            await until(page, "window.client.notifications.value.length === 1")
            note = await page.evaluate("window.client.notifications.value[0]")
            assert note == {"level": "warning", "text": "door open", "context": {"door": 1}}
            # the server changes a value: the view follows
            server.world.insert(ids["b"], Place(x=-1, y=-1))
            await until(page, f"window.places.map.get({ids['b']})?.x === -1")
            assert problems == []
        finally:
            await browser.close()


def get(
    url: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, {k.lower(): v for k, v in refused.headers.items()}, refused.read()


async def test_the_client_is_served_to_any_origin_and_cached_by_content() -> None:
    server = SyncServer()
    async with server.serve("127.0.0.1", 0) as (host, port):
        base = f"http://{host}:{port}"
        status, headers, body = await asyncio.to_thread(
            get, f"{base}/pl3xus.js", {"Origin": "http://elsewhere.test"}
        )
        assert status == 200 and headers["content-type"].startswith("text/javascript")
        assert headers["access-control-allow-origin"] == "*"
        assert b"connect" in body
        etag = headers["etag"]
        status, _, again = await asyncio.to_thread(
            get, f"{base}/pl3xus.js", {"If-None-Match": etag}
        )
        assert status == 304 and again == b""
        for header, expected in (
            (f'"other", W/{etag}', 304),
            ("*", 304),
            (f'"x{etag.strip(chr(34))}y"', 200),  # (a tag that merely contains it)
        ):
            status, _, _ = await asyncio.to_thread(
                get, f"{base}/pl3xus.js", {"If-None-Match": header}
            )
            assert status == expected, header
        hashed = ClientAssets().hashed_path()
        assert hashed is not None and etag.strip('"') in hashed
        status, headers, pinned = await asyncio.to_thread(get, f"{base}{hashed}")
        assert pinned == body and "immutable" in headers["cache-control"]
        status, _, _ = await asyncio.to_thread(get, f"{base}/pl3xus.d.ts")
        assert status == 200
        # HEAD: the headers alone; any other method: 405 (every route only reads)
        status, headers, empty = await asyncio.to_thread(get, f"{base}/pl3xus.js", None, "HEAD")
        assert status == 200 and empty == b"" and headers["content-length"] == str(len(body))
        for method in ("PUT", "DELETE", "POST"):
            status, headers, _ = await asyncio.to_thread(get, f"{base}/pl3xus.js", None, method)
            assert status == 405 and headers["allow"] == "GET, HEAD", method


async def test_a_wire_name_cannot_be_proto() -> None:
    server = SyncServer()
    with pytest.raises(ValueError, match="__proto__"):
        server.sync_component_builder(Label).name("__proto__").build()
    with pytest.raises(ValueError, match="__proto__"):
        server.register_message(Alarm, "__proto__")
