"""The React hooks as shipped (/pl3xus-react.js over /pl3xus.js) in Debian's Chromium against a
real server: a small React app (tests/web_react_app.tsx), type-checked against the shipped
.d.ts files and bundled with esbuild at test time, uses every hook on live data."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from browser import ARGS, CHROMIUM, loopback_only, needs_chromium
from pydantic import BaseModel, Field

from pl3xus_rx import SyncServer, World
from pl3xus_rx._http import HttpRequest, HttpResponse
from pl3xus_rx.typescript import typescript_for

ROOT = Path(__file__).parent.parent
JS = ROOT / "js"
BIN = JS / "node_modules" / ".bin"
WEB = ROOT / "src" / "pl3xus_rx" / "web"
APP = Path(__file__).parent / "web_react_app.tsx"
CI = bool(os.environ.get("CI"))

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.timeout(240),
    needs_chromium,
    pytest.mark.skipif(
        not (JS / "node_modules").is_dir() and not CI,
        reason="js/node_modules is absent (npm ci in js/ installs React and esbuild)",
    ),
]

# the import map finds React (one bundle with react-dom) for the app and for /pl3xus-react.js
IMPORT_MAP = json.dumps({"imports": {"react": "/t/react.js", "react-dom/client": "/t/react.js"}})
PAGE = (
    '<!doctype html><html><head><meta charset="utf-8"><title>t</title>'
    f'<script type="importmap">{IMPORT_MAP}</script>'
    '<script type="module" src="/t/app.js"></script></head>'
    '<body><div id="root"></div></body></html>'
)


class Place(BaseModel):
    x: float = Field(ge=-1000, le=1000)
    y: float


class Label(BaseModel):
    text: str


class Move(BaseModel):
    dx: float = Field(ge=-100, le=100)
    dy: float = 0.0


class Near(BaseModel):
    limit: float


class Count(BaseModel):
    n: int


def app() -> tuple[SyncServer, dict[str, int], list[Near]]:
    server = SyncServer()
    server.sync_component_builder(Place).with_default_entity_policy().build()
    server.sync_component_builder(Label).read_only().build()
    asked: list[Near] = []

    def move(world: World, ctx: Any, entity: int, request: Move) -> Place:
        place = world.get(entity, Place)
        assert place is not None
        new = Place(x=place.x + request.dx, y=place.y + request.dy)
        world.insert(entity, new)
        return new

    def near(world: World, query: Near) -> Count:
        asked.append(query)
        return Count(n=sum(1 for _, place in world.query(Place) if place.x < query.limit))

    server.request(Move).targeted().with_default_entity_policy().returns(Place).register(move)
    server.query(Near).returns(Count).register(near)
    world = server.world
    a = world.spawn(Place(x=1, y=2), Label(text="a"))
    b = world.spawn(Place(x=3, y=4), Label(text="b"))
    return server, {"a": a, "b": b}, asked


def run(*command: str | Path, cwd: Path, stdin: str | None = None) -> None:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{command[0]} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The app and React, built: the app type-checked first (strict, the shipped .d.ts files
    checked too)."""
    if not (BIN / "esbuild").exists():
        pytest.fail("js/node_modules has no esbuild: run `npm ci` in js/")
    folder = tmp_path_factory.mktemp("react-app")
    (folder / "app.tsx").write_text(APP.read_text())
    (folder / "types.ts").write_text(typescript_for(app()[0]))
    types = JS / "node_modules" / "@types"
    config = {
        "compilerOptions": {
            "strict": True,
            "noEmit": True,
            "skipLibCheck": False,
            "target": "ES2020",
            "lib": ["ES2020", "DOM", "DOM.Iterable"],
            "module": "ESNext",
            "moduleResolution": "Bundler",
            "jsx": "react",
            "types": [],
            "paths": {
                "/pl3xus.js": [str(WEB / "pl3xus.d.ts")],
                "/pl3xus-react.js": [str(WEB / "pl3xus-react.d.ts")],
                "react": [str(types / "react" / "index.d.ts")],
                "react-dom/client": [str(types / "react-dom" / "client.d.ts")],
            },
        },
        "files": ["app.tsx", "types.ts"],
    }
    (folder / "tsconfig.json").write_text(json.dumps(config))
    run(BIN / "tsc", "-p", folder / "tsconfig.json", cwd=folder)

    # React as one ES module with its names (its npm package is CommonJS)
    names = subprocess.run(
        ["node", "-p", 'Object.keys(require("react")).filter(k => k !== "default").join(",")'],
        cwd=JS,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    vendor = (
        'import React from "react"; import * as client from "react-dom/client";\n'
        f"export default React; export const {{ {names} }} = React;\n"
        "export const { createRoot, hydrateRoot } = client;\n"
    )
    common = ["--bundle", "--format=esm", "--target=es2020", "--log-level=warning"]
    development = '--define:process.env.NODE_ENV="development"'  # (React's warnings on)
    run(
        BIN / "esbuild",
        *common,
        development,
        "--sourcefile=react.js",
        f"--outfile={folder / 'react.js'}",
        cwd=JS,
        stdin=vendor,
    )
    externals = ["react", "react-dom/client", "/pl3xus.js", "/pl3xus-react.js"]
    run(
        BIN / "esbuild",
        folder / "app.tsx",
        *common,
        "--jsx=transform",
        *(f"--external:{name}" for name in externals),
        f"--outfile={folder / 'app.js'}",
        cwd=folder,
    )
    app_js = (folder / "app.js").read_bytes()
    assert b'from "/pl3xus-react.js"' in app_js and b'from "/pl3xus.js"' in app_js
    return {"react": (folder / "react.js").read_bytes(), "app": app_js}


def serve_app(server: SyncServer, bundles: dict[str, bytes]) -> None:
    digest = base64.b64encode(hashlib.sha256(IMPORT_MAP.encode()).digest()).decode()
    csp = f"default-src 'none'; script-src 'self' 'sha256-{digest}'; connect-src 'self'"

    def page(request: HttpRequest) -> HttpResponse:
        headers = {"Content-Security-Policy": csp}
        return HttpResponse(200, PAGE, "text/html; charset=utf-8", headers)

    def script(name: str) -> Any:
        def answer(request: HttpRequest) -> HttpResponse:
            return HttpResponse(200, bundles[name], "text/javascript; charset=utf-8")

        return answer

    server.net.add_route("/react", page)
    server.net.add_route("/t/react.js", script("react"))
    server.net.add_route("/t/app.js", script("app"))


async def until(test: Any, seconds: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not test():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {test}")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
async def test_every_hook_shows_live_data_in_a_react_app(
    encoding: str, bundles: dict[str, bytes]
) -> None:
    from playwright.async_api import async_playwright, expect

    server, ids, asked = app()
    serve_app(server, bundles)
    a, b = ids["a"], ids["b"]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            context = await browser.new_context()
            await context.route("**/*", loopback_only)
            page = await context.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            text = page.locator

            async with server.serve("127.0.0.1", 0) as (host, port):
                await page.goto(f"http://{host}:{port}/react?a={a}&encoding={encoding}")
                await expect(text("#places")).to_have_text(f"{a}:1,2 {b}:3,4")
                await expect(text("#one")).to_have_text("1,2")
                await expect(text("#labels")).to_have_text("2 labels")
                await expect(text("#connection")).to_have_text("open fresh aged")
                await expect(text("#near")).to_have_text("ok:2")
                await expect(text("#control")).to_have_text("free")

                # writing needs control: refused, then taken (mine), then written
                await text("#set").click()
                await expect(text("#mutation")).to_have_text("Forbidden false -")
                await text("#take").click()
                mine = await page.evaluate("window.client.connectionId")
                await expect(text("#control")).to_have_text(f"holder={mine} by=anonymous mine=true")
                await text("#set").click()
                await expect(text("#mutation")).to_have_text("no error")
                await expect(text("#one")).to_have_text("10,20")
                await expect(text("#places")).to_have_text(f"{a}:10,20 {b}:3,4")
                await text("#bad").click()  # (the refusal, by field)
                await expect(text("#mutation")).to_have_text("InvalidValue true x")
                assert server.world.get(a, Place) == Place(x=10, y=20)

                # a request: its response, then a refusal by field
                await text("#move").click()
                await expect(text("#request")).to_have_text("no error / 11,21")
                await expect(text("#one")).to_have_text("11,21")
                await text("#far").click()
                await expect(text("#request")).to_have_text("InvalidValue true dx / 11,21")

                # the query is asked once, however often its component renders, until the
                # server invalidates it
                await expect(text("#near")).to_have_text("ok:2")
                assert len(asked) == 1
                server.invalidate(Near)
                await expect(text("#near")).to_have_text("ok:1")
                assert len(asked) == 2

                # the server changes b: the list follows; the component of a alone does not
                # render again
                one = await page.evaluate("window.renders.one")
                server.world.insert(b, Place(x=-1, y=-1))
                await expect(text("#places")).to_have_text(f"{a}:11,21 {b}:-1,-1")
                assert await page.evaluate("window.renders.one") == one

                await text("#release").click()
                await expect(text("#control")).to_have_text("free")
                await expect(text("#control-error")).to_have_text("no error")

                # a view is held while a component shows it: Place (shared by two
                # components), EntityControl, Label; then Label no more
                assert server.engine.statistics().subscriptions == 3
                await text("#toggle").click()
                await expect(text("#labels")).to_have_count(0)
                await until(lambda: server.engine.statistics().subscriptions == 2)
                assert problems == []

            # the server is gone: the connection says so
            await expect(text("#connection")).to_contain_text("stale")
            await expect(text("#connection")).not_to_contain_text("open")
            lost = [p for p in problems if not p.startswith("WebSocket connection to")]
            assert lost == []
        finally:
            await browser.close()


async def test_the_docs_react_example_type_checks(tmp_path: Path) -> None:
    """docs/web.md's React example, against the demo's generated types and the shipped .d.ts
    files, compiles under tsc --strict (a hook or model change that breaks it fails here)."""
    from pl3xus_rx.demo import register_cell

    if not (BIN / "tsc").exists():
        pytest.fail("js/node_modules has no tsc: run `npm ci` in js/")
    text = (ROOT / "docs" / "web.md").read_text()
    section = text.split("## React", 1)[1].split("\n## ", 1)[0]
    block = section.split("```tsx\n", 1)[1].split("```", 1)[0]
    (tmp_path / "page.tsx").write_text(block)
    vendor = tmp_path / "vendor"  # (the shipped files, as the docs say to vendor them)
    vendor.mkdir()
    for name in ("pl3xus.d.ts", "pl3xus-react.d.ts"):
        (vendor / name).write_bytes((WEB / name).read_bytes())
    server = SyncServer()
    register_cell(server)
    (tmp_path / "types.ts").write_text(typescript_for(server))
    types = JS / "node_modules" / "@types"
    config = {
        "compilerOptions": {
            "strict": True,
            "noEmit": True,
            "target": "ES2020",
            "lib": ["ES2020", "DOM", "DOM.Iterable"],
            "module": "ESNext",
            "moduleResolution": "Bundler",
            "jsx": "react-jsx",
            "types": [],
            "paths": {
                "react": [str(types / "react" / "index.d.ts")],
                "react/jsx-runtime": [str(types / "react" / "jsx-runtime.d.ts")],
                "react-dom/client": [str(types / "react-dom" / "client.d.ts")],
            },
        },
        "files": ["page.tsx", "types.ts"],
    }
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    await asyncio.to_thread(run, BIN / "tsc", "-p", tmp_path / "tsconfig.json", cwd=tmp_path)
