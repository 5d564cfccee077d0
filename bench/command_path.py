"""Command path benchmark: the server's command entry, in-process (no sockets), before and
after a change of the command layer.

Two cases, each at C = 1 and C = 100 clients subscribed to every ``Position``:

- **insert**: 1,000 ``server.world.insert(entity, Position(...))`` on 1,000 existing entities,
  then one flush (``server.engine.flush``: one SYNC frame per client);
- **mutate**: 1,000 MUTATE frames ``[7, req_id, "Position", entity, {"x": .., "y": ..}]``
  from the first client through ``SyncServer._on_frame`` (the entry every client command
  takes), then one flush (the C SYNC frames, then the 1,000 ``ok`` replies that waited for
  it).

The clients are only the sync engine's (``engine.add_client``); the network knows none of
them, so nothing that goes through it is measured. ``Position`` is client-writable through an
entity policy that authorizes everyone (no control needed). Every round checks that the
World holds what was written, that the flush produced C SYNC frames (and, for mutate, the
1,000 ``ok`` replies): the benchmark cannot silently measure nothing. Only the region
between the first insert (or frame) and the end of the flush is timed (``perf_counter``,
garbage collection off inside it, collected before it).

Each version runs in its own processes (``PYTHONPATH`` selects the ``pl3xus_rx`` imported;
the after tree's package is copied at the start, so that edits made meanwhile do not leak
into some of the repetitions), interleaved: before, after, before, after... One process is
one repetition: a few warm-up rounds, then several timed rounds whose median is its result.
Reported: the medians over the repetitions and after / before. Usage::

    python bench/command_path.py                       # 20 reps, "before" = git 4125bf9
    python bench/command_path.py --before /tmp/before  # a checkout of the before tree
    python bench/command_path.py --reps 2 --quick --only-current   # CI: this tree only

The table goes to bench/results/command_path.md (``--quick``: command_path_quick.md;
``--only-current``: command_path_current.md), never to the docs (``--no-docs`` is accepted,
and changes nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BEFORE_REV = "4125bf9"
ENTITIES = 1_000
OPS = 1_000
CLIENTS = (1, 100)
CASES = ("insert", "mutate")


# --------------------------------------------------------------------- one process


def measure(clients: list[int], warmup: int, rounds: int) -> dict[str, float]:
    """Seconds per case (``"insert/1"``...): the median of ``rounds`` timed rounds (and
    the best one, ``"insert/1/best"``)."""
    return asyncio.run(_measure(clients, warmup, rounds))


async def _measure(clients: list[int], warmup: int, rounds: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in clients:
        bench = _Bench(c)
        await bench.setup()
        times: dict[str, list[float]] = {case: [] for case in CASES}
        faults: dict[str, list[int]] = {case: [] for case in CASES}
        for i in range(warmup + rounds):
            for case in CASES:
                seconds, n = bench.insert_round() if case == "insert" else bench.mutate_round()
                if i >= warmup:
                    times[case].append(seconds)
                    faults[case].append(n)
                await asyncio.sleep(0)  # the server's own scheduled flush runs (untimed)
        for case in CASES:
            out[f"{case}/{c}"] = statistics.median(times[case])
            out[f"{case}/{c}/best"] = min(times[case])
            out[f"{case}/{c}/faults"] = statistics.median(faults[case])
    return out


def _faults() -> int:
    """Minor page faults of this process so far (memory the allocator got from the
    kernel again: touched for the first time, or after it was given back)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class _Bench:
    def __init__(self, clients: int) -> None:
        from pydantic import BaseModel

        from pl3xus_rx import NetworkSettings, SyncServer, SyncSettings
        from pl3xus_rx.sync import Authorized

        class Position(BaseModel):
            x: float
            y: float

        self.Position = Position
        self.clients = clients
        self.server = SyncServer(
            NetworkSettings(ping_interval=None, max_connections=None, rate_limit_per_second=None),
            SyncSettings(max_update_rate_hz=100_000, max_pending_commands=None),
        )
        self.server.sync_component_builder(Position).with_entity_policy(
            lambda world, ctx, entity: Authorized()
        ).build()
        self.entities = [self.server.world.spawn(Position(x=0, y=0)) for _ in range(ENTITIES)]
        self.conns = list(range(1, clients + 1))
        self.rng = random.Random(7)
        self.req_id = 0

    async def setup(self) -> None:
        import msgpack

        from pl3xus_rx.protocol import FrameKind

        server = self.server
        for conn in self.conns:
            server.engine.add_client(conn, binary=True)
            server._on_frame(conn, True, [FrameKind.SUBSCRIBE, 1, "Position", None, {}])  # type: ignore[arg-type]
        frames = server.engine.flush(time.monotonic())
        assert sorted(c for c, _ in frames) == self.conns, "no snapshot per client"
        for _, data in frames:
            kind, _seq, groups = msgpack.unpackb(data)
            assert kind == FrameKind.SYNC and sum(len(g[2]) for g in groups) == ENTITIES, (
                "short snapshot"
            )
        await asyncio.sleep(0)

    def _values(self) -> list[tuple[float, float]]:
        u = self.rng.uniform
        return [(round(u(-100, 100), 3), round(u(-100, 100), 3)) for _ in range(OPS)]

    def insert_round(self) -> tuple[float, int]:
        values = self._values()
        pairs = zip(self.entities, values, strict=True)
        typed = [(e, self.Position(x=x, y=y)) for e, (x, y) in pairs]
        insert, flush = self.server.world.insert, self.server.engine.flush
        gc.collect()
        gc.disable()
        try:
            faults = _faults()
            t0 = time.perf_counter()
            for entity, value in typed:
                insert(entity, value)
            frames = flush(time.monotonic())
            seconds = time.perf_counter() - t0
            faults = _faults() - faults
        finally:
            gc.enable()
        self._check(values, frames, replies=0)
        return seconds, faults

    def mutate_round(self) -> tuple[float, int]:
        from pl3xus_rx.protocol import FrameKind

        values = self._values()
        first = self.req_id + 1
        commands = [
            [FrameKind.MUTATE, first + i, "Position", int(e), {"x": x, "y": y}]
            for i, (e, (x, y)) in enumerate(zip(self.entities, values, strict=True))
        ]
        self.req_id += OPS
        on_frame, flush, conn = self.server._on_frame, self.server.engine.flush, self.conns[0]
        gc.collect()
        gc.disable()
        try:
            faults = _faults()
            t0 = time.perf_counter()
            for frame in commands:
                on_frame(conn, True, frame)  # type: ignore[arg-type]
            frames = flush(time.monotonic())
            seconds = time.perf_counter() - t0
            faults = _faults() - faults
        finally:
            gc.enable()
        self._check(values, frames, replies=OPS, first=first)
        return seconds, faults

    def _check(
        self, values: list[tuple[float, float]], frames: list[Any], replies: int, first: int = 0
    ) -> None:
        import msgpack

        from pl3xus_rx.protocol import FrameKind

        get, model = self.server.world.get, self.Position
        for entity, (x, y) in zip(self.entities, values, strict=True):
            value = get(entity, model)
            assert value is not None and (value.x, value.y) == (x, y), (entity, value, x, y)
        expected = {int(e): v for e, v in zip(self.entities, values, strict=True)}
        syncs: list[int] = []
        answered: list[int] = []
        for conn, data in frames:
            frame = msgpack.unpackb(data)
            if frame[0] == FrameKind.SYNC:  # [5, seq, [[sub_id, flags, upserts, ...], ...]]
                upserts = {e: tuple(v) for g in frame[2] for e, v in g[2]}
                assert upserts == expected, "the SYNC frame does not carry every write"
                syncs.append(conn)
            else:
                assert frame[0] == FrameKind.REPLY and frame[2] == "ok", frame
                assert conn == self.conns[0]
                answered.append(frame[1])
        assert sorted(syncs) == self.conns, f"{len(syncs)} SYNC frames for {self.clients}"
        assert answered == list(range(first, first + replies)), f"{len(answered)} replies"


def child(args: argparse.Namespace) -> None:
    import pl3xus_rx

    where = Path(pl3xus_rx.__file__).resolve().parent.parent
    if args.expect and where != Path(args.expect).resolve():
        raise SystemExit(f"imported pl3xus_rx from {where}, not {args.expect}")
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    result = measure(args.clients, args.warmup, args.rounds)
    print(json.dumps(result))


# --------------------------------------------------------------------- the runs


def spawn(tree: Path, args: argparse.Namespace) -> dict[str, float]:
    """One repetition in a fresh process that imports ``pl3xus_rx`` from ``tree``."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--expect",
        str(tree),
        "--clients",
        ",".join(map(str, args.clients)),
        "--warmup",
        str(args.warmup),
        "--rounds",
        str(args.rounds),
    ]
    if args.cpu is not None:
        command += ["--cpu", str(args.cpu)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if args.malloc == "kept":
        env.update(KEPT_MALLOC)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the run against {tree} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def export(rev: str, into: Path) -> Path:
    """The tree of ``rev`` in ``into`` (``git archive``: the repository is not touched);
    returns the folder to import ``pl3xus_rx`` from (``src`` once the layout has one)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src" if (into / "src" / "pl3xus_rx").is_dir() else into


def snapshot(tree: Path, into: Path) -> tuple[Path, str]:
    """A copy of ``tree``'s ``pl3xus_rx`` in ``into`` (others may edit the working tree
    while the benchmark runs: every repetition measures the same code), and what it is:
    the commit, plus a hash of the uncommitted changes to the package, if any."""
    package = tree / "src" / "pl3xus_rx"
    if not package.is_dir():
        package = tree / "pl3xus_rx"  # (the layout before src/)
    shutil.copytree(package, into / "pl3xus_rx", ignore=shutil.ignore_patterns("__pycache__"))

    def git(*argv: str) -> str:
        return subprocess.run(
            ["git", "-C", str(tree), *argv], capture_output=True, text=True, check=True
        ).stdout

    head = git("rev-parse", "--short", "HEAD").strip()
    where = str(package.relative_to(tree))
    diff = git("diff", "HEAD", "--", where) + git(
        "ls-files", "--others", "--exclude-standard", "--", where
    )
    if diff:
        head += f" + uncommitted changes (sha1 {hashlib.sha1(diff.encode()).hexdigest()[:10]})"
    return into, head


STATS = (("", "median"), ("/best", "best"))

# glibc's malloc gives the top of its heap back to the kernel once 128 KiB of it are free
# (and faults it in again at the next allocation). Whether that happens between two rounds
# depends on where the last live object lies, not on the code measured: the same
# instructions then cost 100-300 page faults more per round (a flush at C = 100 allocates
# 100 frames of ~20 kB). ``--malloc kept`` keeps that memory in both versions.
KEPT_MALLOC = {"MALLOC_TRIM_THRESHOLD_": str(1 << 31), "MALLOC_TOP_PAD_": str(64 << 20)}


def table(runs: dict[str, list[dict[str, float]]], clients: list[int], note: str) -> str:
    """Per case and per statistic of a process's rounds (their median, their best): each
    version's median over the repetitions [p25-p75], after / before of those medians, and
    the median of the paired ratios (each after run over the before run just ahead of it)."""
    labels = list(runs)
    pair = len(labels) == 2
    head = "| case | C | round |" + "".join(f" {x} ms [p25-p75] |" for x in labels)
    align = "|---|---:|---|" + "---:|" * len(labels)
    if pair:
        head += " after / before | paired after / before |"
        align += "---:|---:|"
    lines = [note, "", head, align]
    for case in CASES:
        for c in clients:
            for suffix, stat in STATS:
                key = f"{case}/{c}{suffix}"
                row = f"| {case} | {c} | {stat} |"
                medians = []
                for label in labels:
                    xs = sorted(r[key] * 1e3 for r in runs[label])
                    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
                    medians.append(statistics.median(xs))
                    faults = statistics.median(r[f"{case}/{c}/faults"] for r in runs[label])
                    row += f" {medians[-1]:.2f} [{q[0]:.2f}-{q[2]:.2f}] ({faults:.0f}) |"
                if pair:
                    ratio = medians[1] / medians[0]
                    paired = statistics.median(
                        a[key] / b[key] for b, a in zip(*runs.values(), strict=True)
                    )
                    flag = " (>5 % slower)" if ratio > 1.05 else ""
                    row += f" **{ratio:.3f}{flag}** | {paired:.3f} |"
                lines.append(row)
    lines += [
        "",
        "Times in ms for the 1,000 ops and the flush (= µs per op). One repetition is one "
        "process; its value is the median (or the best) of its timed rounds. Garbage "
        "collection is off while timed. In parentheses: minor page faults in the timed "
        "region (median of the processes' medians).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Command path benchmark (see docstring).")
    parser.add_argument("--reps", type=int, default=20, help="processes per version")
    parser.add_argument("--quick", action="store_true", help="1 warm-up, 1 timed round")
    parser.add_argument("--only-current", action="store_true", help="this tree, in-process")
    parser.add_argument("--before", type=Path, help="a checkout of the before tree")
    parser.add_argument("--before-rev", default=BEFORE_REV, help="exported if no --before")
    parser.add_argument("--after", type=Path, default=ROOT, help="default: this working tree")
    parser.add_argument("--clients", default=",".join(map(str, CLIENTS)))
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--cpu", type=int, help="pin each run to this CPU")
    parser.add_argument(
        "--malloc",
        choices=("default", "kept"),
        default="default",
        help="kept: glibc keeps freed heap memory (both versions; see KEPT_MALLOC)",
    )
    parser.add_argument("--no-docs", action="store_true", help="(accepted; never writes docs)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--expect", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.clients = [int(x) for x in str(args.clients).split(",")]
    if args.warmup is None:
        args.warmup = 1 if args.quick else 5
    if args.rounds is None:
        args.rounds = 1 if args.quick else 9
    if args.child:
        child(args)
        return

    sizes = (
        f"{OPS:,} ops on {ENTITIES:,} entities, one flush; {args.warmup} warm-up and "
        f"{args.rounds} timed rounds per process"
    )
    runs: dict[str, list[dict[str, float]]]
    if args.only_current:
        sys.path.insert(0, str(ROOT))
        runs = {"current": []}
        for _ in range(args.reps):
            runs["current"].append(measure(args.clients, args.warmup, args.rounds))
        note = f"This tree only, in-process, {args.reps} reps; {sizes}."
        command = "python bench/command_path.py --only-current"
    else:
        with tempfile.TemporaryDirectory(prefix="command_path_") as tmp:
            (Path(tmp) / "before").mkdir()
            if args.before is not None:
                src = args.before / "src"
                before = src if (src / "pl3xus_rx").is_dir() else args.before
            else:
                before = export(args.before_rev, Path(tmp) / "before")
            after, which = snapshot(args.after.resolve(), Path(tmp) / "after")
            runs = {"before": [], "after": []}
            for rep in range(args.reps):
                for label, tree in (("before", before), ("after", after)):
                    runs[label].append(spawn(tree, args))
                print(f"rep {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)
        what = f"`{args.before}`" if args.before else f"git {args.before_rev}"
        note = (
            f"before = {what}, after = `{args.after}` as copied at the start ({which}); "
            f"{args.reps} "
            f"interleaved reps each (separate processes); {sizes}; malloc {args.malloc}."
        )
        command = "python bench/command_path.py"
    text = table(runs, args.clients, note)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import publish

    name = "command_path" + ("_quick" if args.quick else "_current" if args.only_current else "")
    if args.malloc == "kept" and not args.quick and not args.only_current:
        name += "_malloc_kept"
    publish(name, command, text, docs=False)


if __name__ == "__main__":
    main()
