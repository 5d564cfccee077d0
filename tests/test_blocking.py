"""client_sync.connect: the provider on a background loop thread, used from plain code."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

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


def test_close_leaves_nothing_running_on_the_loop_thread() -> None:
    _srv, url, stop, thread = serve_in_thread()
    registry = ClientTypeRegistry.builder().register(Gauge).build()
    try:
        sync = connect(url, registry)
        loop = sync._loop  # internal: what close() must leave behind
        used_executor = sync.call(lambda: loop.run_in_executor(None, time.sleep, 0))
        assert used_executor is not None
        sync.close()
        assert not sync._thread.is_alive() and loop.is_closed()
        assert loop._default_executor is None  # type: ignore[attr-defined]  # shut down
        sync.close()  # twice is fine
    finally:
        stop.set()
        thread.join(10)


@pytest.mark.slow
def test_the_blocking_docs_example_never_races_interpreter_shutdown(tmp_path: Path) -> None:
    import re
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    text = (Path(__file__).resolve().parents[1] / "docs" / "client.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "connect(" in b]
    script = tmp_path / "blocking_example.py"
    script.write_text(code)

    def run(_: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=60
        )

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run, range(30)))
    failures = [r.stderr[-500:] for r in results if r.returncode != 0 or r.stderr.strip()]
    assert failures == []
    assert all("gauges:" in r.stdout for r in results)
