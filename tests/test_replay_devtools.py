"""DevTools on a replay server, in Chromium: the time scrubber seeks, plays and pauses, and
the rows show the recorded instant; on a live server there is no scrubber."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from browser import ARGS, CHROMIUM, loopback_only, needs_chromium
from conftest import wait_until
from pydantic import BaseModel

from pl3xus_rx import SyncServer, SyncSettings
from pl3xus_rx.recording import ReplayServer, open_recording

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180), needs_chromium]


class Gauge(BaseModel):
    value: float


async def record(path: Path) -> tuple[int, list[float]]:
    """A gauge counting 1..30, one value per flush; the times of the flushes."""
    server = SyncServer(sync=SyncSettings(max_update_rate_hz=100), record=path)
    server.sync_component(Gauge)
    gauge = server.world.spawn(Gauge(value=0))
    times: list[float] = []
    async with server.serve("127.0.0.1", 0):
        for i in range(1, 31):
            server.world.insert(gauge, Gauge(value=i))
            await asyncio.sleep(0.03)
    recording = open_recording(path)
    for _index, kind, t, _body in recording.records(0):
        if kind.name == "BATCH":
            times.append(t)
    return int(gauge), times


async def poll(page: Any, script: str, what: str, seconds: float = 15) -> Any:
    """Evaluate ``script`` until truthy (the page's CSP forbids wait_for_function's eval)."""
    for _ in range(int(seconds / 0.05)):
        value = await page.evaluate(script)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_the_scrubber_seeks_plays_and_pauses_a_replay(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    path = tmp_path / "gauge.pl3xrec"
    gauge, _ = await record(path)
    recording = open_recording(path)
    server = SyncServer()
    server.sync_component(Gauge)
    replay = ReplayServer(server, recording, playing=False)
    async with server.serve("127.0.0.1", 0) as (host, port), async_playwright() as p:
        replay.start()
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = await browser.new_page()
        await page.route("**/*", loopback_only)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"http://{host}:{port}/devtools")
        await poll(page, "() => !document.getElementById('replay').hidden", "the scrubber")
        await poll(page, "() => window.devtools.replay.state !== null", "the replay's state")
        # the schemas query (DevTools' own) is answered by the replay server itself
        await poll(page, "() => Object.keys(window.devtools.schemas).length > 0", "schemas")
        # seek to the middle with the slider: the server answers once the instant is shown
        await page.locator("#replay-seek").fill("500")
        await poll(
            page,
            "() => window.devtools.replay.state && !window.devtools.replay.dragging && "
            "window.devtools.replay.state.position > window.devtools.replay.state.start",
            "the seek",
        )
        position = replay.replayer.position
        assert abs(position - (recording.start + 0.5 * (recording.end - recording.start))) < 0.01
        state, _ = recording.state_at(position)
        want = state.values[1][gauge][0]  # (type 1: Gauge, after EntityControl)
        await wait_until(lambda: server.world.get(gauge, Gauge).value == want, 5)  # type: ignore[union-attr]
        await page.locator(f'.row[data-entity="{gauge}"]').click()
        shown = await poll(
            page,
            "() => { const d = document.getElementById('detail'); "
            f"return d.textContent.includes('{want:g}') ? d.textContent : ''; }}",
            f"the detail showing {want:g}",
        )
        assert "Gauge" in shown
        # speed, then play to the end: it stops there, showing the last value
        await page.select_option("#replay-speed", "10")
        await wait_until(lambda: replay.speed == 10, 5, "the speed")
        await page.locator("#replay-play").click()
        await wait_until(lambda: replay.playing or replay.replayer.position >= recording.end, 5)
        await wait_until(lambda: replay.replayer.position >= recording.end, 10, "the end")
        await poll(
            page,
            "() => document.getElementById('detail').textContent.includes('30')",
            "the last value",
        )
        await poll(
            page, "() => document.getElementById('replay-play').textContent === 'play'", "paused"
        )
        text = await page.locator("#replay-at").text_content()
        assert text is not None and text.startswith(
            f"{recording.end - recording.start:.1f} / {recording.end - recording.start:.1f} s"
        )
        assert errors == []
        await browser.close()
        await replay.stop()


async def test_a_live_server_has_no_scrubber() -> None:
    from playwright.async_api import async_playwright

    server = SyncServer()
    server.sync_component(Gauge)
    server.world.spawn(Gauge(value=1))
    async with server.serve("127.0.0.1", 0) as (host, port), async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = await browser.new_page()
        await page.route("**/*", loopback_only)
        await page.goto(f"http://{host}:{port}/devtools")
        await poll(page, "() => window.devtools.myId !== null", "the welcome")
        assert await page.evaluate("() => document.getElementById('replay').hidden")
        assert await page.evaluate("() => window.devtools.replay.info === null")
        await browser.close()
