"""A notebook table of 1,000 live sensors: the kernel's CPU, how often the widget's state
changes at the front-end, and whether it shows the latest values (no browser).

Three processes:

- **the server** (``--role server``, core 0): a ``SyncServer`` (30 flushes/s at most) with N
  ``pl3xus_rx.demo.Sensor`` entities, each updated at 10 Hz (N x 10 readings/s, spread evenly
  over 100 ticks/s: a mean-reverting walk, 3 decimals); paused, resumed and its values read
  back through its stdin;
- **a real Jupyter kernel** (ipykernel on this interpreter, core 1), driven as a front-end
  drives one: cells run with top-level ``await``; ``sync = await notebook.connect(...)``,
  then ``display(sync.table(Sensor, ["kind", "value", "unit"], page_size=25))`` (throttled at
  10 Hz: the table also asks the server for at most 10 updates a second);
- **this process**, the front-end (no browser): a ``jupyter_client`` that reads every
  message the kernel publishes and keeps each widget's state from the comm messages, as
  JupyterLab would.

Phases of each run, ``--seconds`` each after a warm-up: *provider alone* (the same
``components(Sensor, max_rate_hz=10)`` signal the table follows, observed by a counter of
its batches: what the data costs), *table* (the widget shown as well: its cost on top), then
the server paused and, after a settle, the table's rows at the front-end compared with the
server's values; *table, no data* (the widget there, nothing flowing: the floor). CPU is
the kernel process's user + system time (``/proc/<pid>/stat``, every thread) per second of
wall time, as % of one core. The state changes are the comm ``update`` messages carrying
``rows`` that reach the front-end. Nothing is asserted: the machine is shared.

    python bench/dashboards_notebook.py                    # 1,000 sensors, 3 runs of 20 s
    python bench/dashboards_notebook.py --quick --no-docs  # a quick pass

Writes bench/results/dashboards_notebook.md (``dashboards_notebook_quick.md`` with
``--quick``) and, unless ``--no-docs``, its section of docs/performance.md if that has one.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, publish

CLK_TCK = os.sysconf("SC_CLK_TCK")
SELF = str(Path(__file__).resolve())
TICK_HZ = 100
FIELDS = ["kind", "value", "unit"]
SETTLE_S = 1.0  # after the pause: > the throttle period + a flush + the trip to the front-end
TWO_CORES = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1


# ------------------------------------------------------------------------------ the server


async def server_role(sensors: int, hz: float) -> None:
    """Serve N sensors at ``hz`` each; stdin lines ``pause``, ``resume``, ``dump`` (reply:
    every sensor's value) and ``stats`` (reply: readings so far) are answered on stdout."""
    from pl3xus_rx import NetworkSettings, SyncServer, SyncSettings
    from pl3xus_rx.demo import Sensor

    if TWO_CORES:
        os.sched_setaffinity(0, {0})
    server = SyncServer(
        NetworkSettings(), SyncSettings(max_update_rate_hz=30), devtools=False, metrics=False
    )
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


class Server:
    """The server process, driven through its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def ask(self, word: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{word}\n".encode())
        await self.proc.stdin.drain()
        return json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 30))


# ------------------------------------------------------------------------------ the kernel


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


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


class FrontEnd:
    """What a notebook front-end does with a kernel, without a browser: runs cells, and
    keeps every widget's state from the comm messages (whatever cell they come under)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.widgets: dict[str, dict[str, Any]] = {}
        self.updates: dict[str, list[tuple[float, set[str], int]]] = {}
        self._outputs: dict[str, list[str]] = {}
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._pump = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while True:
            message = await self.client.get_iopub_msg()
            now = time.monotonic()
            kind, content = message["msg_type"], message["content"]
            parent = message["parent_header"].get("msg_id")
            if kind == "comm_open":
                self.widgets[content["comm_id"]] = dict(content["data"].get("state", {}))
            elif kind == "comm_msg" and content["data"].get("method") in ("update", "echo_update"):
                state = content["data"]["state"]
                self.widgets.setdefault(content["comm_id"], {}).update(state)
                size = len(json.dumps(content["data"]))
                self.updates.setdefault(content["comm_id"], []).append((now, set(state), size))
            elif kind == "stream":
                self._outputs.setdefault(parent, []).append(content["text"])
            elif kind == "error":
                self._outputs.setdefault(parent, []).append("\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                waiting = self._waiting.pop(parent, None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(None)

    async def run(self, code: str, timeout: float = 60.0) -> str:
        """Run a cell; its printed output. Raises if the cell raised."""
        msg_id = self.client.execute(textwrap.dedent(code))
        done = self._waiting[msg_id] = asyncio.get_running_loop().create_future()
        await asyncio.wait_for(done, timeout)
        reply = await self.client.get_shell_msg(timeout=timeout)
        text = "".join(self._outputs.pop(msg_id, []))
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"the cell failed:\n{code}\n{text}")
        return text

    async def close(self) -> None:
        self._pump.cancel()
        await asyncio.gather(self._pump, return_exceptions=True)


SETUP = """
import asyncio, json, os, time
from client_sync import ClientTypeRegistry, notebook
from pl3xus_rx.demo import Sensor

registry = ClientTypeRegistry.builder().register(Sensor).build()
sync = await notebook.connect("{url}", registry)
counts = {{"changes": 0, "redraws": 0}}
redrawn = []  # when the table's rows changed (the kernel's clock)

def count(key):
    def add(_):
        counts[key] += 1
    return add

print(os.getpid())
"""

ALONE = """
values = sync.provider.components(Sensor, max_rate_hz={rate})
link = values.subscribe(count("changes"))
await sync.provider.wait_synced(30)
while len(values.get()) < {sensors}:
    await asyncio.sleep(0.05)
print("ok")
"""

TABLE = """
table = sync.table(Sensor, {fields!r}, page_size={page_size}, rate_hz={rate})
table.observe(count("redraws"), names=["rows"])
table.observe(lambda _: redrawn.append(time.monotonic()), names=["rows"])
display(table)
while len(table.rows) < {page_size} or table.stale:
    await asyncio.sleep(0.05)
print(table.model_id)
"""


async def measure(
    front: FrontEnd, pid: int, server: Server, seconds: float, comm_id: str | None
) -> dict[str, Any]:
    """One phase: the kernel's CPU, the readings, the kernel's counts and the front-end's
    ``rows`` updates, over ``seconds``."""
    counts = json.loads(await front.run("print(json.dumps(counts))"))
    first = await server.ask("stats")
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    last = await server.ask("stats")
    after = json.loads(await front.run("print(json.dumps(counts))"))
    redrawn = json.loads(await front.run("print(json.dumps(redrawn)); redrawn.clear()"))
    wall = t1 - t0
    # the kernel's and this process's monotonic clocks are the machine's one clock
    kernel_gaps = [b - a for a, b in itertools.pairwise(t for t in redrawn if t0 <= t <= t1)]
    rows = [
        (t, size)
        for t, keys, size in (front.updates.get(comm_id, []) if comm_id else [])
        if t0 <= t <= t1 and "rows" in keys
    ]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(rows)]
    return {
        "cpu": 100 * (cpu1 - cpu0) / wall,
        "readings": (last["readings"] - first["readings"]) / (last["t"] - first["t"]),
        "changes": (after["changes"] - counts["changes"]) / wall,
        "redraws": (after["redraws"] - counts["redraws"]) / wall,
        "updates": len(rows) / wall,
        "bytes": sum(size for _, size in rows) / wall,
        "gap_min": min(gaps) if gaps else float("nan"),
        "gap_max": max(gaps) if gaps else float("nan"),
        "kernel_gap_min": min(kernel_gaps) if kernel_gaps else float("nan"),
        "kernel_gap_max": max(kernel_gaps) if kernel_gaps else float("nan"),
    }


async def one_run(args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    from jupyter_client.manager import start_new_async_kernel

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        SELF,
        "--role",
        "server",
        "--sensors",
        str(args.sensors),
        "--hz",
        str(args.hz),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    server = Server(proc)
    assert proc.stdout is not None
    hello = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
    url = f"ws://127.0.0.1:{hello['port']}/"
    # the kernel on core 1: it inherits this process's affinity when it starts
    everywhere = os.sched_getaffinity(0) if TWO_CORES else set()
    if TWO_CORES:
        os.sched_setaffinity(0, {1})
    try:
        km, client = await start_new_async_kernel(
            kernel_name="python3", startup_timeout=60, cwd=workdir
        )
    finally:
        if TWO_CORES:
            os.sched_setaffinity(0, everywhere)
    front = FrontEnd(client)
    result: dict[str, Any] = {}
    try:
        pid = int(await front.run(SETUP.format(url=url)))
        values = {"rate": args.rate_hz, "sensors": args.sensors, "page_size": args.page_size}
        await front.run(ALONE.format(**values))
        await asyncio.sleep(args.warmup)
        result["alone"] = await measure(front, pid, server, args.seconds, None)

        comm_id = (await front.run(TABLE.format(fields=FIELDS, **values))).strip()
        await asyncio.sleep(args.warmup)
        result["table"] = await measure(front, pid, server, args.seconds, comm_id)

        await server.ask("pause")
        await asyncio.sleep(SETTLE_S)
        truth = {int(k): v for k, v in (await server.ask("dump")).items()}
        shown = front.widgets[comm_id]["rows"]
        column = 1 + FIELDS.index("value")
        result["latest"] = (sum(truth[row[0]] == row[column] for row in shown), len(shown))
        await asyncio.sleep(1.0)
        result["idle"] = await measure(front, pid, server, args.seconds, comm_id)
        await front.run("await sync.close()")
    finally:
        await front.close()
        client.stop_channels()
        await km.shutdown_kernel(now=True)
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    return result


# ------------------------------------------------------------------------------ the table


def med(runs: list[dict[str, Any]], phase: str, key: str) -> float:
    return statistics.median(r[phase][key] for r in runs)


def span(runs: list[dict[str, Any]], phase: str, key: str, fmt: str) -> str:
    values = [r[phase][key] for r in runs]
    text = format(statistics.median(values), fmt)
    if len(values) > 1:
        text += f" ({format(min(values), fmt)}..{format(max(values), fmt)})"
    return text


def table(args: argparse.Namespace, runs: list[dict[str, Any]]) -> str:
    shown = [r["latest"] for r in runs]
    rows = [
        ("readings the server made, per second", span(runs, "table", "readings", ",.0f")),
        ("kernel CPU, provider alone (% of one core)", span(runs, "alone", "cpu", ".1f")),
        ("kernel CPU, provider + table widget", span(runs, "table", "cpu", ".1f")),
        ("kernel CPU, table widget, no data flowing", span(runs, "idle", "cpu", ".1f")),
        ("batches the table's signal got, per second", span(runs, "table", "changes", ".1f")),
        ("table redraws in the kernel, per second", span(runs, "table", "redraws", ".1f")),
        (
            f"`rows` updates reaching the front-end, per second (throttle {args.rate_hz:g})",
            span(runs, "table", "updates", ".2f"),
        ),
        ("shortest / longest gap between redraws in the kernel (ms)", gap(runs, "kernel_")),
        ("shortest / longest gap between their arrivals at the front-end (ms)", gap(runs, "")),
        ("bytes of those updates per second", span(runs, "table", "bytes", ",.0f")),
        (
            "latest values shown after the server paused (rows equal to the server's)",
            ", ".join(f"{ok}/{n}" for ok, n in shown),
        ),
        ("`rows` updates with no data flowing, per second", span(runs, "idle", "updates", ".2f")),
        (
            "the machine's 2 cores busy before each run (other work, %)",
            ", ".join(f"{r['busy_before']:.0f}" for r in runs),
        ),
    ]
    head = (
        f"{args.sensors:,} sensors at {args.hz:g} Hz (server: 30 flushes/s, core 0); a real "
        f"ipykernel (core 1) with a `LiveTable` of {args.page_size} rows "
        f"(`{', '.join(FIELDS)}`), throttled at {args.rate_hz:g} Hz; {len(runs)} run(s) of "
        f"{args.seconds:g} s per phase after {args.warmup:g} s warm-up; median (range).\n\n"
        "| | |\n|---|---|\n"
    )
    return head + "\n".join(f"| {name} | {value} |" for name, value in rows) + "\n"


def gap(runs: list[dict[str, Any]], where: str) -> str:
    low = min(r["table"][f"{where}gap_min"] for r in runs) * 1000
    high = max(r["table"][f"{where}gap_max"] for r in runs) * 1000
    return f"{low:.0f} / {high:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--role", choices=["server"], help=argparse.SUPPRESS)
    parser.add_argument("--sensors", type=int, default=None, help="default 1,000 (100: --quick)")
    parser.add_argument("--hz", type=float, default=10.0, help="updates/s of each sensor")
    parser.add_argument("--rate-hz", type=float, default=10.0, help="the table's throttle")
    parser.add_argument("--page-size", type=int, default=25)
    parser.add_argument("--seconds", type=float, default=None, help="per phase (default 20)")
    parser.add_argument("--warmup", type=float, default=None, help="per phase (default 3)")
    parser.add_argument("--runs", type=int, default=None, help="default 3 (1: --quick)")
    parser.add_argument("--quick", action="store_true", help="100 sensors, 1 short run")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="before each run, wait up to this long for the machine to be under 25 %% busy",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the runs here")
    parser.add_argument("--no-docs", action="store_true", help="not into docs/performance.md")
    args = parser.parse_args()
    if args.role == "server":
        asyncio.run(server_role(args.sensors, args.hz))
        return 0
    quick = args.quick
    given = {"sensors": args.sensors, "seconds": args.seconds, "runs": args.runs}
    args.sensors = args.sensors or (100 if quick else 1000)
    args.seconds = args.seconds or (2.0 if quick else 20.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 3.0)
    count = args.runs or (1 if quick else 3)
    runs = []
    with tempfile.TemporaryDirectory(prefix="notebook-bench-") as workdir:
        for i in range(count):
            before = wait_quiet(0.0 if quick else args.quiet_wait)
            runs.append({**asyncio.run(one_run(args, workdir)), "busy_before": before})
            print(f"run {i + 1}/{count} done", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    name = "dashboards_notebook_quick" if quick else "dashboards_notebook"
    command = "python bench/dashboards_notebook.py" + (" --quick" if quick else "")
    for option, value in given.items():
        if value is not None:
            command += f" --{option} {value:g}"
    docs = not args.no_docs and not quick
    if docs and f"<!-- {name}:start -->" not in (ROOT / "docs" / "performance.md").read_text():
        print(f"docs/performance.md has no {name} section: not written there", file=sys.stderr)
        docs = False
    publish(name, command, table(args, runs), docs=docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
