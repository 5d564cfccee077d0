"""Handlers that never return are answered `timeout` and cancelled; a handler's task goes
when its client goes; a blocking handler runs off the loop without freezing anyone."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from conftest import wait_until
from pydantic import BaseModel

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import Forbidden, HandlerTimeout, ServerError, SyncServer, SyncSettings

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]


class Wait(BaseModel):
    seconds: float


class Done(BaseModel):
    ok: bool


class Tick(BaseModel):
    n: int


REGISTRY = (
    ClientTypeRegistry.builder()
    .register(Tick)
    .register_request(Wait, Done)
    .register_query(Tick, Done)
    .build()
)


def make_server(timeout: float | None = 0.3, **more: Any) -> tuple[SyncServer, list[str]]:
    server = SyncServer(sync=SyncSettings(handler_timeout=timeout, **more))
    server.sync_component(Tick)
    events: list[str] = []

    async def wait(world: Any, ctx: Any, request: Wait) -> Done:
        try:
            await asyncio.sleep(request.seconds)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        return Done(ok=True)

    async def own_timeout(world: Any, q: Tick) -> Done:
        await asyncio.wait_for(asyncio.sleep(10), 0.01)  # the handler's own TimeoutError
        return Done(ok=False)

    server.request(Wait).register(wait)
    server.query(Tick).register(own_timeout)
    return server, events


async def test_a_handler_past_its_timeout_is_answered_timeout_and_cancelled() -> None:
    server, events = make_server(timeout=0.3)
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as sync,
    ):
        with pytest.raises(HandlerTimeout, match=r"did not finish within 0\.3 s"):
            await sync.request(Wait(seconds=60))
        assert events == ["cancelled"]
        assert await sync.request(Wait(seconds=0.01)) == Done(ok=True)  # others still work
        # a handler's own TimeoutError is a failure, not our timeout
        answer = sync.query(Tick, Tick(n=1))
        await wait_until(lambda: answer.get().status.value == "error")
        assert isinstance(answer.get().error, ServerError)


async def test_a_handler_task_goes_when_its_client_goes() -> None:
    server, events = make_server(timeout=None)  # no limit: only the disconnect ends it
    async with server.serve("127.0.0.1", 0) as (host, port):
        sync = SyncProvider(f"ws://{host}:{port}/", REGISTRY)
        await sync.__aenter__()
        pending = asyncio.ensure_future(sync.request(Wait(seconds=3600)))
        await wait_until(lambda: bool(server._handlers.tasks), what="the handler to start")
        await sync.close()
        with pytest.raises(Exception):  # noqa: B017  (ConnectionLost: the link went)
            await pending
        await wait_until(lambda: events == ["cancelled"], what="the handler to be cancelled")
        await wait_until(lambda: not server._handlers.tasks, what="no task left")


async def test_a_blocking_handler_off_the_loop_freezes_nobody() -> None:
    server = SyncServer(sync=SyncSettings(max_update_rate_hz=100))
    server.sync_component(Tick)
    entered = threading.Event()

    async def slow(world: Any, ctx: Any, request: Wait) -> Done:
        def blocking() -> None:  # e.g. a PLC driver call
            entered.set()
            time.sleep(request.seconds)

        await asyncio.to_thread(blocking)  # the documented way
        return Done(ok=True)

    server.request(Wait).register(slow)
    e = server.world.spawn(Tick(n=0))
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as caller,
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as watcher,
    ):
        ticks = watcher.components(Tick)
        ticks.subscribe(lambda _: None)
        await watcher.wait_synced(10)
        call = asyncio.ensure_future(caller.request(Wait(seconds=1.0)))
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
        for n in range(1, 6):  # while the handler blocks its thread, updates flow
            server.world.insert(e, Tick(n=n))
            await wait_until(lambda n=n: ticks.get()[e].n == n, what=f"tick {n}")
        assert not call.done()
        assert await call == Done(ok=True)


async def test_async_handlers_in_flight_per_connection_are_bounded() -> None:
    server, _ = make_server(timeout=None, max_pending_commands=3)
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as client,
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as other,
    ):
        waiting = [
            asyncio.ensure_future(client.request(Wait(seconds=30), timeout=60)) for _ in range(3)
        ]
        await wait_until(lambda: server.commands.in_flight(client.connection_id) == 3)
        with pytest.raises(Forbidden, match="max_pending_commands=3"):
            await client.request(Wait(seconds=0.0))
        # another connection is not held back by this one's
        assert await other.request(Wait(seconds=0.0)) == Done(ok=True)
        for task in waiting:
            task.cancel()
    await wait_until(lambda: not server.commands.in_flight(client.connection_id))


def sleepy_wait(world: Any, ctx: Any, request: Wait) -> Done:
    time.sleep(request.seconds)  # the mistake under test: blocking the event loop
    return Done(ok=True)


async def test_a_synchronous_handler_that_blocks_the_loop_is_named_in_the_log_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = SyncServer(sync=SyncSettings(slow_handler_seconds=0.05))
    server.request(Wait).register(sleepy_wait)
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY, command_timeout=10) as sync,
    ):
        with caplog.at_level("WARNING", logger="pl3xus_rx.commands"):
            assert await sync.request(Wait(seconds=0)) == Done(ok=True)  # fast: quiet
            assert not [r for r in caplog.records if "held the event loop" in r.message]
            await sync.request(Wait(seconds=0.08))
            await sync.request(Wait(seconds=0.06))  # counted, not logged again
        lines = [r.getMessage() for r in caplog.records if "held the event loop" in r.message]
        assert len(lines) == 1, lines
        assert "request Wait" in lines[0] and "sleepy_wait" in lines[0]
        assert "asyncio.to_thread" in lines[0]
        assert server.commands.slow.count == {"request Wait": 2}
        assert server.metrics is not None
        text = server.metrics.render().decode()
        assert 'pl3xus_slow_handlers_total{command="request Wait"} 2.0' in text
