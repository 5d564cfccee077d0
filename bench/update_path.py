"""The update path in-process: what one update of a ``Position(x, y)`` costs the World.

10,000 entities; every round, 1,000 random entities get new values that start as raw
``(entity, x, y)`` tuples (built just before the timed call, as a producer has them, and new
for every path so that no path finds its values already stored). The paths, in the same
round and in a rotating order:

- **insert, model built**: ``world.insert(entity, Position(x=x, y=y))`` per update (the
  model path: pydantic builds and validates an instance, the World stores its fields);
- **update_many**: ``world.update_many(Position, rows)``: the whole batch validated in one
  pydantic-core call, stored as tuples, no instance;
- **update_many, trusted**: ``world.update_many(Position, rows, trusted=True)``: no
  validation;
- **update per row**: ``world.update(entity, Position, x=x, y=y)`` per update;
- **reference: msgpack pack**: what the raw ``websockets`` baseline of
  ``bench/sync_fanout.py`` does with the same tuples per tick (``pack([[e, [x, y]], ...])``):
  a scale, not a path.

The World tracks ``Position`` as the sync engine does (a change tracker, drained after every
call, outside the timing), so each update pays its change tracking. Timed with the
process's CPU clock (``time.process_time_ns``: time other processes take is not counted);
garbage collection stays on (the model path's instances are what a server collects).
Reported: the median µs per update over the rounds, and each path against the model path.
Usage::

    python bench/update_path.py                 # 300 rounds; writes bench/results/ and docs
    python bench/update_path.py --quick --no-docs
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import publish  # noqa: E402

from pl3xus_rx.world import World  # noqa: E402

ENTITIES = 10_000
PER_ROUND = 1_000

Rows = list[tuple[int, float, float]]


class Position(BaseModel):
    x: float
    y: float


def paths(world: World) -> dict[str, Callable[[Rows], object]]:
    insert, update, update_many = world.insert, world.update, world.update_many
    pack = msgpack.Packer().pack

    def model(rows: Rows) -> None:
        for e, x, y in rows:
            insert(e, Position(x=x, y=y))  # type: ignore[arg-type]

    def per_row(rows: Rows) -> None:
        for e, x, y in rows:
            update(e, Position, x=x, y=y)  # type: ignore[arg-type]

    return {
        "insert, model built": model,
        "update_many": lambda rows: update_many(Position, rows),
        "update_many, trusted": lambda rows: update_many(Position, rows, trusted=True),
        "update per row": per_row,
        "reference: msgpack pack": lambda rows: pack([[e, [x, y]] for e, x, y in rows]),
    }


def run(rounds: int, warmup: int) -> dict[str, list[float]]:
    """µs per update of every path, one value per timed round."""
    world = World()
    ents = [world.spawn(Position(x=0, y=0)) for _ in range(ENTITIES)]
    tracker = world.track(Position, lambda: None)
    rng = random.Random(7)
    todo = paths(world)
    names = list(todo)
    out: dict[str, list[float]] = {name: [] for name in names}
    clock = time.process_time_ns
    for r in range(warmup + rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            rows = [
                (e, round(rng.uniform(-100, 100), 3), round(rng.uniform(-100, 100), 3))
                for e in rng.sample(ents, PER_ROUND)
            ]
            fn = todo[name]
            t0 = clock()
            fn(rows)
            t1 = clock()
            changed = len(tracker.drain())
            if not name.startswith("reference") and changed < PER_ROUND * 0.99:
                raise AssertionError(f"{name}: {changed} of {PER_ROUND} updates were changes")
            if r >= warmup:
                out[name].append((t1 - t0) / 1e3 / PER_ROUND)
    return out


def table(times: dict[str, list[float]], rounds: int) -> str:
    model = statistics.median(times["insert, model built"])
    lines = [
        f"{ENTITIES:,} `Position(x, y)` entities, {PER_ROUND:,} random updates per round from "
        f"raw `(entity, x, y)` tuples, change tracking on; every path in every round, in a "
        f"rotating order; medians of {rounds} rounds (process CPU time).",
        "",
        "| path | µs per update (median) | p10 to p90 | model path / this |",
        "|---|---:|---:|---:|",
    ]
    for name, values in times.items():
        qs = statistics.quantiles(values, n=10)
        med = statistics.median(values)
        lines.append(f"| {name} | {med:.3f} | {qs[0]:.3f} to {qs[-1]:.3f} | {model / med:.1f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The update path in-process (see docstring).")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="20 rounds (tests/test_bench.py)")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    rounds = 20 if args.quick else args.rounds
    result = run(rounds, warmup=5)
    name = "update_path_quick" if args.quick else "update_path"
    command = "python bench/update_path.py" + (" --quick" if args.quick else "")
    publish(name, command, table(result, rounds), docs=not (args.no_docs or args.quick))
