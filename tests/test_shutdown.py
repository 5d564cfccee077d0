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


@pytest.mark.asyncio
async def test_a_mutation_applied_just_before_shutdown_is_answered() -> None:
    from pydantic import BaseModel

    from client_sync import ClientTypeRegistry, SyncProvider
    from pl3xus_rx import Authorized, SyncServer, SyncSettings

    class Speed(BaseModel):
        value: float

    server = SyncServer(sync=SyncSettings(max_update_rate_hz=0.2))  # a flush per 5 s at most
    server.sync_component_builder(Speed).with_entity_policy(lambda w, c, e: Authorized()).build()
    robot = server.world.spawn(Speed(value=0))
    changed = asyncio.Event()
    server.world.changes(Speed).subscribe(lambda change: changed.set())
    address: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()

    async def serve() -> None:
        async with server.serve("127.0.0.1", 0) as bound:
            address.set_result(bound)
            await changed.wait()  # shut down right after the mutation is applied

    task = asyncio.create_task(serve())
    host, port = await asyncio.wait_for(address, 10)
    registry = ClientTypeRegistry.builder().register(Speed).build()
    async with SyncProvider(f"ws://{host}:{port}/", registry) as sync:
        speeds = sync.components(Speed)
        speeds.subscribe(lambda _: None)
        await sync.wait_synced(10)  # a flush just happened: the next is 5 s away
        await asyncio.wait_for(sync.mutate(robot, Speed(value=3)), 4)  # answered, not lost
        assert speeds.get()[robot] == Speed(value=3)  # and the change came first
    await asyncio.wait_for(task, 10)
