"""Graceful shutdown: refuse new clients, drain channels, close 1001, health says 503."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import UNIT, Ping, Recorder, http_get, make_network, url_of, wait_until
from test_channels import Blob

from pl3xus_rx import ConnectFailed, Disconnected, NetworkSettings, NetworkStateError
from pl3xus_rx.net import NetworkState

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]


async def test_close_drains_then_closes_1001_and_health_turns_503() -> None:
    server = make_network(NetworkSettings(shutdown_timeout=5, channel_capacity=5000))
    server.register_message(Blob)
    await server.listen("127.0.0.1", 0)
    port = server.addresses[0][1]
    clients = [make_network() for _ in range(3)]
    recs = [Recorder() for _ in clients]
    events = [Recorder() for _ in clients]
    for c, r, e in zip(clients, recs, events, strict=True):
        c.register_message(Blob)
        c.messages(Blob).subscribe(r)
        c.events.subscribe(e)
        await c.connect(url_of(server))
    await wait_until(lambda: len(server.connections) == 3)
    # 8 MB per client: past the kernel's socket buffers, so frames wait in the channels.
    for n in range(2000):
        server.broadcast(Blob(data=str(n).ljust(4096)))
    assert max(server.connection_statistics(c).queue_depth for c in server.connections) > 100

    closing = asyncio.create_task(server.close())
    await asyncio.sleep(0)
    assert server.state is NetworkState.CLOSING
    status, _, body = await http_get(port, "/healthz")
    assert status == 503 and json.loads(body)["status"] == "shutting_down"
    late = make_network()
    with pytest.raises(ConnectFailed, match=r"503.*shutting down"):
        await late.connect(url_of(server))
    await asyncio.wait_for(closing, 10 * UNIT)
    assert server.state is NetworkState.CLOSED
    for r, e in zip(recs, events, strict=True):
        await wait_until(lambda e=e: e.of(Disconnected))
        assert [int(d.message.data) for d in r.items] == list(range(2000))  # all drained
        assert e.of(Disconnected)[0].code == 1001
    with pytest.raises(NetworkStateError, match="closed"):
        await server.listen("127.0.0.1", 0)
    # The port is free again.
    again = make_network()
    await again.listen("127.0.0.1", port)
    for c in [*clients, again]:
        await c.close()


async def test_close_is_idempotent_and_bounded_with_a_stuck_client() -> None:
    server = make_network(NetworkSettings(shutdown_timeout=0.2, close_timeout=0.2))
    await server.listen("127.0.0.1", 0)
    from test_channels import stalled_client

    sock = await stalled_client(*server.addresses[0])
    await wait_until(lambda: server.connections)
    for n in range(300):
        server.broadcast(Ping(n=n))
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.wait_for(asyncio.gather(server.close(), server.close()), 10 * UNIT)
    assert loop.time() - start < 5 * UNIT
    assert not server.connections
    sock.close()


async def test_async_context_manager_closes() -> None:
    async with make_network() as net:
        await net.listen("127.0.0.1", 0)
        assert net.state is NetworkState.RUNNING
    assert net.state is NetworkState.CLOSED
