"""client_sync.nicegui in Chromium, against real processes: examples/nicegui_hmi.py against
``pl3xus-rx demo`` (live values, control, a mutation, requests, the program list and its
notification, a second user, a refusal; a restart of the server; signed-in users with
tokens), and tests/nicegui_app.py against a SyncServer run here (a type not on the server, a
despawned entity, the throttle). The HMI's screenshots go to ``$PL3XUS_SCREENSHOTS`` when it
is set (docs/images: ``nicegui_hmi.png``, ``nicegui_hmi_stale.png``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("nicegui")

from browser import ARGS, CHROMIUM, loopback_only, needs_chromium
from conftest import UNIT, wait_until
from nicegui_app import FAST_RATE_HZ, Sensor

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import SyncServer, SyncSettings
from pl3xus_rx.demo import Name, Pose, RobotStatus

pytestmark = [needs_chromium, pytest.mark.slow]

TESTS = Path(__file__).resolve().parent
HMI = TESTS.parent / "examples" / "nicegui_hmi.py"
APP = TESTS / "nicegui_app.py"
VIEWPORT = {"width": 1300, "height": 900}
WATCH = ClientTypeRegistry.builder().register(Name).register(Pose).register(RobotStatus).build()

# What a page's echart holds now (its series' lengths, the newest point's time, the title's
# subtext), found through NiceGUI's refs: the chart draws on a canvas.
CHART = """sel => {
  const el = document.querySelector(sel);
  const ref = el && Object.values(mounted_app.$refs).find(r => r && r.$el === el);
  if (!ref || !ref.chart) return null;
  const o = ref.chart.getOption();
  const ends = o.series.map(s => s.data.length ? s.data[s.data.length - 1][0] : 0);
  return {lengths: o.series.map(s => s.data.length), newest: Math.max(0, ...ends),
          subtext: o.title[0].subtext || ""};
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------ processes


class Proc:
    """A Python subprocess whose output goes to files (a full pipe never stalls it), run in
    ``logs`` (NiceGUI keeps its storage there)."""

    def __init__(self, logs: Path, name: str, *args: str) -> None:
        self.name = name
        self.stop_signal = signal.SIGINT
        """How it is asked to stop: Ctrl-C (NiceGUI apps: SIGTERM, as a service manager
        would; uvicorn prints a KeyboardInterrupt's traceback on Ctrl-C)."""
        self.out = logs / f"{name}.out"
        self.err = logs / f"{name}.err"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("PYTEST_CURRENT_TEST", None)  # (NiceGUI would take itself for a test's app)
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, *args], stdout=out, stderr=err, cwd=logs, env=env
            )

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def is_ready(self, line: str) -> bool:
        if line in self.out.read_text(errors="replace"):
            return True
        code = self.popen.poll()
        assert code is None, f"{self.name} ended ({code}):\n{self.stderr()[-3000:]}"
        return False

    async def ready(self, line: str, seconds: float = 30) -> None:
        """Wait until stdout has ``line``."""
        deadline = time.monotonic() + seconds * UNIT
        while not self.is_ready(line):
            assert time.monotonic() < deadline, f"{self.name} not ready in {seconds} s"
            await asyncio.sleep(0.05)

    def ready_now(self, line: str, seconds: float = 30) -> None:
        """:meth:`ready`, blocking (outside an event loop)."""
        deadline = time.monotonic() + seconds * UNIT
        while not self.is_ready(line):
            assert time.monotonic() < deadline, f"{self.name} not ready in {seconds} s"
            time.sleep(0.05)

    def stop(self) -> None:
        """:attr:`stop_signal`, then a kill if it lingers."""
        if self.popen.poll() is None:
            self.popen.send_signal(self.stop_signal)
            try:
                self.popen.wait(10 * UNIT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)

    async def stopped(self) -> None:
        """:meth:`stop`, without blocking the event loop (a server in it may be talking to
        the process as it stops)."""
        if self.popen.poll() is None:
            self.popen.send_signal(self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(self.popen.wait, 10 * UNIT)
        self.kill()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)


DEMO_READY = "Ctrl-C to stop."
NICEGUI_READY = "NiceGUI ready to go"


class Cell:
    """``pl3xus-rx demo`` and examples/nicegui_hmi.py against it, each on a free port."""

    def __init__(self, logs: Path, demo: tuple[str, ...] = (), hmi: tuple[str, ...] = ()):
        self.logs = logs
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/"
        hport = free_port()
        self.page = f"http://127.0.0.1:{hport}/"
        self._demo_args = demo
        self.starts = 0
        self.procs: list[Proc] = []
        self.demo = self.start_demo()
        self.hmi = self._start("hmi", str(HMI), self.url, "--port", str(hport), *hmi)
        self.hmi.stop_signal = signal.SIGTERM

    def _start(self, name: str, *args: str) -> Proc:
        proc = Proc(self.logs, name, *args)
        self.procs.append(proc)
        return proc

    def start_demo(self) -> Proc:
        """The demo (again), on the same port."""
        self.starts += 1
        return self._start(
            f"demo{self.starts}",
            *("-m", "pl3xus_rx", "demo", "--port", str(self.port), "--sensors", "8"),
            *self._demo_args,
        )

    def ready_now(self) -> None:
        self.demo.ready_now(DEMO_READY)
        self.hmi.ready_now(NICEGUI_READY)

    def hmi_log_is_clean(self) -> None:
        log = self.hmi.stderr()
        assert "Traceback" not in log, log[-5000:]

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cell]:
    """An open demo and the HMI, shared by the tests that do not need tokens (the restart
    test comes last of them: it leaves a fresh cell)."""
    started = Cell(tmp_path_factory.mktemp("cell"))
    try:
        started.ready_now()
        yield started
    finally:
        started.close()


# ------------------------------------------------------------------------------ pages


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def open_page(browser: Any, url: str, problems: list[str]) -> Any:
    """A page in a new context (a new browser: another anonymous user of the HMI)."""
    context = await browser.new_context(viewport=VIEWPORT)
    await context.route("**/*", loopback_only)
    page = await context.new_page()
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    await page.goto(url)
    return page


async def text(page: Any, selector: str) -> str:
    found = page.locator(selector)
    return str(await found.first.text_content() or "") if await found.count() else ""


async def until(
    page: Any, selector: str, test: Callable[[str], object], seconds: float = 10, what: str = ""
) -> str:
    """Poll the text of ``selector`` until ``test(text)``; return it."""
    deadline = time.monotonic() + seconds * UNIT
    while True:
        found = await text(page, selector)
        if test(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or selector}: {found!r}")
        await asyncio.sleep(0.05)


async def until_js(
    page: Any, script: str, arg: Any, test: Callable[[Any], object], seconds: float = 10
) -> Any:
    """Poll ``script(arg)`` in the page until ``test(result)``; return it."""
    deadline = time.monotonic() + seconds * UNIT
    while True:
        found = await page.evaluate(script, arg)
        if test(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting on {script[:60]!r}: {found!r}")
        await asyncio.sleep(0.05)


async def classes(page: Any, selector: str) -> list[str]:
    return str(await page.locator(selector).first.get_attribute("class") or "").split()


async def disabled(page: Any, selector: str) -> bool:
    return bool(await page.locator(selector).first.get_attribute("aria-disabled") == "true")


def beside(button: str) -> str:
    """The label a request button shows its outcome in."""
    return f'[id="{button}"] + div'


async def screenshot(page: Any, name: str, tmp_path: Path) -> None:
    """Save a screenshot in the test's folder, and in $PL3XUS_SCREENSHOTS if set."""
    keep(await page.screenshot(), name, tmp_path)


def keep(png: bytes, name: str, tmp_path: Path) -> None:
    (tmp_path / name).write_bytes(png)
    target = os.environ.get("PL3XUS_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        (Path(target) / name).write_bytes(png)


async def robot_one(watch: SyncProvider) -> int:
    names = watch.components(Name)
    names.subscribe(lambda _: None)
    await wait_until(lambda: any(n.text == "robot 1" for n in names.get().values()), 10)
    return next(e for e, n in names.get().items() if n.text == "robot 1")


# ------------------------------------------------------------------------------ the HMI


@pytest.mark.asyncio
async def test_the_hmi_shows_the_cell_live_and_acts_for_its_user(
    cell: Cell, tmp_path: Path
) -> None:
    problems: list[str] = []
    async with chromium() as browser, SyncProvider(cell.url, WATCH) as watch:
        robot = await robot_one(watch)
        status = watch.entity_component(RobotStatus, robot)
        status.subscribe(lambda _: None)
        page = await open_page(browser, cell.page, problems)

        # live values: the pose, the status, sensor readings that change, a moving chart
        await until(page, "#link", lambda t: t == "live", 20)
        await until(page, ".q-select", lambda t: "robot 1" in t)
        await until(page, "#pose", lambda t: t == "at x=0 y=0 mm")
        await until(page, "#status", lambda t: t == "running, speed 0.50")
        readings = await until(
            page, "#sensors", lambda t: "temperature" in t and "1 to 8 of 8" in t
        )
        await until(page, "#sensors", lambda t: t != readings, what="a reading to change")
        chart = await until_js(page, CHART, "#joints", lambda c: c and len(c["lengths"]) == 6)
        assert min(chart["lengths"]) > 1  # (the server's history first)
        await until_js(page, CHART, "#joints", lambda c: c["newest"] > chart["newest"])
        assert "pl3xus-stale" not in await classes(page, "#pose")

        # not in control: the slider is not editable, and says why
        await until(page, "#control .q-badge", lambda t: t == "free")
        assert await disabled(page, "#speed")
        assert await text(page, "#speed + .pl3xus-refusal") == "take control to change it"

        # take control: the badge says so, the slider becomes editable
        me = await until(page, "header", lambda t: re.search(r"you: anonymous \(#\d+\)", t))
        my_id = re.search(r"\(#(\d+)\)", me).group(1)  # type: ignore[union-attr]
        await page.locator("#control button", has_text="Take").click()
        await until(page, "#control .q-badge", lambda t: t == "you")
        await until_js(
            page,
            "s => document.querySelector(s).getAttribute('aria-disabled')",
            "#speed",
            lambda d: d != "true",
        )

        # moving the slider mutates the server's speed
        box = await page.locator("#speed").bounding_box()
        assert box is not None
        await page.mouse.click(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
        await wait_until(lambda: (s := status.get()) is not None and s.speed != 0.5, 10)
        speed = status.get().speed  # type: ignore[union-attr]
        assert 0.65 <= speed <= 0.95, speed
        await until(page, "#status", lambda t: t == f"running, speed {speed:.2f}")
        assert await text(page, "#speed + .pl3xus-refusal") == ""

        # a jog (a request) moves the pose, and says ok
        await page.locator('[id="jog-x+"]').click()
        await until(page, beside("jog-x+"), lambda t: t == "ok")
        await until(page, "#pose", lambda t: t == "at x=10 y=0 mm")
        pose = watch.entity_component(Pose, robot)
        pose.subscribe(lambda _: None)
        await wait_until(lambda: (p := pose.get()) is not None and p.x == 10.0, 10)

        # a program (a request): the list (a query it invalidates) shows it, with a toast
        await until(page, "#programs", lambda t: "No data available" in t)
        await page.locator("#program-name").fill("weld seam")
        await page.locator("#create").click()
        await until(page, beside("create"), lambda t: t == "ok")
        await until(page, "#programs tbody", lambda t: "weld seam" in t)
        await until(page, ".q-notification", lambda t: "program 'weld seam' created" in t)
        await asyncio.sleep(0.5)  # (the notification's sliding in)
        await screenshot(page, "nicegui_hmi.png", tmp_path)

        # another browser is another user: control is someone else's, the slider is not
        # editable, and what it asks for is refused in place
        other = await open_page(browser, cell.page, problems)
        await until(other, "#link", lambda t: t == "live", 20)
        await until(other, "#control .q-badge", lambda t: t.endswith(f"#{my_id}"))
        assert await until(other, "header", lambda t: "you: anonymous" in t) != me
        assert await disabled(other, "#speed")
        await until(other, "#status", lambda t: t == f"running, speed {speed:.2f}")
        await other.locator('[id="jog-x+"]').click()
        refusal = await until(other, beside("jog-x+"), lambda t: t.startswith("refused"))
        assert "does not control" in refusal, refusal
        await other.locator("#control button", has_text="Take").click()
        refusal = await until(other, "#control .pl3xus-refusal", lambda t: t.startswith("refused"))
        await until(other, "#programs tbody", lambda t: "weld seam" in t)
        assert (await text(page, "#pose")) == "at x=10 y=0 mm"  # (the refused jog did not move it)

        # released: both see the robot free again
        await page.locator("#control button", has_text="Release").click()
        await until(page, "#control .q-badge", lambda t: t == "free")
        await until(other, "#control .q-badge", lambda t: t == "free")
        assert await disabled(page, "#speed")
    assert problems == []
    cell.hmi_log_is_clean()


@pytest.mark.asyncio
async def test_bare_gets_open_no_user_providers(cell: Cell) -> None:
    """A page fetched but never shown (curl, a prefetch) opens no per-user provider: more
    bare GETs than the HMI's max_users (20) leave a real visitor with control."""
    import urllib.request

    def fetch() -> int:
        with urllib.request.urlopen(cell.page, timeout=10 * UNIT) as answer:
            return int(answer.status)

    statuses = await asyncio.gather(*(asyncio.to_thread(fetch) for _ in range(25)))
    assert statuses == [200] * 25
    problems: list[str] = []
    async with chromium() as browser:
        page = await open_page(browser, cell.page, problems)
        await until(page, "#link", lambda t: t == "live", 20)
        await until(page, "#control .q-badge", lambda t: t in ("free", "you") or "#" in t)
        assert await page.locator("text=watch only").count() == 0
    assert problems == []
    cell.hmi_log_is_clean()


@pytest.mark.asyncio
async def test_the_hmi_greys_while_the_server_is_away_and_comes_back_live(
    cell: Cell, tmp_path: Path
) -> None:
    problems: list[str] = []
    async with chromium() as browser:
        page = await open_page(browser, cell.page, problems)
        await until(page, "#link", lambda t: t == "live", 20)
        readings = await until(page, "#sensors", lambda t: "1 to 8 of 8" in t)
        await until(page, "#sensors", lambda t: t != readings, what="a reading to change")
        await page.evaluate("window.notReloaded = true")

        # the server goes: the link leaves "live", bound elements grey
        cell.demo.kill()
        await until(page, "#link", lambda t: t not in ("live", "…"), 10)
        for bound in ("#pose", "#status", "#sensors", "#joints", "#control .q-badge", "#speed"):
            await until_js(
                page,
                "s => document.querySelector(s).classList.contains('pl3xus-stale')",
                bound,
                bool,
                5,
            )
        assert "pl3xus-stale" not in await classes(page, "#link")
        opacity = await page.locator("#pose").evaluate("e => getComputedStyle(e).opacity")
        assert float(opacity) < 1
        await asyncio.sleep(0.5)  # (the greying's transition)
        await screenshot(page, "nicegui_hmi_stale.png", tmp_path)

        # it comes back on the same port: live again, without a reload, with the new cell's
        # values (robot 1 back home, nobody in control) moving
        cell.demo = cell.start_demo()
        await cell.demo.ready(DEMO_READY)
        await until(page, "#link", lambda t: t == "live", 30)
        for bound in ("#pose", "#sensors", "#joints"):
            assert "pl3xus-stale" not in await classes(page, bound), bound
        await until(page, "#pose", lambda t: t == "at x=0 y=0 mm")
        await until(page, "#status", lambda t: t == "running, speed 0.50")
        readings = await until(page, "#sensors", lambda t: "1 to 8 of 8" in t)
        await until(page, "#sensors", lambda t: t != readings, what="a reading to change")
        chart = await until_js(page, CHART, "#joints", bool)
        await until_js(page, CHART, "#joints", lambda c: c["newest"] > chart["newest"])
        await until(page, "#control .q-badge", lambda t: t == "free")
        await page.locator("#control button", has_text="Take").click()
        await until(page, "#control .q-badge", lambda t: t == "you")
        assert await page.evaluate("window.notReloaded") is True
    assert problems == []
    cell.hmi_log_is_clean()


@pytest.mark.asyncio
async def test_the_hmi_acts_for_the_signed_in_user_only_as_far_as_the_token_allows(
    tmp_path: Path,
) -> None:
    signed = Cell(
        tmp_path,
        demo=("--token", "OP", "--viewer-token", "VIEW"),
        hmi=("--viewer-token", "VIEW", "--sign-in"),
    )
    problems: list[str] = []
    try:
        await signed.demo.ready(DEMO_READY)
        await signed.hmi.ready(NICEGUI_READY)
        async with chromium() as browser:

            async def sign_in(token: str, *, first: bool = False) -> Any:
                page = await open_page(
                    browser, signed.page + ("" if first else "sign-in"), problems
                )
                await page.wait_for_url("**/sign-in", timeout=10_000 * UNIT)
                await page.get_by_label("your token").fill(token)
                await page.get_by_role("button", name="Sign in").click()
                await page.wait_for_url(signed.page, timeout=10_000 * UNIT)
                await until(page, "#link", lambda t: t == "live", 20)
                return page

            # a viewer watches: what it asks for is refused, and said so in place
            viewer = await sign_in("VIEW", first=True)  # (sent from the HMI to sign in)
            await until(viewer, "#pose", lambda t: t == "at x=0 y=0 mm")
            await until(viewer, "#control .q-badge", lambda t: t == "free")
            await viewer.locator("#control button", has_text="Take").click()
            refusal = await until(
                viewer, "#control .pl3xus-refusal", lambda t: t.startswith("refused")
            )
            assert "may watch but not act" in refusal, refusal
            await until(viewer, "#control .q-badge", lambda t: t == "free")
            assert await disabled(viewer, "#speed")
            await viewer.locator('[id="jog-x+"]').click()
            await until(viewer, beside("jog-x+"), lambda t: t.startswith("refused"))
            await viewer.locator("#program-name").fill("viewer's")
            await viewer.locator("#create").click()
            refusal = await until(viewer, beside("create"), lambda t: t.startswith("refused"))
            assert "may watch but not edit programs" in refusal, refusal
            assert await text(viewer, "#programs tbody") == ""

            # a token the server does not know: the page only watches, and says why
            stranger = await sign_in("NOT-A-TOKEN")
            why = await until(stranger, "text=watch only", bool)
            assert "the server refused your token (HTTP 403)" in why, why
            assert "ws://" not in why, why  # (no internal address shown to a stranger)
            await until(stranger, "#pose", lambda t: t == "at x=0 y=0 mm")
            assert await stranger.locator("#control").count() == 0

            # an operator acts
            operator = await sign_in("OP")
            await operator.locator("#control button", has_text="Take").click()
            await until(operator, "#control .q-badge", lambda t: t == "you")
            await until_js(
                operator,
                "s => document.querySelector(s).getAttribute('aria-disabled')",
                "#speed",
                lambda d: d != "true",
            )
            await operator.locator('[id="jog-x+"]').click()
            await until(operator, beside("jog-x+"), lambda t: t == "ok")
            await until(operator, "#pose", lambda t: t == "at x=10 y=0 mm")
            await until(viewer, "#pose", lambda t: t == "at x=10 y=0 mm")
            held = await until(viewer, "#control .q-badge", lambda t: t not in ("free", "you"))
            assert "#" in held, held
    finally:
        signed.close()
    assert problems == []
    signed.hmi_log_is_clean()


# ------------------------------------------------------------------------------ bindings


@pytest.mark.asyncio
async def test_bindings_say_what_is_missing_and_throttle_to_the_latest_value(
    tmp_path: Path,
) -> None:
    srv = SyncServer(sync=SyncSettings(max_update_rate_hz=200), devtools=False, metrics=False)
    srv.sync_component(Sensor)
    gone = srv.world.spawn(Sensor(value=1, label="gone soon"))
    fast = srv.world.spawn(Sensor(value=0, label="fast"))
    problems: list[str] = []
    async with srv.serve("127.0.0.1", 0) as (host, port):
        hport = free_port()
        app = Proc(tmp_path, "app", str(APP), f"ws://{host}:{port}/", "--port", str(hport))
        app.stop_signal = signal.SIGTERM
        try:
            await app.ready(NICEGUI_READY)
            async with chromium() as browser:
                page = await open_page(
                    browser, f"http://127.0.0.1:{hport}/?gone={gone}&fast={fast}", problems
                )
                await until(page, "#link", lambda t: t == "live", 20)

                # a type the server does not sync: said in place, by every kind of binding
                await until(page, "#motor", lambda t: t == "Motor: not on the server")
                assert "pl3xus-missing" in await classes(page, "#motor")
                await until(page, "#motor-table", lambda t: "not on the server" in t)
                await until_js(
                    page, CHART, "#motor-chart", lambda c: c and "not on the server" in c["subtext"]
                )

                # an entity despawned: the field says it is gone
                await until(page, "#gone", lambda t: t == "value 1")
                srv.world.despawn(gone)
                await until(page, "#gone", lambda t: t == f"entity {gone}: gone (no Sensor now)")
                assert "pl3xus-missing" in await classes(page, "#gone")

                # 50 changes a second, drawn at most FAST_RATE_HZ times a second, the last
                # value shown in the end
                await until(page, "#fast", lambda t: t == "0")
                await page.evaluate(
                    """sel => {
                      const el = document.querySelector(sel);
                      let last = el.textContent;
                      window.shown = [];
                      window.since = performance.now();
                      new MutationObserver(() => {
                        if (el.textContent !== last) {
                          last = el.textContent;
                          window.shown.push(last);
                        }
                      }).observe(el, {characterData: true, childList: true, subtree: true});
                    }""",
                    "#fast",
                )
                value = 0
                started = time.monotonic()
                while time.monotonic() - started < 3.0:
                    value += 1
                    srv.world.insert(fast, Sensor(value=value, label="fast"))
                    await asyncio.sleep(0.02)
                assert value > 100  # (the server did change it some 50 times a second)
                await until(page, "#fast", lambda t: t == str(value), 5, "the latest value")
                shown, seconds = await page.evaluate(
                    "() => [window.shown, (performance.now() - window.since) / 1000]"
                )
                assert shown[-1] == str(value)
                assert len(shown) >= 3, shown  # (it was redrawn while changing)
                assert len(shown) / seconds <= 2 * FAST_RATE_HZ, (len(shown), seconds, shown)
                assert [int(v) for v in shown] == sorted(int(v) for v in shown)

                # a flood of notifications: at most NOTIFY_PER_SECOND toasts a second, the
                # rest summed up, the last one's text shown
                for i in range(100):
                    srv.notify(f"note {i}")
                await until(page, ".q-notification:last-child", lambda t: "note 99" in t, 10)
                toasts = await page.locator(".q-notification").all_text_contents()
                assert len(toasts) <= 6, toasts  # (two a second, while the test looks)
                assert any("more)" in t for t in toasts), toasts
        finally:
            await app.stopped()
    assert problems == []
    log = app.stderr()
    assert "Traceback" not in log, log[-5000:]
