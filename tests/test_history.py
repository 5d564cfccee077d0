"""History on the server (``.history(...)``, ``pl3xus.history``, ``sync.history``): the
store without sockets (bounds in time and bytes, parts, refusals, visibility), then end to
end on 127.0.0.1."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import pytest
from conftest import UNIT, wait_until
from pydantic import BaseModel

from client_sync import ClientTypeRegistry, SyncProvider, connect
from pl3xus_rx import InvalidValue, NotFound, SyncServer, SyncSettings
from pl3xus_rx.protocol import HistoryPart, HistoryQuery
from pl3xus_rx.security import ANONYMOUS, Identity, bearer_tokens
from pl3xus_rx.sync import _history
from pl3xus_rx.world import EntityId, World


class Position(BaseModel):
    x: float
    y: float
    label: str = ""


class Reading(BaseModel):
    value: float | None = None
    ok: bool = True


class Status(BaseModel):
    text: str
    code: int = 0


class Plain(BaseModel):
    n: int = 0


def make_server(budget: int = 64 << 20, *, rule: Any = None, **kw: Any) -> SyncServer:
    srv = SyncServer(sync=SyncSettings(max_update_rate_hz=200, history_bytes=budget), **kw)
    builder = srv.sync_component_builder(Position).history(seconds=10, fields=["x", "y"])
    if rule is not None:
        builder = builder.visible_to(rule)
    builder.build()
    srv.sync_component_builder(Reading).history(seconds=100, fields=["value"]).build()
    srv.sync_component_builder(Status).history(seconds=100).build()
    srv.sync_component(Plain)
    return srv


def flush(srv: SyncServer, as_of: float) -> None:
    srv.engine.flush_into(time.monotonic() + as_of, lambda *a: None, (as_of, 0.0))


def ask(srv: SyncServer, who: Identity = ANONYMOUS, **params: Any) -> HistoryPart:
    return srv.history.answer(HistoryQuery(**params), who)


def every_part(srv: SyncServer, who: Identity = ANONYMOUS, **params: Any) -> list[HistoryPart]:
    parts = [ask(srv, who, **params)]
    while parts[-1].cursor is not None:
        assert len(parts) < 1000
        parts.append(ask(srv, who, **params, cursor=parts[-1].cursor))
    return parts


# ---------------------------------------------------------------------- the store


def test_builder_checks_its_arguments() -> None:
    srv = SyncServer()
    with pytest.raises(ValueError, match="not numeric"):
        srv.sync_component_builder(Position).history(fields=["label"])
    with pytest.raises(ValueError, match="no field 'z'"):
        srv.sync_component_builder(Position).history(fields=["z"])
    for bad in (0, -1, math.inf, math.nan, 1e12):
        with pytest.raises(ValueError, match="seconds"):
            srv.sync_component_builder(Position).history(seconds=bad)


def test_time_bound_keeps_the_last_seconds_and_counts_what_went() -> None:
    srv = make_server()
    e = srv.world.spawn(Position(x=0, y=0))
    for i in range(30):
        srv.world.insert(e, Position(x=i, y=-i))
        flush(srv, 1000.0 + i)
    part = ask(srv, type="Position", entity=e)
    (row,) = part.series
    assert row[0] == e and part.fields == ["x", "y"]
    assert row[1] == [1000.0 + i for i in range(19, 30)]  # (t >= 1029 - 10)
    assert row[2] == [float(i) for i in range(19, 30)] and row[3][-1] == -29.0
    assert part.until == 1029.0 and part.since == 1019.0 and not part.cut_by_budget
    stats = srv.history.statistics()
    assert stats.points == 11 and stats.dropped_for_time == 19 and stats.dropped_for_budget == 0
    assert stats.bytes == 11 * 24  # time + two fields


def test_budget_drops_the_oldest_first_across_types_and_says_so() -> None:
    # 24 bytes a Position point, 16 a Reading point: room for about 10 flushes of both
    srv = make_server(budget=400)
    p = srv.world.spawn(Position(x=0, y=0))
    r = srv.world.spawn(Reading(value=0))
    for i in range(40):
        srv.world.insert(p, Position(x=i, y=0))
        srv.world.insert(r, Reading(value=i))
        flush(srv, 2000.0 + i * 0.1)
    stats = srv.history.statistics()
    assert stats.bytes <= 400 and stats.points == 20
    assert stats.dropped_for_budget == 60 and stats.dropped_for_time == 0
    part = ask(srv, type="Reading", entity=r, field="value", seconds=3)
    (row,) = part.series
    assert row[2] == [float(i) for i in range(30, 40)]  # the most recent ones, oldest first
    assert part.cut_by_budget and part.kept_since is not None
    assert part.kept_since > part.since  # the reply says what the budget left
    assert 2002.9 < part.kept_since <= 2003.0  # (everything since is kept)
    # asked for less than what is kept: not cut
    assert not ask(srv, type="Reading", entity=r, seconds=0.5).cut_by_budget


def test_memory_is_given_back_in_batches() -> None:
    srv = make_server()
    for _ in range(300):
        srv.world.spawn(Reading(value=1))
    for i in range(400):
        for e, _v in list(srv.world.query(Reading)):
            srv.world.insert(e, Reading(value=i))
        flush(srv, 3000.0 + i)
    kept = srv.history._kept[srv.registry.get(Reading).type_id]
    held = sum(len(s.t) for s in kept.series.values())
    assert kept.points == 300 * 101
    assert held <= kept.points * 1.2  # (dropped points are cut out in batches)


def test_whole_values_and_their_fields() -> None:
    srv = make_server()
    e = srv.world.spawn(Status(text="a"), Plain())  # (Plain keeps it visible)
    flush(srv, 10.0)
    srv.world.insert(e, Status(text="b", code=2))
    flush(srv, 11.0)
    srv.world.remove(e, Status)
    flush(srv, 12.0)
    part = ask(srv, type="Status", entity=e)
    assert part.whole and part.fields == ["text", "code"]
    assert part.series == [[e, [10.0, 11.0], [["a", 0], ["b", 2]]]]
    part = ask(srv, type="Status", entity=e, field="code")
    assert not part.whole and part.series == [[e, [10.0, 11.0], [0, 2]]]


def test_none_in_a_numeric_field_is_nan() -> None:
    srv = make_server()
    e = srv.world.spawn(Reading(value=None))
    flush(srv, 1.0)
    (row,) = ask(srv, type="Reading", entity=e).series
    assert math.isnan(row[2][0])


def test_answers_come_in_bounded_parts_that_add_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_history, "MAX_PART_POINTS", 7)
    monkeypatch.setattr(_history, "MAX_PART_SERIES", 3)
    srv = make_server()
    entities = [srv.world.spawn(Reading(value=0)) for _ in range(5)]
    for i in range(6):
        for e in entities:
            srv.world.insert(e, Reading(value=i * 10 + e))
        flush(srv, 100.0 + i)
    parts = every_part(srv, type="Reading", field="value")
    assert len(parts) > 4
    assert all(sum(len(r[1]) for r in p.series) <= 7 for p in parts)
    got: dict[int, list[float]] = {}
    for p in parts:
        assert p.until == parts[0].until and p.since == parts[0].since
        for row in p.series:
            got.setdefault(row[0], []).extend(row[2])
    assert got == {e: [i * 10.0 + e for i in range(6)] for e in entities}
    # one entity, in parts too
    parts = every_part(srv, type="Reading", entity=entities[0])
    assert [v for p in parts for r in p.series for v in r[1]] == [100.0 + i for i in range(6)]


def test_points_after_the_first_part_wait_for_the_live_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_history, "MAX_PART_POINTS", 2)
    srv = make_server()
    e = srv.world.spawn(Reading(value=0))
    for i in range(4):
        srv.world.insert(e, Reading(value=i))
        flush(srv, 50.0 + i)
    first = ask(srv, type="Reading", entity=e)
    srv.world.insert(e, Reading(value=99))
    flush(srv, 60.0)  # after the first part: not in the answer (the live values bring it)
    rest = every_part(srv, type="Reading", entity=e, cursor=first.cursor)
    values = first.series[0][2] + [v for p in rest for r in p.series for v in r[2]]
    assert values == [0.0, 1.0, 2.0, 3.0]


def test_bad_questions_get_named_answers_and_are_counted() -> None:
    srv = make_server()
    e = srv.world.spawn(Position(x=1, y=1))
    flush(srv, 1.0)
    with pytest.raises(NotFound, match='no component type "Nope"'):
        ask(srv, type="Nope")
    with pytest.raises(NotFound, match="Plain keeps no history"):
        ask(srv, type="Plain")
    for bad in (-1.0, 0.0, math.inf, math.nan, 1e12):
        with pytest.raises(InvalidValue, match="seconds must be > 0") as info:
            ask(srv, type="Position", entity=e, seconds=bad)
        assert info.value.errors[0]["loc"] == "field" or "seconds" in str(info.value.errors)
    with pytest.raises(InvalidValue, match='keeps no history of field "label"'):
        ask(srv, type="Position", entity=e, field="label")
    with pytest.raises(InvalidValue, match='has no field "nope"'):
        ask(srv, type="Status", field="nope")
    for cursor in ([1.0, 2.0, 3.5, 4.0], [1.0, 2.0, 3.0], [math.nan, 0, 0, 0]):
        with pytest.raises(InvalidValue, match="cursor"):
            ask(srv, type="Position", cursor=cursor)
    with pytest.raises(NotFound, match="no entity 999 with Position"):
        ask(srv, type="Position", entity=999)
    stats = srv.history.statistics()
    assert stats.refused == 2 + 5 + 2 + 3 + 1 and stats.queries == 0


def test_a_forged_cursor_cannot_widen_a_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_history, "MAX_PART_POINTS", 50)
    srv = make_server()
    entities = [srv.world.spawn(Status(text="x" * 100)) for _ in range(20)]
    for i in range(10):
        for e in entities:
            srv.world.insert(e, Status(text="x" * 100, code=i))
        flush(srv, 10.0 + i)
    part = ask(srv, type="Status", cursor=[-1e300, 1e300, -1, -1e300])
    assert sum(len(r[1]) for r in part.series) == 50 and part.cursor is not None
    # whole values: the byte cap holds too
    monkeypatch.setattr(_history, "MAX_PART_BYTES", 1000)
    part = ask(srv, type="Status")
    assert sum(len(r[1]) for r in part.series) <= 10


def rule_by_owner(world: World, identity: Identity, entity: EntityId) -> bool:
    return identity.has_role("admin") or identity.claims.get("owns") == entity


def test_only_what_the_identity_sees_now() -> None:
    srv = make_server(rule=rule_by_owner)
    a = srv.world.spawn(Position(x=1, y=1))
    b = srv.world.spawn(Position(x=2, y=2))
    flush(srv, 5.0)
    ann = Identity.of("ann", owns=a)
    admin = Identity.of("root", "admin")
    assert [r[0] for r in ask(srv, ann, type="Position").series] == [a]
    assert [r[0] for r in ask(srv, admin, type="Position").series] == [a, b]
    with pytest.raises(NotFound) as hidden:
        ask(srv, ann, type="Position", entity=b)
    with pytest.raises(NotFound) as missing:
        ask(srv, ann, type="Position", entity=12345)
    assert str(hidden.value).replace(str(b), "N") == str(missing.value).replace("12345", "N")
    # despawned: its past stays until it ages out, but nobody sees it now
    srv.world.despawn(a)
    flush(srv, 6.0)
    assert ask(srv, admin, type="Position").series == [[b, [5.0], [2.0], [2.0]]]
    with pytest.raises(NotFound):
        ask(srv, admin, type="Position", entity=a)
    assert srv.history.statistics().points == 2


def test_a_gateway_keeps_nothing() -> None:
    srv = make_server()
    srv.forward_commands(lambda c, f: None)
    e = srv.world.spawn(Reading(value=1))
    flush(srv, 1.0)
    assert srv.history.statistics().points == 0 and e is not None


def test_store_cost_per_point_is_small() -> None:
    srv = make_server()
    entities = [srv.world.spawn(Reading(value=0)) for _ in range(10_000)]
    best = math.inf
    for i in range(5):
        for e in entities:
            srv.world.insert(e, Reading(value=i))
        reg = srv.registry.get(Reading)
        pending = dict.fromkeys(entities, 2)
        started = time.perf_counter()
        srv.history.changes(reg, pending)  # (what the engine hands it)
        srv.history.flushed(100.0 + i)
        best = min(best, time.perf_counter() - started)
    assert best < 0.05 * UNIT  # 10,000 points in well under 50 ms (about 2 ms measured)


# ---------------------------------------------------------------------- end to end

REGISTRY = (
    ClientTypeRegistry.builder()
    .register(Position)
    .register(Reading)
    .register(Status)
    .register(Plain)
    .build()
)


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_chart_gets_its_past_then_live_values() -> None:
    srv = make_server()
    e = srv.world.spawn(Reading(value=0))
    async with srv.serve("127.0.0.1", 0) as (host, port):
        for i in range(1, 6):
            srv.world.insert(e, Reading(value=i))
            await asyncio.sleep(0.01)
        async with SyncProvider(f"ws://{host}:{port}/", REGISTRY) as sync:
            assert sync.history_kept["Reading"] == {"seconds": 100.0, "fields": ["value"]}
            assert sync.history_kept["Status"] == {"seconds": 100.0, "fields": None}
            assert "Plain" not in sync.history_kept
            trend = sync.history(Reading, e, "value", seconds=60)
            seen: list[Any] = []
            trend.subscribe(seen.append)
            await wait_until(lambda: len(trend.get()) >= 5, 5, "the past")
            values = [v for _, v in trend.get()]
            # (the snapshot's value may follow the past again, at the snapshot's time)
            values = [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]
            assert values[-5:] == [1.0, 2.0, 3.0, 4.0, 5.0]
            assert seen[0] == ()  # (empty, then the past at once)
            times = [t for t, _ in trend.get()]
            assert times == sorted(times) and abs(times[-1] - time.time()) < 5
            srv.world.insert(e, Reading(value=42))
            await wait_until(lambda: trend.get()[-1][1] == 42.0, 5, "a live value")
            assert trend.get()[-1][0] >= times[-1]
            assert [v for _, v in trend.get()].count(5.0) <= 2
            # whole values, as models
            s = srv.world.spawn(Status(text="on"))
            await wait_until(lambda: srv.history.statistics().series >= 2, 5)
            past = await sync.fetch_history(Status, s)
            assert [v for _, v in past] == [Status(text="on")]


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_bad_questions_over_the_wire() -> None:
    srv = make_server()
    e = srv.world.spawn(Reading(value=0))
    async with (
        srv.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as sync,
    ):
        with pytest.raises(NotFound, match="Plain keeps no history"):
            await sync.fetch_history(Plain, e)
        with pytest.raises(InvalidValue, match="seconds"):
            await sync.fetch_history(Reading, e, seconds=-5)
        with pytest.raises(InvalidValue, match='field "ok"'):
            await sync.fetch_history(Reading, e, "ok")
        with pytest.raises(NotFound, match="no entity 777"):
            await sync.fetch_history(Reading, 777)
        too_long = {"type": "Reading", "cursor": [1.0] * 50}
        with pytest.raises(InvalidValue, match="cursor"):
            await sync._command(lambda: sync._session.query("pl3xus.history", too_long), None)
        assert [v for _, v in await sync.fetch_history(Reading, e)] == [0.0]  # (still served)


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_visibility_over_the_wire() -> None:
    tokens = {"a": Identity.of("ann", owns=1), "b": Identity.of("bob", owns=2)}
    srv = make_server(rule=rule_by_owner, authenticate=bearer_tokens(tokens))
    a = srv.world.spawn(Position(x=1, y=1))
    b = srv.world.spawn(Position(x=2, y=2))
    assert (a, b) == (1, 2)
    async with srv.serve("127.0.0.1", 0) as (host, port):
        await asyncio.sleep(0.05)
        async with SyncProvider(f"ws://{host}:{port}/", REGISTRY, token="a") as ann:
            assert [v for _, v in await ann.fetch_history(Position, a, "x")] == [1.0]
            with pytest.raises(NotFound):
                await ann.fetch_history(Position, b, "x")


def test_the_blocking_provider_fills_a_trend_from_its_thread() -> None:
    srv = make_server()
    ready, stop = threading.Event(), threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        e = srv.world.spawn(Reading(value=1))
        async with srv.serve("127.0.0.1", 0) as (host, port):
            await asyncio.sleep(0.02)
            srv.world.insert(e, Reading(value=2))
            holder.update(url=f"ws://{host}:{port}/", e=e, loop=asyncio.get_running_loop())
            ready.set()
            await asyncio.get_running_loop().run_in_executor(None, stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    try:
        assert ready.wait(10 * UNIT)
        with connect(holder["url"], REGISTRY) as sync:
            e = holder["e"]
            trend = sync.history(Reading, e, "value")
            sub = trend.subscribe(lambda _: None)  # (from this thread, not the loop's)
            deadline = time.monotonic() + 5 * UNIT
            while len(trend.get()) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert [v for _, v in trend.get()][:2] == [1.0, 2.0]
            assert [v for _, v in sync.fetch_history(Reading, e, "value")] == [1.0, 2.0]
            sub.dispose()
    finally:
        stop.set()
        thread.join(10)
