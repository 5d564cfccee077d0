"""examples/web_hmi: the demo cell's web HMI, a plain JavaScript page served by
``pl3xus-rx demo --serve``: its generated types are fresh, it type-checks, the folder is
served by the rules of ``--serve``, and in Chromium it does what an operator needs, across a
restart of the server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from browser import ARGS, CHROMIUM, needs_chromium
from conftest import UNIT

from pl3xus_rx import SyncServer
from pl3xus_rx._static import APP_CSP, serve_directory
from pl3xus_rx.demo import register_cell
from pl3xus_rx.typescript import javascript_for

ROOT = Path(__file__).resolve().parent.parent
HMI = ROOT / "examples" / "web_hmi"
TSC = ROOT / "js" / "node_modules" / ".bin" / "tsc"
COMMAND = "pl3xus-rx typescript pl3xus_rx.demo:register_cell"


def test_the_committed_types_are_a_fresh_generation() -> None:
    server = SyncServer()
    register_cell(server)
    js, dts = javascript_for(server, command=COMMAND)
    fix = f"cd examples/web_hmi && {COMMAND} -o types.js"
    assert (HMI / "types.js").read_text() == js, f"types.js is stale: {fix}"
    assert (HMI / "types.d.ts").read_text() == dts, f"types.d.ts is stale: {fix}"


@pytest.mark.slow
def test_the_page_type_checks_against_the_generated_types() -> None:
    if not TSC.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{TSC} is missing: CI installs it with `cd js && npm ci`")
        pytest.skip("no TypeScript compiler: run `cd js && npm ci`")
    result = subprocess.run(
        [str(TSC), "-p", str(HMI / "tsconfig.json")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------- --serve's rules


def _request(port: int, path: str, host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = f"GET {path} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\n"
        sock.sendall(f"{head}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


@pytest.mark.asyncio
async def test_serve_answers_the_page_files_of_one_folder_and_nothing_else(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!doctype html><p>hi</p>")
    (site / "app.js").write_text("export const a = 1;\n")
    (site / "types.d.ts").write_text("export declare const a: number;\n")
    (site / "look.css").write_text("p { color: red }\n")
    (site / "logo.png").write_bytes(b"\x89PNG\r\n")
    (site / "notes.md").write_text("not served")
    (site / "run.py").write_text("not served")
    (site / ".hidden.js").write_text("not served")
    (site / "sub").mkdir()
    (site / "sub" / "deep.js").write_text("not served")
    (tmp_path / "secret.js").write_text("outside")
    (site / "leak.js").symlink_to(tmp_path / "secret.js")
    (site / "alias.js").symlink_to(site / "app.js")  # (inside: served)

    server = SyncServer()
    served = serve_directory(server.net, site)
    assert sorted(served) == sorted(
        ["/app", "/app/"]
        + [f"/app/{n}" for n in ("alias.js", "app.js", "index.html", "logo.png", "look.css")]
        + ["/app/types.d.ts"]
    )
    async with server.serve("127.0.0.1", 0) as (_, port):

        async def get(path: str, host: str | None = None) -> tuple[int, dict[str, str], bytes]:
            return await asyncio.to_thread(_request, port, path, host)

        for path, content_type in (
            ("/app/", "text/html; charset=utf-8"),
            ("/app/index.html", "text/html; charset=utf-8"),
            ("/app/app.js", "text/javascript; charset=utf-8"),
            ("/app/types.d.ts", "application/typescript; charset=utf-8"),
            ("/app/look.css", "text/css; charset=utf-8"),
            ("/app/logo.png", "image/png"),
        ):
            status, headers, _ = await get(path)
            assert (status, headers["content-type"]) == (200, content_type), path
            assert headers["content-security-policy"] == APP_CSP
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["x-frame-options"] == "DENY"
        status, headers, body = await get("/app/")
        assert body == b"<!doctype html><p>hi</p>"
        status, headers, _ = await get("/app")
        assert (status, headers["location"]) == (308, "/app/")
        for path in (
            "/app/notes.md",
            "/app/run.py",
            "/app/.hidden.js",
            "/app/sub/deep.js",
            "/app/sub/",
            "/app/leak.js",
            "/app/../secret.js",
            "/app/%2e%2e/secret.js",
            "/secret.js",
        ):
            status, _, body = await get(path)
            assert status == 404 and b"outside" not in body, path
        # a file added after startup is not served: the folder was read once
        (site / "later.js").write_text("late")
        assert (await get("/app/later.js"))[0] == 404
        # the DNS-rebinding check applies as on every route
        status, _, _ = await get("/app/", host="rebind.example:80")
        assert status == 403
    assert "script-src 'self'" in APP_CSP and "connect-src 'self'" in APP_CSP
    assert "style-src 'self'" in APP_CSP and "unsafe" not in APP_CSP


def test_serve_refuses_a_folder_it_cannot_serve(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        serve_directory(SyncServer().net, tmp_path / "missing")
    (tmp_path / "only.md").write_text("x")
    with pytest.raises(ValueError, match="no file to serve"):
        serve_directory(SyncServer().net, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "pl3xus_rx", "demo", "--serve", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("not a directory"), result.stderr


# ---------------------------------------------------------------------- in Chromium


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_demo(port: int) -> asyncio.subprocess.Process:
    """``pl3xus-rx demo --serve examples/web_hmi --port PORT``, once it says it is up."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pl3xus_rx",
        "demo",
        "--serve",
        str(HMI),
        "--port",
        str(port),
        "--sensors",
        "8",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    lines = []
    try:
        while not lines or not lines[-1].startswith("Ctrl-C"):
            line = await asyncio.wait_for(proc.stdout.readline(), 30 * UNIT)
            assert line, f"the demo ended: {lines}"
            lines.append(line.decode())
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    assert f"  App:       http://127.0.0.1:{port}/app/\n" in lines
    return proc


async def stop_demo(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 20 * UNIT)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def text(page: Any, selector: str) -> str:
    return str(await page.locator(selector).first.text_content() or "")


async def until(page: Any, selector: str, test: Any, seconds: float = 10, what: str = "") -> str:
    """Polls the text of ``selector`` until ``test(text)``; returns it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds * UNIT
    while True:
        found = await text(page, selector) if await page.locator(selector).count() else ""
        if test(found):
            return found
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or selector}: {found!r}")
        await asyncio.sleep(0.05)


@needs_chromium
@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.timeout(240)
async def test_the_hmi_in_chromium_across_a_server_restart() -> None:
    from playwright.async_api import async_playwright

    port = free_port()
    proc = await start_demo(port)
    # the one console error allowed: the browser's own report of a refused WebSocket while
    # the server is down, naming this server's URL
    refused = re.compile(
        rf"^WebSocket connection to 'ws://127\.0\.0\.1:{port}/' failed: "
        r"Error in connection establishment: net::ERR_CONNECTION_REFUSED$"
    )
    problems: list[str] = []
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                page = await browser.new_page()
                page.on(
                    "console",
                    lambda m: (
                        problems.append(m.text)
                        if m.type == "error" and not refused.match(m.text)
                        else None
                    ),
                )
                page.on("pageerror", lambda e: problems.append(str(e)))
                await page.goto(f"http://127.0.0.1:{port}/app/")

                # robots appear, with live values
                await until(page, "#connection", lambda t: t == "live", 20)
                robots = page.locator(".robot")
                for _ in range(100):
                    if await robots.count() == 3:
                        break
                    await asyncio.sleep(0.05)
                assert await robots.count() == 3
                robot = robots.first
                assert await robot.locator("h2").text_content() == "robot 1"
                first = await until(page, ".robot .pose", lambda t: t.startswith("x "))
                await until(page, ".robot .pose", lambda t: t != first, what="the pose to move")
                assert "running" in await text(page, ".robot .status")
                me = await until(page, "#identity", lambda t: "connection" in t)
                assert me.startswith("you: anonymous, connection ")

                # control: take it, and the page shows it is ours
                await until(page, ".robot .holder", lambda t: t == "control: nobody")
                await robot.locator("button.take").click()
                await until(page, ".robot .holder", lambda t: t == "control: you")

                # jog, and a refused jog shown by field
                await robot.locator("input[name=dx]").fill("25")
                await robot.locator("input[name=dy]").fill("-5")
                await robot.locator("button.do-jog").click()
                await until(page, ".robot .pose", lambda t: t.startswith("x 25.0 mm  y -5.0 mm"))
                await robot.locator("input[name=dx]").fill("500")
                await robot.locator("button.do-jog").click()
                dx_error = await until(page, ".robot [data-error-for=dx]", bool)
                assert "100" in dx_error
                assert await text(page, ".robot [data-error-for=dy]") == ""
                assert (await text(page, ".robot .pose")).startswith("x 25.0 mm")

                # set the speed, and a refused speed shown by field
                await robot.locator("input[name=speed]").fill("0.8")
                await robot.locator("button.do-speed").click()
                await until(page, ".robot .status", lambda t: t == "running, speed 80 %")
                await robot.locator("input[name=speed]").fill("2")
                await robot.locator("button.do-speed").click()
                await until(page, ".robot [data-error-for=speed]", bool)
                await robot.locator("button.stop").click()
                await until(page, ".robot .status", lambda t: t.startswith("stopped"))

                # the program library: the page's own request invalidates the list it shows,
                # and the server's notification of it comes as a toast
                await until(page, "#programs", lambda t: "no programs yet" in t)
                await page.locator("#new-program input[name=name]").fill("weld seam")
                await page.locator("#new-program button.create").click()
                await until(page, "#programs .program .name", lambda t: t == "weld seam")
                await until(page, ".toast.success", lambda t: "'weld seam' created" in t)
                await page.locator("#new-program input[name=name]").fill("weld seam")
                await page.locator("#new-program button.create").click()
                taken = await until(page, "#new-program [data-error-for=name]", bool)
                assert "exists already" in taken
                await page.locator("#programs .program button.delete").click()
                await until(page, "#programs", lambda t: "no programs yet" in t)
                await until(page, ".toast.warning", lambda t: "deleted" in t)

                # the server goes: the page says so within seconds, and greys its values
                await stop_demo(proc)
                await until(page, "#connection", lambda t: "disconnected" in t, 5)
                assert "stale" in (await page.locator("body").get_attribute("class") or "")
                assert (
                    await page.locator(".robot .pose").first.evaluate(
                        "e => getComputedStyle(e).opacity"
                    )
                    == "0.6"
                )
                await until(page, "#age", lambda t: re.fullmatch(r"data [1-9]\d* s old", t), 5)

                # and comes back on the same port: the page is live again, without a reload
                proc = await start_demo(port)
                await until(page, "#connection", lambda t: t == "live", 30)
                assert "stale" not in (await page.locator("body").get_attribute("class") or "")
                assert await text(page, "#age") == ""
                assert await robots.count() == 3
                # (a new cell: robot 1 runs again, nobody controls it, no programs)
                again = await until(page, ".robot .pose", lambda t: t.startswith("x 0.0 mm"))
                await until(page, ".robot .pose", lambda t: t != again, what="live again")
                await until(page, ".robot .holder", lambda t: t == "control: nobody")
                await until(page, "#programs", lambda t: "no programs yet" in t)
                await robot.locator("button.take").click()
                await until(page, ".robot .holder", lambda t: t == "control: you")
                assert problems == []
            finally:
                await browser.close()
    finally:
        await stop_demo(proc)


# ---------------------------------------------------------------------- docs/web.md's first page


def first_page(directory: Path) -> None:
    """docs/web.md's "A first page", written to ``directory`` with the demo's types."""
    text = (ROOT / "docs" / "web.md").read_text()
    section = text[text.index("## A first page") : text.index("## The API")]
    html = re.findall(r"```html\n(.*?)```", section, re.S)
    js = re.findall(r"```js\n(.*?)```", section, re.S)
    assert len(html) == 1 and len(js) == 1
    (directory / "index.html").write_text(html[0])
    (directory / "app.js").write_text(js[0])
    server = SyncServer()
    register_cell(server)
    types_js, types_dts = javascript_for(server, command=COMMAND)
    (directory / "types.js").write_text(types_js)
    (directory / "types.d.ts").write_text(types_dts)


@pytest.mark.slow
def test_the_docs_first_page_type_checks(tmp_path: Path) -> None:
    if not TSC.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{TSC} is missing: CI installs it with `cd js && npm ci`")
        pytest.skip("no TypeScript compiler: run `cd js && npm ci`")
    first_page(tmp_path)
    config = json.loads((HMI / "tsconfig.json").read_text())
    client_types = ROOT / "src" / "pl3xus_rx" / "web" / "pl3xus.d.ts"
    config["compilerOptions"]["paths"] = {"/pl3xus.js": [str(client_types)]}
    config["include"] = ["app.js", "types.d.ts"]
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    result = subprocess.run(
        [str(TSC), "-p", str(tmp_path / "tsconfig.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_chromium
@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_the_docs_first_page_shows_the_robots_live(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    from pl3xus_rx.demo import Pose, build_cell

    first_page(tmp_path)
    server = SyncServer()
    cell = build_cell(server, sensors=2)
    serve_directory(server.net, tmp_path)
    problems: list[str] = []
    async with server.serve("127.0.0.1", 0) as (host, port), async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = await browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            await page.goto(f"http://{host}:{port}/app/")
            await until(page, "#connection", lambda t: t == "live", 20)
            await until(page, "#robots", lambda t: "robot 3: x 800.0 mm, y 0.0 mm" in t)
            assert await page.locator("#robots li").count() == 3
            server.world.insert(cell["robots"][0], Pose(x=12.5, y=-3, theta=0))
            await until(page, "#robots li", lambda t: t == "robot 1: x 12.5 mm, y -3.0 mm")
            assert problems == []
        finally:
            await browser.close()
