"""Instruments over real sockets: what a server reports, the audit log, and that with none
installed the hot paths call nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import pytest
from conftest import UNIT, wait_until
from pydantic import BaseModel

import pl3xus_rx.server as server_module
from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import ConnectFailed, Forbidden, Identity, NotFound, SyncServer, bearer_tokens
from pl3xus_rx.commands import Send
from pl3xus_rx.instruments import (
    ACTIVITY_LOGGER,
    AUDIT_LOGGER,
    ActivityLog,
    AuditLog,
    CommandAnswer,
    Instrument,
)

T = 5 * UNIT


class Speed(BaseModel):
    value: float


class Recorder(Instrument):
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [args for called, args in self.calls if called == name]

    def connection_opened(self, *args: Any) -> None:
        self.calls.append(("connection_opened", args))

    def connection_closed(self, *args: Any) -> None:
        self.calls.append(("connection_closed", args))

    def handshake_refused(self, *args: Any) -> None:
        self.calls.append(("handshake_refused", args))

    def frame_received(self, *args: Any) -> None:
        self.calls.append(("frame_received", args))

    def command_answered(self, *args: Any) -> None:
        self.calls.append(("command_answered", args))

    def flushed(self, *args: Any) -> None:
        self.calls.append(("flushed", args))

    def subscription_opened(self, *args: Any) -> None:
        self.calls.append(("subscription_opened", args))

    def subscription_closed(self, *args: Any) -> None:
        self.calls.append(("subscription_closed", args))


class FlushesOnly(Instrument):
    def __init__(self) -> None:
        self.flushes = 0

    def flushed(self, seconds: float, frames: int, nbytes: int) -> None:
        self.flushes += 1


class Broken(Instrument):
    def command_answered(self, answer: CommandAnswer) -> None:
        raise RuntimeError("instrument bug")


def make_server_with(instrument: Instrument) -> SyncServer:
    server = make_server()
    server.instrument(instrument)
    return server


def make_server() -> SyncServer:
    tokens = {"ann-token": Identity.of("ann", "operator")}
    server = SyncServer(authenticate=bearer_tokens(tokens), metrics=False, devtools=False)
    server.sync_component_builder(Speed).with_default_entity_policy().build()
    return server


@pytest.mark.asyncio
async def test_an_instrument_hears_connections_frames_commands_flushes_and_refusals() -> None:
    server = make_server()
    broken, recorder = Broken(), Recorder()
    server.instrument(broken)  # (raises: logged, the others are still told)
    server.instrument(recorder)
    robot = server.world.spawn(Speed(value=1))
    registry = ClientTypeRegistry.builder().register(Speed).build()
    async with server.serve("127.0.0.1", 0) as (host, port):
        url = f"ws://{host}:{port}/"
        with pytest.raises(ConnectFailed):
            async with SyncProvider(url, registry, token="wrong"):
                pass
        async with SyncProvider(url, registry, token="ann-token") as ann:
            speeds = ann.components(Speed)
            speeds.subscribe(lambda _: None)
            await ann.wait_synced(T)
            with pytest.raises(Forbidden):
                await ann.mutate(robot, Speed(value=2), timeout=T)
            with pytest.raises(NotFound):
                await ann.mutate(99_999, Speed(value=2), timeout=T)
            await ann.take_control(robot, timeout=T)
            await ann.mutate(robot, Speed(value=3), timeout=T)
            conn = ann.connection_id
        await wait_until(lambda: recorder.of("connection_closed"), what="the close")

    (refused,) = recorder.of("handshake_refused")
    assert refused[1] == 403 and "token" in refused[2]  # an unknown token
    opened = recorder.of("connection_opened")
    assert [(c, i.name) for c, i in opened] == [(conn, "ann")]
    assert ("Speed", None) in [(t, e) for c, t, e in recorder.of("subscription_opened")]
    assert (conn, "Speed") in recorder.of("subscription_closed")
    assert {k for _, k in recorder.of("frame_received")} >= {3, 7, 9}  # SUBSCRIBE MUTATE CONTROL
    answers = [a for (a,) in recorder.of("command_answered")]
    summary = [(a.kind, a.type_name, a.entity, a.status) for a in answers]
    assert summary == [
        ("MUTATE", "Speed", robot, "forbidden"),
        ("MUTATE", "Speed", 99_999, "not_found"),
        ("CONTROL", None, robot, "ok"),
        ("MUTATE", "Speed", robot, "ok"),
    ]
    assert all(a.identity.name == "ann" and a.connection == conn for a in answers)
    assert all(0 <= a.seconds < T for a in answers)
    flushes = recorder.of("flushed")
    assert flushes and sum(frames for _, frames, _ in flushes) >= 2  # the snapshot, the change
    assert all(nbytes > 0 for _, frames, nbytes in flushes if frames)


@pytest.mark.asyncio
async def test_the_audit_log_writes_one_json_line_per_command(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_server()
    server.instrument(AuditLog())
    robot = server.world.spawn(Speed(value=1))
    registry = ClientTypeRegistry.builder().register(Speed).build()
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", registry, token="ann-token") as ann,
    ):
        await ann.take_control(robot, timeout=T)
        await ann.mutate(robot, Speed(value=4), timeout=T)
        await ann.release_control(robot, timeout=T)
        with pytest.raises(Forbidden):
            await ann.mutate(robot, Speed(value=5), timeout=T)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == AUDIT_LOGGER]
    assert [(x["kind"], x["type"], x["entity"], x["status"]) for x in lines] == [
        ("CONTROL", None, robot, "ok"),
        ("MUTATE", "Speed", robot, "ok"),
        ("CONTROL", None, robot, "ok"),
        ("MUTATE", "Speed", robot, "forbidden"),
    ]
    assert all(x["identity"] == "ann" and not x["anonymous"] for x in lines)
    assert all(isinstance(x["time"], float) and x["seconds"] >= 0 for x in lines)


@pytest.mark.asyncio
async def test_the_activity_log_says_who_came_what_they_did_and_who_left_without_flooding(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_server()
    server.instrument(ActivityLog(address_of=server.address_of, per_second=5))
    robot = server.world.spawn(Speed(value=1))
    registry = ClientTypeRegistry.builder().register(Speed).build()
    caplog.set_level(logging.INFO, logger=ACTIVITY_LOGGER)
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", registry, token="ann-token") as ann,
    ):
        speeds = ann.components(Speed)
        speeds.subscribe(lambda _: None)
        await ann.wait_synced(T)
        await ann.take_control(robot, timeout=T)
        for i in range(30):  # a busy client: at most 5 lines a second from it
            await ann.mutate(robot, Speed(value=i), timeout=T)
        conn = ann.connection_id
    await wait_until(
        lambda: any("left" in r.getMessage() for r in caplog.records), what="the close"
    )
    lines = [r.getMessage() for r in caplog.records if r.name == ACTIVITY_LOGGER]
    who = f"client #{conn} (identity 'ann')"
    assert lines[0].startswith(f"{who} connected from 127.0.0.1:")
    assert f"{who} subscribed to 'Speed'" in lines
    assert any(line.startswith(f"{who}: CONTROL on {robot} -> ok (") for line in lines)
    assert any(line.startswith(f"{who}: MUTATE 'Speed' on {robot} -> ok (") for line in lines)
    assert len(lines) < 20  # 33 things happened; the rest were counted
    assert lines[-1].startswith(f"{who} left") or any("more lines not shown" in x for x in lines)
    assert any("more lines not shown" in line for line in lines)


def test_the_audit_log_cuts_what_a_client_chose_and_can_skip_refusals(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    ann = Identity.of("ann")
    hostile = CommandAnswer(1, ann, "MUTATE", "X" * 500 + "\n", "e" * 500, "not_found", 0.0)
    AuditLog().command_answered(hostile)
    AuditLog(refusals=False).command_answered(hostile)  # (not logged)
    (record,) = [r for r in caplog.records if r.name == AUDIT_LOGGER]
    line = record.getMessage()
    assert "\n" not in line and len(line) < 400
    assert json.loads(line)["type"] == "X" * 60


@pytest.mark.asyncio
async def test_with_no_instrument_the_hot_paths_call_nothing() -> None:
    """Counted with a profiler: no call into the instrument machinery while commands are
    handled and flushes run; the same traffic with one instrument calls it."""
    reporting = {"_subscription_changed", "_refused"}  # (the rest lives in instruments.py)

    async def traffic(server: SyncServer, only: set[str] | None = None) -> int:
        robot = server.world.spawn(Speed(value=0))
        registry = ClientTypeRegistry.builder().register(Speed).build()
        calls = 0

        def profile(frame: Any, event: str, arg: Any) -> None:
            nonlocal calls
            if only is not None:
                if event == "call" and frame.f_code.co_name in only:
                    calls += 1
                return
            if event == "call" and (
                frame.f_code.co_filename == sys.modules[Instrument.__module__].__file__
                or (
                    frame.f_code.co_filename == server_module.__file__
                    and frame.f_code.co_name in reporting
                )
            ):
                calls += 1

        async with (
            server.serve("127.0.0.1", 0) as (host, port),
            SyncProvider(f"ws://{host}:{port}/", registry, token="ann-token") as ann,
        ):
            speeds = ann.components(Speed)
            speeds.subscribe(lambda _: None)
            await ann.wait_synced(T)
            await ann.take_control(robot, timeout=T)
            sys.setprofile(profile)
            try:
                for step in range(20):
                    await ann.mutate(robot, Speed(value=step + 1), timeout=T)
                await asyncio.sleep(0.05)
            finally:
                sys.setprofile(None)
        return calls

    assert await traffic(make_server()) == 0
    watched = make_server()
    watched.instrument(Recorder())
    assert await traffic(watched) > 40  # (the check can fail: with one, they are called)
    # an instrument that listens to flushes only (as /metrics) costs commands nothing
    flushes_only = make_server()
    flushes_only.instrument(FlushesOnly())
    commands_side = {"asked", "answers_in", "answered_send", "frame_received"}
    assert await traffic(flushes_only, only=commands_side) == 0
    assert await traffic(make_server_with(Recorder()), only=commands_side) > 40


def test_commands_that_get_no_reply_are_not_kept_waiting_for_one() -> None:
    """A request id no REPLY can carry is answered with an ERROR: the reporter keeps nothing
    for it (a client sending such frames once filled its table and blinded the audit log);
    what a client chose as an entity is kept small; a closed connection leaves nothing."""
    from pl3xus_rx.instruments import Reporter
    from pl3xus_rx.security import ANONYMOUS
    from pl3xus_rx.sync import MutationContext

    reporter = Reporter()
    reporter.instruments = (AuditLog(),)
    ctx = MutationContext(1, ANONYMOUS)
    for i in range(1000):
        reporter.asked(ctx, [9, 2**64 + i, "take", 0])
    assert reporter._waiting == {}
    reporter.asked(ctx, [7, 5, "Speed", "x" * 1_000_000, {}])
    ((entry,),) = [list(w.values()) for w in reporter._waiting.values()]
    assert len(entry[3]) <= 60
    reporter.connection_closed(1)
    assert reporter._waiting == {} and reporter._count == 0


def test_the_logs_show_an_entity_a_client_sent_once_in_the_wire_s_words(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pl3xus_rx.instruments import Reporter
    from pl3xus_rx.security import ANONYMOUS
    from pl3xus_rx.sync import MutationContext

    caplog.set_level(logging.INFO)
    reporter = Reporter()
    reporter.instruments = (ActivityLog(), AuditLog())
    ctx = MutationContext(1, ANONYMOUS)
    reporter.asked(ctx, [16, 7, "cell"])
    reporter.answers_in([Send(1, [8, 7, "validation_error", "no", {}])])
    activity = [r.getMessage() for r in caplog.records if r.name == ACTIVITY_LOGGER]
    assert len(activity) == 1
    assert activity[0].startswith('client #1: DESPAWN on "cell" -> validation_error (')
    (audit,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == AUDIT_LOGGER]
    assert audit["entity"] == '"cell"'
