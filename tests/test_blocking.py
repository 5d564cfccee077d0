"""client_sync.connect: the provider on a background loop thread, used from plain code."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from pydantic import BaseModel

from client_sync import ClientTypeRegistry, connect
from pl3xus_rx import ConnectFailed, SyncServer


class Gauge(BaseModel):
    value: float


def serve_in_thread() -> tuple[SyncServer, str, threading.Event, threading.Thread]:
    srv = SyncServer()
    srv.sync_component(Gauge)
    ready, stop = threading.Event(), threading.Event()
    holder: dict[str, object] = {}

    def run() -> None:
        async def main() -> None:
            async with srv.serve("127.0.0.1", 0) as (host, port):
                holder["url"] = f"ws://{host}:{port}/"
                holder["loop"] = asyncio.get_running_loop()
                ready.set()
                await asyncio.get_running_loop().run_in_executor(None, stop.wait)

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    srv.loop = holder["loop"]  # type: ignore[attr-defined]
    return srv, str(holder["url"]), stop, thread


def test_blocking_client_reads_and_subscribes_from_its_thread() -> None:
    srv, url, stop, thread = serve_in_thread()
    loop = srv.loop  # type: ignore[attr-defined]
    entity = asyncio.run_coroutine_threadsafe(_spawn(srv), loop).result(5)
    registry = ClientTypeRegistry.builder().register(Gauge).build()
    try:
        with connect(url, registry) as sync:
            gauges = sync.components(Gauge)
            seen: list[object] = []
            sub = gauges.subscribe(seen.append)  # from this (non-loop) thread
            deadline = time.monotonic() + 5
            while gauges.get().get(entity) != Gauge(value=1) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert gauges.get()[entity] == Gauge(value=1)
            loop.call_soon_threadsafe(srv.world.insert, entity, Gauge(value=2))
            while gauges.get()[entity] != Gauge(value=2) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert gauges.get()[entity] == Gauge(value=2)
            sub.dispose()
            assert len(seen) >= 2
    finally:
        stop.set()
        thread.join(10)


async def _spawn(srv: SyncServer) -> int:
    return srv.world.spawn(Gauge(value=1))


def test_blocking_connect_failure_raises_and_leaves_no_thread() -> None:
    before = threading.active_count()
    registry = ClientTypeRegistry.builder().register(Gauge).build()
    with pytest.raises(ConnectFailed):
        connect("ws://127.0.0.1:9/", registry)
    assert threading.active_count() == before
