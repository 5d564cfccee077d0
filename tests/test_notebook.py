"""client_sync.notebook: the widgets' state against a SyncServer on 127.0.0.1 (what reaches
the front-end, paging, the throttle, stale, types and entities that are not there), the
throttle in virtual time, the widgets' scripts in Chromium, and a real notebook run headless
by nbclient with top-level ``await``."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

pytest.importorskip("anywidget")
pytest.importorskip("nbclient")

import comm as comm_package
import ipywidgets.comm
import nbformat
import traitlets
from browser import ARGS, CHROMIUM, needs_chromium
from conftest import UNIT, wait_until
from nbclient import NotebookClient
from pydantic import BaseModel

from client_sync import ClientTypeRegistry, ReconnectPolicy, notebook
from client_sync.notebook import LivePlot, LiveTable, NotebookSync, _Throttle
from pl3xus_rx import NotRegistered, SyncServer, SyncSettings


class Sensor(BaseModel):
    value: float
    ok: bool = True
    label: str = ""


class Motor(BaseModel):  # registered here, never synced by the server
    rpm: float = 0.0


REGISTRY = ClientTypeRegistry.builder().register(Sensor).register(Motor).build()
FAST = ReconnectPolicy(initial_delay=0.05, max_delay=0.2)


def make_server(*, history: bool = False) -> SyncServer:
    srv = SyncServer(sync=SyncSettings(max_update_rate_hz=200), devtools=False, metrics=False)
    builder = srv.sync_component_builder(Sensor)
    if history:
        builder = builder.history(seconds=60, fields=["value"])
    builder.build()
    return srv


class RecordingComm(comm_package.DummyComm):
    """A comm that keeps what the widget would send its front-end."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sent: list[dict[str, Any]] = []
        super().__init__(*args, **kwargs)

    def publish_msg(self, msg_type: str, data: Any = None, *args: Any, **kwargs: Any) -> None:
        if msg_type == "comm_msg" and data and data.get("method") == "update":
            json.dumps(data["state"], allow_nan=False)  # what a kernel could send
            self.sent.append(data["state"])


@pytest.fixture
def comms(monkeypatch: pytest.MonkeyPatch) -> list[RecordingComm]:
    made: list[RecordingComm] = []

    def create(*args: Any, **kwargs: Any) -> RecordingComm:
        made.append(RecordingComm(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ipywidgets.comm, "create_comm", create)
    return made


def from_front_end(widget: Any, **state: Any) -> None:
    """What a front-end's ``model.set(...); model.save_changes()`` does in the kernel."""
    data = {"method": "update", "state": state, "buffer_paths": []}
    widget._handle_msg({"content": {"data": data}, "buffers": []})


async def until(cond: Callable[[], Any], what: str, units: float = 5.0) -> None:
    await wait_until(cond, units, what)


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[SyncServer, str]]:
    srv = make_server()
    async with srv.serve("127.0.0.1", 0) as (host, port):
        yield srv, f"ws://{host}:{port}/"


def values_of(table: LiveTable) -> dict[int, Any]:
    return {row[0]: row[1] for row in table.rows}


# ---------------------------------------------------------------------- the throttle


class Timer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualLoop:
    """Just what :class:`_Throttle` uses of a loop, in virtual time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Callable[[], None], Timer]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        assert delay >= 0
        handle = Timer()
        self.timers.append((self.now + delay, fn, handle))
        return handle

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            due = [t for t in self.timers if t[0] <= end and not t[2].cancelled]
            if not due:
                break
            first = min(due, key=lambda t: t[0])
            self.timers.remove(first)
            self.now = first[0]
            first[1]()
        self.now = end


def test_throttle_runs_at_its_rate_with_the_latest_state() -> None:
    loop = VirtualLoop()
    state = {"value": 0, "shown": []}
    throttle = _Throttle(loop, 10.0, lambda: state["shown"].append((loop.now, state["value"])))  # type: ignore[arg-type]
    # the first change after a quiet spell is drawn at once
    state["value"] = 1
    throttle.poke()
    loop.advance(0.0)
    assert state["shown"] == [(0.0, 1)]
    # a change every millisecond for 2 s: 10 draws a second, each with the latest value
    for ms in range(1, 2001):
        loop.advance(0.001)
        state["value"] = ms
        throttle.poke()
    loop.advance(1.0)
    shown = state["shown"]
    times = [t for t, _ in shown]
    assert all(b - a >= 0.1 - 1e-9 for a, b in itertools.pairwise(times))
    assert 20 <= len(shown) <= 22
    for t, value in shown[1:]:
        assert abs(value - min(2000, t * 1000)) <= 1 + 1e-6  # what was current when it ran
    assert shown[-1][1] == 2000  # the last change is never lost
    # quiet, then one change: drawn at once again; closed: never
    loop.advance(5.0)
    throttle.poke()
    loop.advance(0.0)
    assert shown[-1][0] == loop.now
    count = len(shown)
    throttle.poke()
    throttle.close()
    loop.advance(1.0)
    throttle.poke()
    loop.advance(1.0)
    assert len(shown) == count


# ---------------------------------------------------------------------- the table


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_table_rows_come_and_go_with_the_entities_and_page(
    served: tuple[SyncServer, str], comms: list[RecordingComm]
) -> None:
    srv, url = served
    world = srv.world
    ids = [world.spawn(Sensor(value=i, label=f"s{i}")) for i in range(5)]
    async with notebook.connect(url, REGISTRY) as sync:
        table = sync.table(Sensor, ["value", "label"], page_size=2)
        assert table.columns == ["entity", "value", "label"] and table.title == "Sensor"
        await until(lambda: table.total == 5 and not table.stale, "the snapshot")
        assert table.rows == [[ids[0], 0.0, "s0"], [ids[1], 1.0, "s1"]]
        assert table.page_count == 3 and table.page == 0 and table.status == ""

        world.insert(ids[1], Sensor(value=11, label="s1"))
        await until(lambda: values_of(table).get(ids[1]) == 11.0, "a changed value")

        from_front_end(table, page=2)  # the pager's "next" twice
        await until(lambda: [r[0] for r in table.rows] == [ids[4]], "the last page")
        new = world.spawn(Sensor(value=99))
        await until(lambda: [r[0] for r in table.rows] == [ids[4], new], "a new entity")
        assert table.total == 6
        world.despawn(ids[4])
        world.despawn(new)
        await until(lambda: table.total == 4, "two entities gone")
        assert table.page == 1 and [r[0] for r in table.rows] == [ids[2], ids[3]]  # (clamped)

        # a front-end may turn the page, nothing else: the kernel's traits stay the kernel's
        from_front_end(table, columns=["evil"], rows=[[1, 2, 3]] * 1000, page_count=7, title="x")
        assert table.columns == ["entity", "value", "label"] and table.title == "Sensor"
        assert table.page_count == 2 and len(table.rows) == 2

        from_front_end(table, page=99)  # a front-end asking too far gets the last page
        await until(lambda: table.page == 1 and table.comm.sent[-1].get("page") == 1, "clamped")
        table.page_size = 3  # from the kernel: longer pages
        await until(lambda: len(table.rows) == 1 and table.page_count == 2, "pages of 3")
        with pytest.raises(traitlets.TraitError):
            table.page_size = 0
        for entity in ids[:4]:
            world.despawn(entity)
        await until(lambda: table.total == 0, "every entity gone")
        assert table.rows == [] and table.status == "no entity has Sensor"


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_the_front_end_gets_only_what_changed(
    served: tuple[SyncServer, str], comms: list[RecordingComm]
) -> None:
    srv, url = served
    world = srv.world
    ids = [world.spawn(Sensor(value=i)) for i in range(30)]
    async with notebook.connect(url, REGISTRY) as sync:
        table = sync.table(Sensor, ["value"], page_size=10)
        await until(lambda: table.total == 30 and not table.stale, "the snapshot")
        await asyncio.sleep(0.2 * UNIT)
        sent = table.comm.sent
        assert isinstance(table.comm, RecordingComm) and len(comms) > 1  # (the layout's too)
        sent.clear()

        world.insert(ids[25], Sensor(value=-1))  # on another page: nothing to send
        await until(lambda: table._values.get()[ids[25]].value == -1, "the change arrived")
        await asyncio.sleep(0.2 * UNIT)
        assert sent == []

        world.insert(ids[3], Sensor(value=-3))  # on show: one message, the rows alone
        await until(lambda: sent, "an update")
        await asyncio.sleep(0.2 * UNIT)
        assert len(sent) == 1 and set(sent[0]) == {"rows"}
        assert sent[0]["rows"][3] == [ids[3], -3.0]
        assert len(sent[0]["rows"]) == 10  # the page, never the table


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_the_throttle_keeps_the_latest_value(served: tuple[SyncServer, str]) -> None:
    srv, url = served
    entity = srv.world.spawn(Sensor(value=0))
    async with notebook.connect(url, REGISTRY) as sync:
        table = sync.table(Sensor, ["value"], rate_hz=4)
        await until(lambda: values_of(table) == {entity: 0.0}, "the snapshot")
        drawn: list[float] = []
        table.observe(lambda change: drawn.append(time.monotonic()), names=["rows"])
        start = time.monotonic()
        for i in range(1, 61):
            srv.world.insert(entity, Sensor(value=i))
            await asyncio.sleep(0.01)
        await until(lambda: values_of(table) == {entity: 60.0}, "the last value")
        elapsed = time.monotonic() - start
        # at most 4 draws a second (one more: the first change is drawn at once)
        assert 1 <= len(drawn) <= math.floor(elapsed * 4) + 2, (len(drawn), elapsed)
        assert all(b - a >= 0.24 for a, b in itertools.pairwise(drawn))


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_greyed_while_the_server_is_away_then_live_again() -> None:
    srv = make_server()
    entity = srv.world.spawn(Sensor(value=1))
    async with srv.serve("127.0.0.1", 0) as (host, port):
        sync = await notebook.connect(f"ws://{host}:{port}/", REGISTRY, reconnect=FAST)
        table = sync.table(Sensor, ["value"])
        plot = sync.plot(Sensor, entity, "value")
        await until(lambda: table.rows and not table.stale and not plot.stale, "live")
    await until(lambda: table.stale and plot.stale, "stale once the server is gone")
    assert table.rows == [[entity, 1.0]]  # the last values stay, greyed
    again = make_server()
    moved = again.world.spawn(Sensor(value=2))
    assert moved == entity
    async with again.serve("127.0.0.1", port):
        await until(lambda: not table.stale and table.rows == [[entity, 2.0]], "live again")
        await until(lambda: not plot.stale and plot.latest == 2.0, "the chart live again")
        await sync.close()
    assert table.closed and plot.closed and sync.widgets == ()


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_type_not_synced_and_an_entity_gone_are_said_in_the_widget(
    served: tuple[SyncServer, str],
) -> None:
    srv, url = served
    entity = srv.world.spawn(Sensor(value=1.5, label="x"))
    async with notebook.connect(url, REGISTRY) as sync:
        motors = sync.table(Motor)
        await until(lambda: motors.status, "a status")
        assert motors.status == "the server does not sync Motor" and motors.rows == []
        chart = sync.plot(Sensor, entity, "value")
        nobody = sync.plot(Sensor, entity + 100, "value")
        text = sync.plot(Sensor, entity, "label")
        await until(lambda: chart.latest == 1.5, "the value")
        await until(lambda: nobody.status and text.status, "statuses")
        assert nobody.status == f"entity {entity + 100} has no Sensor"
        assert text.status == "label is not a number here (str)" and text.points == []
        srv.world.despawn(entity)
        await until(lambda: chart.status, "the entity gone")
        assert chart.status == f"entity {entity} is gone (it has no Sensor now)"
        assert chart.latest is None and [p[1] for p in chart.points] == [1.5]


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_chart_starts_with_the_servers_history_then_goes_on_live() -> None:
    srv = make_server(history=True)
    entity = srv.world.spawn(Sensor(value=0))
    async with (
        srv.serve("127.0.0.1", 0) as (host, port),
        notebook.connect(f"ws://{host}:{port}/", REGISTRY) as sync,
    ):
        watcher = sync.provider.entity_component(Sensor, entity)
        seen: list[Any] = []
        link = watcher.subscribe(seen.append)
        for i in range(1, 6):  # values the chart was not there for
            srv.world.insert(entity, Sensor(value=i))
            await until(lambda i=i: seen[-1] is not None and seen[-1].value == i, f"{i}")
        assert "Sensor" in sync.provider.history_kept
        chart = sync.plot(Sensor, entity, "value", seconds=30)
        assert chart.from_server
        await until(lambda: [p[1] for p in chart.points] == [0, 1, 2, 3, 4, 5], "the past")
        srv.world.insert(entity, Sensor(value=6))
        await until(lambda: chart.points[-1][1] == 6.0 and chart.latest == 6.0, "live")
        ts = [p[0] for p in chart.points]
        assert ts == sorted(ts) and abs(ts[-1] - time.time()) < 5
        link.dispose()


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_chart_without_history_keeps_a_bounded_number_of_points(
    served: tuple[SyncServer, str],
) -> None:
    srv, url = served
    entity = srv.world.spawn(Sensor(value=0))
    async with notebook.connect(url, REGISTRY) as sync:
        chart = sync.plot(Sensor, entity, "value", max_points=5, rate_hz=100)
        assert not chart.from_server
        for i in range(1, 21):
            srv.world.insert(entity, Sensor(value=i))
            await asyncio.sleep(0.01)
        await until(lambda: chart.latest == 20.0 and chart.points[-1][1] == 20.0, "the last")
        assert [p[1] for p in chart.points] == [16, 17, 18, 19, 20]


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_close_drops_the_subscriptions(served: tuple[SyncServer, str]) -> None:
    srv, url = served
    entity = srv.world.spawn(Sensor(value=1))
    sync = await notebook.connect(url, REGISTRY)
    async with sync:
        assert isinstance(sync, NotebookSync)
        table = sync.table(Sensor)
        chart = sync.plot(Sensor, entity, "value")
        assert sync.widgets == (table, chart)
        values = sync.provider.components(Sensor, max_rate_hz=10.0)
        one = sync.provider.entity_component(Sensor, entity)
        assert values.observed and one.observed
        await until(lambda: table.rows and chart.latest == 1.0, "drawn")
        table.close()
        assert not values.observed and sync.widgets == (chart,) and table.comm is None
        srv.world.insert(entity, Sensor(value=2))  # nothing redraws a closed table
        await until(lambda: chart.latest == 2.0, "the chart still live")
        assert table.rows == [[entity, 1.0, True, ""]]
    assert chart.closed and not one.observed
    assert sync.provider.connection.get().state.value == "closed"
    assert "closed" in repr(sync)


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_bad_arguments_raise_at_once(served: tuple[SyncServer, str]) -> None:
    _, url = served

    class Stranger(BaseModel):
        n: int = 0

    async with notebook.connect(url, REGISTRY) as sync:
        with pytest.raises(ValueError, match="has no field 'speed'; its fields are value"):
            sync.table(Sensor, ["value", "speed"])
        with pytest.raises(ValueError, match="page_size"):
            sync.table(Sensor, page_size=0)
        with pytest.raises(ValueError, match="rate_hz"):
            sync.plot(Sensor, 1, "value", rate_hz=0)
        with pytest.raises(ValueError, match="seconds"):
            sync.plot(Sensor, 1, "value", seconds=math.inf)
        with pytest.raises(NotRegistered):
            sync.table(Stranger)
        assert sync.widgets == ()


def test_widgets_need_a_running_loop() -> None:
    provider: Any = object()
    with pytest.raises(RuntimeError, match="running loop"):
        LivePlot(provider, Sensor, 1, "value")


# ---------------------------------------------------------------------- the scripts


WEB = Path(notebook.__file__).parent / "web"

# A stand-in for anywidget's model (get/set/on/off/save_changes, recording what is saved),
# holding a widget's state as the kernel sent it; renders the widget's own script.
FAKE_MODEL = """
async ({source, css, state}) => {
  const style = document.createElement("style");
  style.textContent = css;
  document.head.append(style);
  const handlers = {};
  const model = {
    saved: [],
    get: (k) => state[k],
    set: (k, v) => { state[k] = v; (handlers["change:" + k] || []).forEach((f) => f()); },
    on: (name, fn) => { (handlers[name] ||= []).push(fn); },
    off: (name, fn) => { handlers[name] = (handlers[name] || []).filter((f) => f !== fn); },
    save_changes: () => { model.saved.push({...state}); },
  };
  const url = URL.createObjectURL(new Blob([source], {type: "text/javascript"}));
  const module = await import(url);
  const el = document.createElement("div");
  el.id = "widget-" + Object.keys(window.widgets || {}).length;
  el.style.width = "520px";
  el.style.padding = "8px";
  document.body.append(el);
  const cleanup = module.default.render({model, el});
  window.widgets = {...(window.widgets || {}), [el.id]: {model, cleanup}};
  return el.id;
}
"""

BLUE_PIXELS = """(id) => {
  const c = document.querySelector(`#${id} canvas`);
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let blue = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 150 && d[i] < 100 && d[i + 3] > 0) blue++;
  return blue;
}"""


class InBrowser:
    """A widget drawn in the page by its own script, fed its kernel state as a front-end
    is: the comm's state at first, then every update the kernel sends, in order."""

    def __init__(self, page: Any, widget: Any) -> None:
        self.page = page
        self.widget = widget
        self.id = ""
        self.forwarded = 0

    async def render(self) -> InBrowser:
        state = json.loads(json.dumps(self.widget.get_state()))
        script = state["_esm"]
        made = {"source": script, "css": state["_css"], "state": state}
        self.id = await self.page.evaluate(FAKE_MODEL, made)
        self.forwarded = len(self.widget.comm.sent)
        return self

    async def forward(self) -> None:
        """Apply the updates the kernel sent since the last call."""
        sent = self.widget.comm.sent
        updates, self.forwarded = sent[self.forwarded :], len(sent)
        await self.page.evaluate(
            "([id, updates]) => { const m = window.widgets[id].model;"
            " for (const u of updates) for (const k in u) m.set(k, u[k]); }",
            [self.id, updates],
        )

    async def saved(self) -> list[dict[str, Any]]:
        """What the script saved (sent to the kernel), in order."""
        saved: list[dict[str, Any]] = await self.page.evaluate(
            f"window.widgets['{self.id}'].model.saved"
        )
        return saved

    async def shoot(self, name: str, tmp_path: Path) -> None:
        """A screenshot in the test's folder, and in $PL3XUS_SCREENSHOTS if set."""
        keep(await self.page.locator(f"#{self.id}").screenshot(), name, tmp_path)


def keep(png: bytes, name: str, tmp_path: Path) -> None:
    (tmp_path / name).write_bytes(png)
    target = os.environ.get("PL3XUS_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        (Path(target) / name).write_bytes(png)


@pytest.mark.slow
@needs_chromium
@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_the_scripts_draw_what_the_kernel_sends(
    tmp_path: Path, comms: list[RecordingComm]
) -> None:
    """Screenshots (docs/images): notebook_table.png, notebook_table_stale.png,
    notebook_plot.png."""
    playwright = pytest.importorskip("playwright.async_api")
    srv = make_server(history=True)
    kinds = ["temperature", "pressure", "flow", "level"]
    ids = [
        srv.world.spawn(Sensor(value=20 + 3 * i + 1 / 3, label=f"{kinds[i % 4]} {i + 1}"))
        for i in range(7)
    ]
    async with playwright.async_playwright() as p:
        async with srv.serve("127.0.0.1", 0) as (host, port):
            sync = await notebook.connect(f"ws://{host}:{port}/", REGISTRY)
            table = sync.table(Sensor, ["label", "value", "ok"], page_size=5)
            chart = sync.plot(Sensor, ids[0], "value", seconds=3)
            for i in range(60):  # a few seconds of a wave, in a second and a half
                srv.world.insert(
                    ids[0], Sensor(value=20 + 5 * math.sin(i / 6), label="temperature 1")
                )
                await asyncio.sleep(0.025)
            await until(lambda: len(chart.points) > 40 and table.total == 7, "the data")
            await asyncio.sleep(0.2)

            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = await browser.new_page(viewport={"width": 600, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.set_content("<!doctype html><body></body>")
            shown = await InBrowser(page, table).render()
            cells = page.locator(f"#{shown.id} tbody tr:first-child td")
            first = table.rows[0]
            assert await cells.all_text_contents() == [
                str(ids[0]),
                "temperature 1",
                f"{first[2]:.6g}",  # (as the script writes numbers: 6 significant digits)
                "true",
            ]
            where = page.locator(f"#{shown.id} .pl3xus-nb-where")
            assert await where.text_content() == "page 1 of 2 · 7 entities"
            await shown.shoot("notebook_table.png", tmp_path)

            await page.click(f"#{shown.id} .pl3xus-nb-next")  # the pager asks for page 2
            (asked,) = await shown.saved()
            from_front_end(table, page=asked["page"])
            await until(lambda: table.rows[0][0] == ids[5], "page 2 in the kernel")
            await asyncio.sleep(0.05)
            await shown.forward()
            column = page.locator(f"#{shown.id} tbody td:nth-child(2)")
            assert await column.all_text_contents() == ["pressure 6", "flow 7"]
            assert await page.locator(f"#{shown.id} tbody td:nth-child(3)").all_text_contents() == [
                "35.3333",
                "38.3333",
            ]
            assert await page.locator(f"#{shown.id} .pl3xus-nb-next").is_disabled()

            drawn = await InBrowser(page, chart).render()
            await page.wait_for_timeout(100)  # (a redraw per animation frame)
            assert await page.evaluate(BLUE_PIXELS, drawn.id) > 200  # the line is there
            latest = page.locator(f"#{drawn.id} .pl3xus-nb-latest")
            assert await latest.text_content() == f"{chart.latest:.5g}"
            await drawn.shoot("notebook_plot.png", tmp_path)

        await until(lambda: table.stale and chart.stale, "stale, the server gone")
        await shown.forward()
        root = page.locator(f"#{shown.id} .pl3xus-nb")
        assert "pl3xus-stale" in (await root.get_attribute("class") or "")
        assert await page.locator(f"#{shown.id} .pl3xus-nb-flag").text_content() == "stale"
        await shown.shoot("notebook_table_stale.png", tmp_path)
        await page.evaluate(f"window.widgets['{drawn.id}'].cleanup()")
        await browser.close()
        await sync.close()
    assert errors == []


# ---------------------------------------------------------------------- a real notebook


NOTEBOOK = [
    """
    import asyncio, sys
    from pydantic import BaseModel
    from client_sync import ClientTypeRegistry, notebook

    class Sensor(BaseModel):
        value: float
        ok: bool = True
        label: str = ""

    async def until(cond, what, seconds={wait}):
        deadline = asyncio.get_running_loop().time() + seconds
        while not cond():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(what)
            await asyncio.sleep(0.02)

    print(sys.executable)
    """,
    """
    registry = ClientTypeRegistry.builder().register(Sensor).build()
    sync = await notebook.connect("{url}", registry)
    table = sync.table(Sensor, ["value"], page_size=2)
    chart = sync.plot(Sensor, {entity}, "value")
    display(table, chart)
    await until(lambda: table.rows and not table.stale, "the first rows")
    print("rows", table.rows)
    """,
    """
    await until(lambda: table.rows[0][1] == 42.0 and chart.latest == 42.0, "42")
    print("rows", table.rows, "latest", chart.latest)
    """,
    """
    await until(lambda: table.page == 1 and table.rows[0][0] == {last}, "page 2")
    print("page", table.page, table.rows)
    """,
    """
    await sync.close()
    print("closed", table.closed, chart.closed)
    """,
]


def kernel_spec(tmp_path: Path) -> Path:
    """A kernelspec that runs this interpreter (the venv's), found first on JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / "pl3xus-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "pl3xus test", "language": "python"})
    )
    return spec.parent.parent


def record_iopub(client: NotebookClient) -> list[dict[str, Any]]:
    """Every message the kernel publishes, as a front-end gets them. (nbclient keeps only
    those whose parent is the cell it runs, but the widgets' updates come from the loop's
    callbacks, in the context of the cell that connected: a front-end takes them all.)"""
    seen: list[dict[str, Any]] = []
    channel = client.kc.iopub_channel
    get_msg = channel.get_msg

    async def recording(*args: Any, **kwargs: Any) -> dict[str, Any]:
        message: dict[str, Any] = await get_msg(*args, **kwargs)
        seen.append(message)
        return message

    channel.get_msg = recording
    return seen


def front_end_state(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each widget's state as a front-end builds it from the comm messages, in order."""
    state: dict[str, dict[str, Any]] = {}
    for message in messages:
        content = message["content"]
        if message["msg_type"] == "comm_open":
            state[content["comm_id"]] = dict(content["data"]["state"])
        elif message["msg_type"] == "comm_msg" and content["data"].get("method") in (
            "update",
            "echo_update",  # (the kernel confirming what the front-end set)
        ):
            state.setdefault(content["comm_id"], {}).update(content["data"]["state"])
    return state


def text_of(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_notebook_run_headless_follows_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_spec(tmp_path)))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    srv = make_server()
    ids = [srv.world.spawn(Sensor(value=i)) for i in range(3)]
    async with srv.serve("127.0.0.1", 0) as (host, port):
        values = {"url": f"ws://{host}:{port}/", "entity": ids[0], "last": ids[2]}
        values["wait"] = 10 * UNIT
        cells = [textwrap.dedent(c).strip().format(**values) for c in NOTEBOOK]
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        client = NotebookClient(
            nb,
            kernel_name="pl3xus-test",
            timeout=int(20 * UNIT),
            startup_timeout=int(30 * UNIT),
            resources={"metadata": {"path": str(tmp_path)}},
        )
        async with client.async_setup_kernel():
            seen = record_iopub(client)
            for index in range(2):
                await client.async_execute_cell(nb.cells[index], index)
            assert text_of(nb.cells[0]).strip() == sys.executable
            assert f"rows [[{ids[0]}, 0.0], [{ids[1]}, 1.0]]" in text_of(nb.cells[1])

            srv.world.insert(ids[0], Sensor(value=42))  # the server changes; the widgets follow
            await client.async_execute_cell(nb.cells[2], 2)
            assert f"rows [[{ids[0]}, 42.0], [{ids[1]}, 1.0]] latest 42.0" in text_of(nb.cells[2])

            # what a front-end sends when its "next page" button is clicked
            views = [
                o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
                for o in nb.cells[1].outputs
                if o.output_type == "display_data"
            ]
            assert len(views) == 2
            state = {"method": "update", "state": {"page": 1}, "buffer_paths": []}
            message = client.kc.session.msg("comm_msg", {"comm_id": views[0], "data": state})
            client.kc.shell_channel.send(message)
            await client.async_execute_cell(nb.cells[3], 3)
            assert f"page 1 [[{ids[2]}, 2.0]]" in text_of(nb.cells[3])
            await client.async_execute_cell(nb.cells[4], 4)
            assert "closed True True" in text_of(nb.cells[4])
    widgets = front_end_state(seen)  # what a front-end would show
    table = widgets[views[0]]
    assert table["rows"] == [[ids[2], 2.0]] and table["page"] == 1 and not table["stale"]
    assert table["_esm"].startswith("//") and "export default" in table["_esm"]  # shipped
    chart = widgets[views[1]]
    assert chart["latest"] == 42.0 and chart["points"][-1][1] == 42.0
    assert [p[1] for p in chart["points"]] == [0.0, 42.0]
