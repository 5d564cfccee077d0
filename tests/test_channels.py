"""Bounded channels: slow consumers never block the sender or others, never grow memory."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest
from conftest import UNIT, Ping, Recorder, make_network, url_of, wait_until
from pydantic import BaseModel

from pl3xus_rx import ChannelFull, Disconnected, Network, NetworkSettings
from pl3xus_rx import Error as ErrorEvent
from pl3xus_rx.testing import MemoryTransport

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]


class Blob(BaseModel):
    data: str


async def stalled_client(host: str, port: int) -> socket.socket:
    """A TCP peer with a tiny receive buffer that completes the handshake, then never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, port))
    await loop.sock_sendall(
        sock,
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await asyncio.wait_for(loop.sock_recv(sock, 1), 5 * UNIT)
    assert b" 101 " in head
    return sock


async def test_slow_consumer_is_closed_1013_and_others_get_everything() -> None:
    settings = NetworkSettings(channel_capacity=20, close_timeout=0.3, ping_interval=None)
    net = make_network(settings)
    net.register_message(Blob)
    await net.listen("127.0.0.1", 0)
    events = Recorder()
    net.events.subscribe(events)

    fast = make_network()
    fast.register_message(Blob)
    fast_got = Recorder()
    fast.messages(Blob).subscribe(fast_got)
    await fast.connect(url_of(net))
    sock = await stalled_client(*net.addresses[0])
    await wait_until(lambda: len(net.connections) == 2)
    slow_id = max(net.connections)

    blob = Blob(data="x" * 65536)
    sent = 0
    max_depth = 0
    for _ in range(2000):  # bounded; the slow one is cut off long before
        net.broadcast(blob)
        sent += 1
        if net.has_connection(slow_id):
            max_depth = max(max_depth, net.connection_statistics(slow_id).queue_depth)
        await asyncio.sleep(0)  # a producer that yields now and then, like a flush loop
        if events.of(ErrorEvent):
            break
    assert max_depth <= 20  # memory stays bounded
    err = events.of(ErrorEvent)[0]
    assert err.id == slow_id and isinstance(err.error, ChannelFull)
    assert "channel_capacity=20" in str(err.error)
    assert net.statistics().channel_full_closes == 1
    await wait_until(lambda: events.of(Disconnected), units=5, what="slow client closed")
    gone = events.of(Disconnected)[0]
    assert gone.id == slow_id
    # The server sent 1013 with a reason; the peer never read it, so the close may be recorded
    # as ours (1013) or, after close_timeout, as an abort (1006).
    assert gone.code in (1013, 1006)
    # The fast client got every frame, in order.
    await wait_until(lambda: len(fast_got.items) == sent, units=10)
    sock.close()
    await fast.close()
    await net.close()


async def memory_pair(settings: NetworkSettings) -> tuple[Network, Network, Any]:
    hub = MemoryTransport(high_water=4)
    server = make_network(settings, transport=hub)
    await server.listen("srv", 1)
    client = make_network(transport=hub)
    await client.connect("memory://srv:1")
    await wait_until(lambda: server.connections)
    return server, client, hub.links[-1]


async def test_drop_policy_counts_and_keeps_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = NetworkSettings(
        channel_capacity=10, channel_full_policy="drop", channel_warning_threshold=50
    )
    server, client, _ = await memory_pair(settings)
    got = Recorder()
    client.messages(Ping).subscribe(got)
    events = Recorder()
    server.events.subscribe(events)
    (cid,) = server.connections
    client_link = client._connections[client.connections[0]].link
    client_link.pause_reading()  # the client stops reading
    with caplog.at_level(logging.WARNING, logger="pl3xus_rx.net"):
        results = [server.send(cid, Ping(n=n)) for n in range(40)]
    # 4 beyond the high water mark, then 10 in the channel, the rest dropped
    assert results.count(True) == 15 and results.count(False) == 25
    stats = server.connection_statistics(cid)
    assert stats.queue_depth == 10 and stats.dropped == 25
    assert server.statistics().channel_dropped == 25
    warnings = [r.getMessage() for r in caplog.records if "Channel depth warning" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited, once per warning_interval
    assert f"connection {cid} has 5 of 10" in warnings[0]
    await wait_until(lambda: len(events.of(ErrorEvent)) == 25)
    assert all(isinstance(e.error, ChannelFull) for e in events.of(ErrorEvent))
    client_link.resume_reading()
    await wait_until(lambda: len(got.items) == 15)
    assert [d.message.n for d in got.items] == list(range(15))  # the kept ones, in order
    assert server.has_connection(cid)
    server.send(cid, Ping(n=99))
    await wait_until(lambda: got.items[-1].message.n == 99)
    await client.close()
    await server.close()


async def test_close_policy_over_memory_transport() -> None:
    server, client, _ = await memory_pair(NetworkSettings(channel_capacity=5, close_timeout=0.2))
    events = Recorder()
    client.events.subscribe(events)
    (cid,) = server.connections
    client._connections[client.connections[0]].link.pause_reading()
    for n in range(30):
        server.send(cid, Ping(n=n))
    assert server.statistics().channel_full_closes == 1
    await wait_until(lambda: not server.connections, what="server to drop the slow client")
    await client.close()
    await server.close()


async def test_a_channel_is_bounded_in_bytes_as_well_as_frames() -> None:
    settings = NetworkSettings(channel_capacity_bytes=64 * 1024, close_timeout=0.2)
    server, client, _ = await memory_pair(settings)
    server.register_message(Blob)
    client.register_message(Blob)
    events = Recorder()
    server.events.subscribe(events)
    (cid,) = server.connections
    client._connections[client.connections[0]].link.pause_reading()
    conn = server._connections[cid]
    for _ in range(20):  # far fewer frames than channel_capacity (500), each 10 kB
        server.send(cid, Blob(data="x" * 10_000))
        assert conn.queued_bytes <= 64 * 1024
    assert server.statistics().channel_full_closes == 1
    await wait_until(lambda: events.of(ErrorEvent), what="the channel-full error event")
    err = events.of(ErrorEvent)[0]
    assert "channel_capacity_bytes=65536" in str(err.error)
    await wait_until(lambda: not server.connections, what="server to drop the slow client")
    await client.close()
    await server.close()
