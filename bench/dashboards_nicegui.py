"""A NiceGUI dashboard of 1,000 live sensors: the NiceGUI process's CPU, each element's redraws,
the latest value shown, and a headless Chromium tab's frames/s, all on the same 2 cores.

Three processes besides this one (and Debian's Chromium, driven by Playwright):

- **the server** (``--role server``): a ``SyncServer`` (30 flushes/s at most) with N
  ``pl3xus_rx.demo.Sensor`` entities, each updated at 10 Hz (N x 10 readings/s, spread evenly
  over 100 ticks/s: a mean-reverting walk, 3 decimals); paused and resumed, and its values
  read back, through its stdin;
- **the NiceGUI app** (``--role app``, ``ui.run(reload=False, show=False)``): one
  :class:`~client_sync.nicegui.SharedSync`, and a page with a ``Bindings.table`` of the
  sensors (``kind``, ``value``, ``unit``; a page of 25 rows) and 10 ``Bindings.chart`` of the
  first 10 sensors' ``value`` (the client-side trend: the server keeps no history of
  ``Sensor``, as in ``pl3xus-rx demo``), every element throttled at 10 Hz. ``GET
  /bench-stats`` answers, per element, its redraws (``_Redraw.draws``) and how often its
  signal changed;
- **one Chromium tab** on the page (1600x1100), counting its frames (``requestAnimationFrame``)
  and the table's DOM updates (a ``MutationObserver``).

Each run: warm up with data flowing (the charts fill), measure ``--seconds``; pause the server
and check that every shown table cell and every chart's last point is the server's current
value; then, as the baseline, the same page with no data flowing, measured as long. CPU is
each process's user + system time (``/proc/<pid>/stat``) per second of wall time, as % of one
core; Chromium's is the sum of its processes. Goals (issue 30): the NiceGUI process < 50 % of
one core, each element at its throttle rate with the latest value, Chromium >= 20 frames/s.

    python bench/dashboards_nicegui.py                 # 1,000 sensors, 3 runs of 20 s
    python bench/dashboards_nicegui.py --quick --no-docs   # a quick pass (tests/test_bench.py)

Writes bench/results/dashboards_nicegui.md (``dashboards_nicegui_quick.md`` with ``--quick``)
and, unless ``--no-docs``, its section of docs/performance.md if that has one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, publish

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CLK_TCK = os.sysconf("SC_CLK_TCK")
SELF = str(Path(__file__).resolve())
TICK_HZ = 100
FIELDS = ["kind", "value", "unit"]
CHARTS = 10
SETTLE_S = 1.5  # after the pause: > the throttle period + a flush + the trip to the tab

# In the tab: count frames, and the table's DOM updates (one per batch of mutations).
COUNTERS = """() => {
  window.__frames = 0; window.__mutations = 0;
  const tick = () => { window.__frames++; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  new MutationObserver(() => window.__mutations++).observe(
    document.querySelector('.pl3xus-table'),
    {subtree: true, childList: true, characterData: true});
}"""
READ_COUNTERS = "() => [performance.now(), window.__frames, window.__mutations]"
# What the tab shows: the table's cells, and each chart's last point (its echarts instance).
SHOWN = """(ids) => [
  [...document.querySelectorAll('.pl3xus-table .pl3xus-cell')].map(e => e.textContent.trim()),
  ids.map(id => {
    const data = getElement(id).chart.getOption().series[0]?.data || [];
    return data.length ? [data.length, data[data.length - 1][1]] : [0, null];
  }),
]"""


# ------------------------------------------------------------------------------ the server


async def server_role(sensors: int, hz: float) -> None:
    """Serve N sensors at ``hz`` each; stdin lines ``pause``, ``resume``, ``dump`` (reply:
    every sensor's value) and ``stats`` (reply: readings so far) are answered on stdout."""
    from pl3xus_rx import NetworkSettings, SyncServer, SyncSettings
    from pl3xus_rx.demo import Sensor

    server = SyncServer(NetworkSettings(), SyncSettings(max_update_rate_hz=30))
    server.sync_component(Sensor)
    world = server.world
    rng = random.Random(7)
    ids = [
        world.spawn(Sensor(kind="temperature", value=50.0, unit="C", rate_hz=hz))
        for _ in range(sensors)
    ]
    period = max(1, round(TICK_HZ / hz))
    phases = [ids[p::period] for p in range(period)]
    state = {"running": True, "readings": 0}
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()

    def command(line: str) -> None:
        word = line.strip()
        if word == "pause":
            state["running"] = False
            reply: Any = "paused"
        elif word == "resume":
            state["running"] = True
            reply = "resumed"
        elif word == "dump":
            reply = {int(e): world.get(e, Sensor).value for e in ids}  # type: ignore[union-attr]
        elif word == "stats":
            reply = {"readings": state["readings"], "t": time.monotonic()}
        else:
            stopped.set()
            return
        print(json.dumps(reply), flush=True)

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(command, line)
        loop.call_soon_threadsafe(stopped.set)

    async with server.serve("127.0.0.1", 0) as (_, port):
        print(json.dumps({"port": port, "sensors": [int(e) for e in ids]}), flush=True)
        threading.Thread(target=read_stdin, daemon=True).start()
        start, tick = loop.time(), 0
        while not stopped.is_set():
            tick += 1
            if state["running"]:
                for entity in phases[tick % period]:
                    old = world.get(entity, Sensor)
                    assert old is not None
                    value = old.value + rng.gauss(0.0, 1.0) - 0.05 * (old.value - 50.0)
                    world.insert(entity, old.model_copy(update={"value": round(value, 3)}))
                state["readings"] += len(phases[tick % period])
            await asyncio.sleep(max(0.0, start + tick / TICK_HZ - loop.time()))


# ------------------------------------------------------------------------------ the app


def app_role(url: str, port: int, charts: list[int], page_size: int, rate_hz: float) -> None:
    """The NiceGUI app: the page, and ``GET /bench-stats``."""
    from nicegui import app, context, ui

    from client_sync import ClientTypeRegistry
    from client_sync.nicegui import SharedSync
    from pl3xus_rx.demo import Sensor

    registry = ClientTypeRegistry.builder().register(Sensor).build()
    shared = SharedSync(url, registry, rate_hz=rate_hz)
    pages: list[dict[str, Any]] = []

    @ui.page("/")
    def index() -> None:
        bindings = shared.bindings()
        with ui.row().classes("w-full no-wrap items-start gap-4"):
            with ui.column().classes("w-96"):
                table = bindings.table(Sensor, FIELDS, page_size=page_size)
            with ui.grid(columns=2).classes("flex-grow gap-2"):
                shown = [
                    bindings.chart(Sensor, e, "value", title=f"sensor {e}").style("height: 200px")
                    for e in charts
                ]
        # how often each element's data changed (the signals the bindings follow, or
        # their source: a chart's trend changes with its entity's component)
        changes = {"table": 0, **{str(e): 0 for e in charts}}

        def counter(key: str) -> Any:
            def count(_: object) -> None:
                changes[key] += 1

            return count

        watched = [shared.provider.components(Sensor).subscribe(counter("table"))]
        watched += [
            shared.provider.entity_component(Sensor, e).subscribe(counter(str(e))) for e in charts
        ]
        page = {"bindings": bindings, "table": table, "charts": shown, "changes": changes}
        pages.append(page)

        def gone() -> None:
            for subscription in watched:
                subscription.dispose()
            pages.remove(page)

        context.client.on_delete(gone)

    @app.get("/bench-stats")
    async def stats() -> dict[str, Any]:
        out = []
        for page in pages:
            draws = {r.element.id: r.draws for r in page["bindings"]._redraws}
            out.append(
                {
                    "table_draws": page["table"].draws,
                    "chart_draws": [draws.get(c.id, 0) for c in page["charts"]],
                    "chart_ids": [c.id for c in page["charts"]],
                    "changes": dict(page["changes"]),
                }
            )
        return {"t": time.monotonic(), "pages": out}

    ui.run(
        host="127.0.0.1",
        port=port,
        reload=False,
        show=False,
        title="dashboards bench",
        uvicorn_logging_level="warning",
    )


# ------------------------------------------------------------------------------ measuring


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(comm, ppid, CPU seconds) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    rest = text[text.rindex(")") + 2 :].split()
    return comm, int(rest[1]), (int(rest[11]) + int(rest[12])) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    got = _stat(pid)
    return got[2] if got is not None else float("nan")


def descendants() -> dict[int, str]:
    """This process's descendants (pid: name)."""
    parent: dict[int, int] = {}
    comm: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (got := _stat(int(name))) is not None:
            comm[int(name)], parent[int(name)], _ = got
    mine = {os.getpid()}
    grew = True
    while grew:
        more = {p for p, pp in parent.items() if pp in mine and p not in mine}
        mine |= more
        grew = bool(more)
    mine.discard(os.getpid())
    return {p: comm.get(p, "") for p in mine}


def busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine, all cores (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / CLK_TCK, sum(fields) / CLK_TCK


def wait_quiet(limit_s: float, threshold: float = 25.0) -> float:
    """Wait up to ``limit_s`` for the machine to be under ``threshold`` % busy (over 2 s:
    other work shares these cores); return how busy it was at the last look."""
    deadline = time.monotonic() + limit_s
    while True:
        a = busy_seconds()
        time.sleep(2.0)
        b = busy_seconds()
        busy = 100 * (b[0] - a[0]) / (b[1] - a[1])
        if busy < threshold or time.monotonic() > deadline:
            return busy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


class Server:
    """The server process, driven through its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def ask(self, word: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{word}\n".encode())
        await self.proc.stdin.drain()
        return json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 30))


async def measure(
    seconds: float, server: Server, app_pid: int, server_pid: int, stats_url: str, page: Any
) -> dict[str, Any]:
    """CPU, redraws, signal changes and the tab's frames over ``seconds``."""
    family = descendants()
    chromium = [p for p, name in family.items() if name.startswith("chrom")]

    async def sample() -> dict[str, Any]:
        return {
            "app": cpu_seconds(app_pid),
            "server": cpu_seconds(server_pid),
            "chromium": sum(cpu_seconds(p) for p in chromium),
            # (this script, the bench's processes and Playwright's driver)
            "ours": sum(cpu_seconds(p) for p in [os.getpid(), *family]),
            "machine": busy_seconds(),
            "stats": (await asyncio.to_thread(get_json, stats_url))["pages"][0],
            "tab": await page.evaluate(READ_COUNTERS),
            "readings": (await server.ask("stats"))["readings"],
            "wall": time.monotonic(),
        }

    a = await sample()
    await asyncio.sleep(seconds)
    b = await sample()
    wall = b["wall"] - a["wall"]
    sa, sb = a["stats"], b["stats"]
    busy = (b["machine"][0] - a["machine"][0]) / (b["machine"][1] - a["machine"][1])
    cores = os.cpu_count() or 1
    return {
        "seconds": wall,
        "app_cpu": 100 * (b["app"] - a["app"]) / wall,
        "server_cpu": 100 * (b["server"] - a["server"]) / wall,
        "chromium_cpu": 100 * (b["chromium"] - a["chromium"]) / wall,
        "machine_busy": 100 * busy,  # % of all (2) cores
        # what else ran on the machine meanwhile (other work), % of one core
        "others_cpu": max(0.0, 100 * busy * cores - 100 * (b["ours"] - a["ours"]) / wall),
        "fps": (b["tab"][1] - a["tab"][1]) * 1000 / (b["tab"][0] - a["tab"][0]),
        "table_dom_updates": (b["tab"][2] - a["tab"][2]) / wall,
        "readings": (b["readings"] - a["readings"]) / wall,
        "table_draws": (sb["table_draws"] - sa["table_draws"]) / wall,
        "table_changes": (sb["changes"]["table"] - sa["changes"]["table"]) / wall,
        "chart_draws": [
            (y - x) / wall for x, y in zip(sa["chart_draws"], sb["chart_draws"], strict=True)
        ],
        "chart_changes": [
            (sb["changes"][k] - sa["changes"][k]) / wall for k in sa["changes"] if k != "table"
        ],
    }


def check_shown(
    shown: list[Any], values: dict[str, float], chart_entities: list[int]
) -> dict[str, Any]:
    """Whether the tab shows the server's current value in every cell and chart."""
    from client_sync.nicegui import _format_value

    cells, points = shown
    width = 1 + len(FIELDS)
    rows = [cells[i : i + width] for i in range(0, len(cells), width)]
    rows = [r for r in rows if r and r[0]]
    value_col = 1 + FIELDS.index("value")
    table_ok = sum(r[value_col] == _format_value(values[r[0]]) for r in rows)
    chart_ok = sum(
        last is not None and abs(last - values[str(e)]) < 1e-9
        for e, (_, last) in zip(chart_entities, points, strict=True)
    )
    return {
        "rows": len(rows),
        "rows_latest": table_ok,
        "charts": len(points),
        "charts_latest": chart_ok,
        "chart_points": min((n for n, _ in points), default=0),
    }


async def one_run(args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    me = SELF
    server_proc = await asyncio.create_subprocess_exec(
        sys.executable,
        me,
        "--role",
        "server",
        "--sensors",
        str(args.sensors),
        "--hz",
        str(args.hz),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    server = Server(server_proc)
    app_proc: asyncio.subprocess.Process | None = None
    try:
        assert server_proc.stdout is not None
        info = json.loads(await asyncio.wait_for(server_proc.stdout.readline(), 60))
        charts = info["sensors"][:CHARTS]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        app_proc = await asyncio.create_subprocess_exec(
            sys.executable,
            me,
            "--role",
            "app",
            "--url",
            f"ws://127.0.0.1:{info['port']}/",
            "--port",
            str(port),
            "--charts",
            ",".join(map(str, charts)),
            "--page-size",
            str(args.page_size),
            "--rate-hz",
            str(args.rate_hz),
            cwd=workdir,  # (NiceGUI keeps its storage in the working directory)
            # (under pytest, NiceGUI would take itself for a test's app)
            env={k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"},
        )
        for _ in range(300):
            try:
                await asyncio.to_thread(get_json, base + "/bench-stats")
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the NiceGUI app did not come up in 30 s")
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = await browser.new_page(viewport={"width": 1600, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(base + "/")
            status = page.locator(".pl3xus-table").get_by_text(f"of {args.sensors}")
            await status.wait_for(timeout=60_000)
            await page.evaluate(COUNTERS)
            opened = time.monotonic()
            stats_url = base + "/bench-stats"
            await asyncio.sleep(args.warmup)
            cdp = None
            if args.js_profile:
                cdp = await page.context.new_cdp_session(page)
                await cdp.send("Profiler.enable")
                await cdp.send("Profiler.setSamplingInterval", {"interval": 1000})
                await cdp.send("Profiler.start")
            loaded = await measure(
                args.seconds, server, app_proc.pid, server_proc.pid, stats_url, page
            )
            if cdp is not None:
                profile = (await cdp.send("Profiler.stop"))["profile"]
                args.js_profile.write_text(json.dumps(profile))
                print(js_summary(profile), file=sys.stderr)
            loaded["warmed_s"] = time.monotonic() - opened - args.seconds
            assert await server.ask("pause") == "paused"
            await asyncio.sleep(SETTLE_S)
            values = await server.ask("dump")
            ids = (await asyncio.to_thread(get_json, stats_url))["pages"][0]["chart_ids"]
            latest = check_shown(await page.evaluate(SHOWN, ids), values, charts)
            await asyncio.sleep(args.idle_warmup)
            idle = await measure(
                args.seconds, server, app_proc.pid, server_proc.pid, stats_url, page
            )
            if args.screenshot:
                await page.screenshot(path=str(args.screenshot))
            await browser.close()
        if errors:
            raise AssertionError(f"errors in the tab: {errors}")
        return {"loaded": loaded, "idle": idle, "latest": latest}
    finally:
        for proc in (app_proc, server_proc):
            if proc is not None and proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


def js_summary(profile: dict[str, Any], top: int = 25) -> str:
    """The tab's busiest functions by self time (a CDP ``Profiler`` profile), with the share
    of each script; ``(program)`` is the browser's own work (style, layout, paint)."""
    by_id = {node["id"]: node for node in profile["nodes"]}
    total = sum(profile["timeDeltas"]) / 1000 or 1.0
    hits: dict[int, float] = {}
    for node_id, delta in zip(profile["samples"], [*profile["timeDeltas"][1:], 0], strict=True):
        hits[node_id] = hits.get(node_id, 0.0) + delta / 1000
    funcs: dict[str, float] = {}
    files: dict[str, float] = {}
    for node_id, ms in hits.items():
        frame = by_id[node_id]["callFrame"]
        script = frame["url"].rsplit("/", 1)[-1] or "-"
        name = f"{frame['functionName'] or '(anonymous)'} {script}:{frame['lineNumber'] + 1}"
        funcs[name] = funcs.get(name, 0.0) + ms
        files[script] = files.get(script, 0.0) + ms
    lines = [f"tab profile: {total:.0f} ms sampled; by script:"]
    lines += [
        f"  {100 * ms / total:5.1f} % {f}"
        for f, ms in sorted(files.items(), key=lambda x: -x[1])[:12]
    ]
    lines.append("by function (self):")
    lines += [
        f"  {100 * ms / total:5.1f} % {f}"
        for f, ms in sorted(funcs.items(), key=lambda x: -x[1])[:top]
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ the table


def med(runs: list[dict[str, Any]], phase: str, key: str) -> float:
    return statistics.median(r[phase][key] for r in runs)


def table(args: argparse.Namespace, runs: list[dict[str, Any]], discarded: int) -> str:
    n = len(runs)

    def span(phase: str, key: str, fmt: str) -> str:
        values = [r[phase][key] for r in runs]
        text = format(statistics.median(values), fmt)
        if n > 1:
            text += f" ({format(min(values), fmt)} to {format(max(values), fmt)})"
        return text

    def ratio(key: str, floor: float) -> str:
        if any(r["idle"][key] < floor for r in runs):
            return "—"  # (a baseline too small for a ratio to mean anything)
        values = [r["loaded"][key] / r["idle"][key] for r in runs]
        return f"{statistics.median(values):.2f}x"

    cap = args.rate_hz
    chart_draws = [min(r["loaded"]["chart_draws"]) for r in runs]
    chart_draws_max = [max(r["loaded"]["chart_draws"]) for r in runs]
    chart_changes = [statistics.median(r["loaded"]["chart_changes"]) for r in runs]
    table_expected = [min(cap, r["loaded"]["table_changes"]) for r in runs]
    chart_expected = [min([cap, *r["loaded"]["chart_changes"]]) for r in runs]
    rows_ok = sum(r["latest"]["rows_latest"] for r in runs)
    rows = sum(r["latest"]["rows"] for r in runs)
    charts_ok = sum(r["latest"]["charts_latest"] for r in runs)
    charts = sum(r["latest"]["charts"] for r in runs)
    app_cpu = med(runs, "loaded", "app_cpu")
    fps = min(r["loaded"]["fps"] for r in runs)
    # (at most cap x T + 1 redraws fit in a window of T seconds)
    over = [cap + 1 / r["loaded"]["seconds"] for r in runs]
    table_at_rate = all(
        0.9 * e <= r["loaded"]["table_draws"] <= top
        for r, e, top in zip(runs, table_expected, over, strict=True)
    )
    charts_at_rate = all(
        0.9 * e <= lo and hi <= top
        for lo, hi, e, top in zip(chart_draws, chart_draws_max, chart_expected, over, strict=True)
    )

    def yes(ok: bool) -> str:
        return "yes" if ok else "**no**"

    head = (
        f"{args.sensors:,} sensors at {args.hz:g} Hz each ({args.sensors * args.hz:,.0f} "
        "readings/s; a `SyncServer` at 30 flushes/s in its own process) shown by a NiceGUI app "
        f"(its own process, one `SharedSync`): a `Bindings.table` (page of {args.page_size} "
        f"rows: kind, value, unit) and {CHARTS} `Bindings.chart`s of the first {CHARTS} "
        f"sensors' value, every element at {cap:g} Hz; one headless Chromium tab "
        "(1600x1100) on the page. Server, app, Chromium and this script on the same 2 cores. "
        f"Medians of {n} run(s) (range in brackets) of {args.seconds:g} s with data flowing, "
        f"after {args.warmup:g} s of warm-up (the charts filled), then the same page with no "
        "data flowing (the server paused) as long: the baseline. CPU: user + system time per "
        "second of wall time, % of one core (Chromium: all its processes). The machine was "
        f"{', '.join(format(r['busy_before'], '.0f') for r in runs)} % busy with other work just "
        "before each run (up to "
        f"{args.quiet_wait:g} s waited for < 25 %); "
        f"{discarded} run(s) discarded and run again because other work took more than "
        f"{args.max_others:g} % of a core during them.\n\n"
    )
    lines = [
        "| | data flowing | no data (baseline) | flowing / baseline |",
        "|---|---:|---:|---:|",
        f"| readings/s on the server | {span('loaded', 'readings', ',.0f')} "
        f"| {span('idle', 'readings', ',.0f')} | |",
        f"| **NiceGUI process CPU** | {span('loaded', 'app_cpu', '.1f')} % "
        f"| {span('idle', 'app_cpu', '.1f')} % | {ratio('app_cpu', 1.0)} |",
        f"| server process CPU | {span('loaded', 'server_cpu', '.1f')} % "
        f"| {span('idle', 'server_cpu', '.1f')} % | |",
        f"| Chromium CPU (all processes) | {span('loaded', 'chromium_cpu', '.1f')} % "
        f"| {span('idle', 'chromium_cpu', '.1f')} % | {ratio('chromium_cpu', 1.0)} |",
        f"| machine busy (of {os.cpu_count()} cores) | {span('loaded', 'machine_busy', '.0f')} % "
        f"| {span('idle', 'machine_busy', '.0f')} % | |",
        f"| other work on the machine meanwhile (not this bench) "
        f"| {span('loaded', 'others_cpu', '.0f')} % | {span('idle', 'others_cpu', '.0f')} % | |",
        f"| **Chromium frames/s** | {span('loaded', 'fps', '.1f')} "
        f"| {span('idle', 'fps', '.1f')} | {ratio('fps', 1.0)} |",
        f"| table: its signal's changes/s | {span('loaded', 'table_changes', '.1f')} "
        f"| {span('idle', 'table_changes', '.1f')} | |",
        f"| **table: redraws/s** (cap {cap:g}) | {span('loaded', 'table_draws', '.2f')} "
        f"| {span('idle', 'table_draws', '.2f')} | |",
        f"| table: DOM updates/s in the tab | {span('loaded', 'table_dom_updates', '.2f')} "
        f"| {span('idle', 'table_dom_updates', '.2f')} | |",
        f"| charts: their sensor's changes/s (median chart) "
        f"| {statistics.median(chart_changes):.2f} | | |",
        f"| **charts: redraws/s**, slowest to fastest chart (cap {cap:g}) "
        f"| {statistics.median(chart_draws):.2f} to {statistics.median(chart_draws_max):.2f} "
        f"| {statistics.median(min(r['idle']['chart_draws']) for r in runs):.2f} to "
        f"{statistics.median(max(r['idle']['chart_draws']) for r in runs):.2f} | |",
        f"| chart points shown (fewest, at the check) "
        f"| {min(r['latest']['chart_points'] for r in runs)} | | |",
    ]
    goals = [
        "",
        "| goal (issue 30) | measured | met |",
        "|---|---:|:---:|",
        f"| NiceGUI process < 50 % of one core | {app_cpu:.1f} % (median) | {yes(app_cpu < 50)} |",
        f"| table at its throttle rate: ≥ 90 % of min(cap, changes/s), ≤ cap (+1 per window) "
        f"| {med(runs, 'loaded', 'table_draws'):.2f}/s of "
        f"{statistics.median(table_expected):.2f} | {yes(table_at_rate)} |",
        f"| each chart at its throttle rate (the same) "
        f"| {statistics.median(chart_draws):.2f} to {statistics.median(chart_draws_max):.2f}"
        f"/s of {statistics.median(chart_expected):.2f} | {yes(charts_at_rate)} |",
        f"| the latest value shown ({SETTLE_S:g} s after the server paused: the tab's cells and "
        f"each chart's last point = the server's value) | table {rows_ok}/{rows} cells, "
        f"charts {charts_ok}/{charts} | {yes(rows_ok == rows and charts_ok == charts)} |",
        f"| Chromium ≥ 20 frames/s | {fps:.1f} (lowest run) | {yes(fps >= 20)} |",
    ]
    return head + "\n".join(lines + goals)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["server", "app"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--charts", help=argparse.SUPPRESS)
    parser.add_argument("--sensors", type=int, default=None, help="default 1,000 (100: --quick)")
    parser.add_argument("--hz", type=float, default=10.0, help="updates/s of each sensor")
    parser.add_argument("--rate-hz", type=float, default=10.0, help="the elements' throttle")
    parser.add_argument("--page-size", type=int, default=25)
    parser.add_argument("--seconds", type=float, default=None, help="per phase (default 20)")
    parser.add_argument("--warmup", type=float, default=None, help="with data (default 35)")
    parser.add_argument("--runs", type=int, default=None, help="default 3 (1: --quick)")
    parser.add_argument("--quick", action="store_true", help="100 sensors, 1 short run")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="before each run, wait up to this long for the machine to be under 25 %% busy",
    )
    parser.add_argument(
        "--max-others",
        type=float,
        default=30.0,
        help="a run during which other work took more than this %% of a core is run again",
    )
    parser.add_argument("--attempts", type=int, default=8, help="runs at most, in all")
    parser.add_argument(
        "--js-profile", type=Path, default=None, help="profile the tab while data flows (CDP)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the runs here")
    parser.add_argument("--screenshot", type=Path, default=None, help="of the page, at the end")
    parser.add_argument("--no-docs", action="store_true", help="not into docs/performance.md")
    args = parser.parse_args()
    if args.role == "server":
        asyncio.run(server_role(args.sensors, args.hz))
        return 0
    if args.role == "app":
        charts = [int(c) for c in args.charts.split(",")]
        app_role(args.url, args.port, charts, args.page_size, args.rate_hz)
        return 0
    if not os.path.exists(CHROMIUM):
        print(f"needs Debian's chromium at {CHROMIUM}", file=sys.stderr)
        return 2
    quick = args.quick
    given = {"sensors": args.sensors, "seconds": args.seconds, "warmup": args.warmup}
    given["runs"] = args.runs
    args.sensors = args.sensors or (100 if quick else 1000)
    args.seconds = args.seconds or (2.0 if quick else 20.0)
    args.warmup = args.warmup if args.warmup is not None else (1.5 if quick else 35.0)
    args.idle_warmup = 1.0 if quick else 3.0
    if quick:
        args.quiet_wait = 0.0
    count = args.runs or (1 if quick else 3)
    runs: list[dict[str, Any]] = []
    discarded: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dashboards-bench-") as workdir:
        attempts = 0
        while len(runs) < count:
            attempts += 1
            before = wait_quiet(args.quiet_wait)
            run = {**asyncio.run(one_run(args, workdir)), "busy_before": before}
            others = max(run["loaded"]["others_cpu"], run["idle"]["others_cpu"])
            noisy = not quick and others > args.max_others
            print(
                f"run {attempts}: other work {others:.0f} % of a core"
                + (" (discarded)" if noisy else f" (kept: {len(runs) + 1}/{count})"),
                file=sys.stderr,
            )
            if noisy and attempts < args.attempts:
                discarded.append(run)
                continue
            runs.append(run)
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "discarded": discarded}, indent=1))
    name = "dashboards_nicegui_quick" if quick else "dashboards_nicegui"
    command = "python bench/dashboards_nicegui.py" + (" --quick" if quick else "")
    for option, value in given.items():
        if value is not None:
            command += f" --{option} {value:g}"
    docs = not args.no_docs and not quick
    if docs and f"<!-- {name}:start -->" not in (ROOT / "docs" / "performance.md").read_text():
        print(f"docs/performance.md has no {name} section: not written there", file=sys.stderr)
        docs = False
    publish(name, command, table(args, runs, len(discarded)), docs=docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
