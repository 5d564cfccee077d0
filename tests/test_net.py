"""Network over real sockets on 127.0.0.1: messaging, events, welcome, health, handshakes."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import msgpack
import pytest
from conftest import UNIT, Chat, Ping, Recorder, http_get, make_network, url_of, wait_until
from pydantic import BaseModel
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from pl3xus_rx import (
    BindError,
    Connected,
    ConnectFailed,
    ConnectionNotFound,
    Disconnected,
    Network,
    NetworkSettings,
    NotRegistered,
    SchemaMismatch,
)
from pl3xus_rx import Error as ErrorEvent
from pl3xus_rx.protocol import (
    JSON_SUBPROTOCOL,
    JSON_SUBPROTOCOL_V2,
    MSGPACK_SUBPROTOCOL,
    schema_hash,
)

pytestmark = pytest.mark.asyncio


async def test_client_and_server_exchange_typed_messages(server: Network) -> None:
    on_server, on_client = Recorder(), Recorder()
    server.messages(Chat).subscribe(on_server)
    client = make_network()
    client.messages(Chat).subscribe(on_client)
    cid = await client.connect(url_of(server))
    try:
        assert client.send(cid, Chat(user="ann", text="hello"))
        await wait_until(lambda: on_server.items, what="server to get the chat")
        data = on_server.items[0]
        assert data.message == Chat(user="ann", text="hello")
        assert data.source in server.connections
        server.send(data.source, Chat(user="srv", text="welcome ann"))
        await wait_until(lambda: on_client.items, what="client to get the reply")
        assert on_client.items[0].message.text == "welcome ann"
        assert on_client.items[0].source == cid
    finally:
        await client.close()


async def test_broadcast_and_broadcast_except(server: Network) -> None:
    clients = [make_network() for _ in range(3)]
    recs = [Recorder() for _ in clients]
    for c, r in zip(clients, recs, strict=True):
        c.messages(Ping).subscribe(r)
        await c.connect(url_of(server))
    await wait_until(lambda: len(server.connections) == 3)
    first = sorted(server.connections)[0]
    assert server.broadcast(Ping(n=1)) == 3
    assert server.broadcast_except(first, Ping(n=2)) == 2
    await wait_until(lambda: sum(len(r.items) for r in recs) == 5, what="5 deliveries")
    values = sorted(sorted(i.message.n for i in r.items) for r in recs)
    assert values == [[1], [1, 2], [1, 2]]
    for c in clients:
        await c.close()


async def test_events_connected_and_disconnected(server: Network) -> None:
    events = Recorder()
    server.events.subscribe(events)
    client = make_network()
    client_events = Recorder()
    client.events.subscribe(client_events)
    cid = await client.connect(url_of(server))
    await wait_until(lambda: events.of(Connected))
    assert client_events.of(Connected) == [Connected(cid)]
    server_side = events.of(Connected)[0].id
    await client.disconnect(cid, reason="bye now")
    await wait_until(lambda: events.of(Disconnected), what="server Disconnected")
    gone = events.of(Disconnected)[0]
    assert gone.id == server_side and gone.code == 1000 and "bye now" in gone.reason
    await wait_until(lambda: client_events.of(Disconnected))
    assert not server.connections and not client.connections
    with pytest.raises(ConnectionNotFound, match=f"id {server_side}"):
        server.send(server_side, Ping(n=1))
    await client.close()


async def test_server_disconnects_a_client_after_draining(server: Network) -> None:
    client = make_network()
    got, events = Recorder(), Recorder()
    client.messages(Ping).subscribe(got)
    client.events.subscribe(events)
    await client.connect(url_of(server))
    await wait_until(lambda: server.connections)
    sid = server.connections[0]
    for n in range(50):
        server.send(sid, Ping(n=n))
    await server.disconnect(sid, reason="kicked")
    await wait_until(lambda: events.of(Disconnected))
    assert [d.message.n for d in got.items] == list(range(50))  # nothing lost, in order
    assert events.of(Disconnected)[0].reason == "1000 kicked"
    await client.close()


async def test_connection_ids_are_never_reused(server: Network) -> None:
    seen = set()
    for _ in range(3):
        client = make_network()
        await client.connect(url_of(server))
        await wait_until(lambda: server.connections)
        (sid,) = server.connections
        assert sid not in seen
        seen.add(sid)
        await client.close()
        await wait_until(lambda: not server.connections)
    assert sorted(seen) == [1, 2, 3]


async def test_welcome_lists_types_with_hashes(server: Network) -> None:
    async with ws_connect(url_of(server), compression=None) as ws:
        assert ws.subprotocol is None  # none asked: msgpack
        welcome = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5 * UNIT))
    assert welcome[0] == 1
    body = welcome[1]
    assert body["version"] == 1 and isinstance(body["connection_id"], int)
    assert body["messages"] == [[0, "Chat", schema_hash(Chat)], [1, "Ping", schema_hash(Ping)]]


async def test_schema_mismatch_is_reported_by_name(server: Network) -> None:
    class Chat(BaseModel):  # same name, other fields
        user: str
        body: str

    class Extra(BaseModel):
        z: int

    client = Network()
    client.register_message(Chat)
    client.register_message(Extra)
    errors = Recorder()
    client.events.subscribe(errors)
    await client.connect(url_of(server))
    await wait_until(lambda: len(errors.of(ErrorEvent)) == 3)
    mismatches = {e.error.type_name: e.error for e in errors.of(ErrorEvent)}
    assert set(mismatches) == {"Chat", "Extra", "Ping"}
    assert all(isinstance(m, SchemaMismatch) for m in mismatches.values())
    assert "schema hash" in str(mismatches["Chat"])
    assert mismatches["Extra"].remote_hash is None
    assert mismatches["Ping"].local_hash is None
    await client.close()


async def test_json_subprotocol_speaks_the_same_messages(server: Network) -> None:
    got = Recorder()
    server.messages(Chat).subscribe(got)
    async with ws_connect(
        url_of(server),
        subprotocols=[JSON_SUBPROTOCOL],  # type: ignore[list-item]
        compression=None,
    ) as ws:
        assert ws.subprotocol == JSON_SUBPROTOCOL
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 5 * UNIT))
        assert welcome[0] == 1 and welcome[1]["messages"][0][1] == "Chat"
        await ws.send(json.dumps([0, "Chat", {"user": "web", "text": "from a browser"}]))
        await wait_until(lambda: got.items)
        server.broadcast(Ping(n=7))
        frame = await asyncio.wait_for(ws.recv(), 5 * UNIT)
        assert isinstance(frame, str) and json.loads(frame) == [0, "Ping", {"n": 7}]
    assert got.items[0].message == Chat(user="web", text="from a browser")


async def test_json_client_network(server: Network) -> None:
    got = Recorder()
    client = make_network()
    client.messages(Ping).subscribe(got)
    cid = await client.connect(url_of(server), encoding="json")
    assert client.connection_statistics(cid).subprotocol == JSON_SUBPROTOCOL_V2
    await wait_until(lambda: server.connections)
    server.broadcast(Ping(n=3))
    await wait_until(lambda: got.items)
    assert got.items[0].message == Ping(n=3)
    await client.close()


async def test_msgpack_subprotocol_is_selected_when_asked(server: Network) -> None:
    async with ws_connect(
        url_of(server),
        subprotocols=[MSGPACK_SUBPROTOCOL],  # type: ignore[list-item]
        compression=None,
    ) as ws:
        assert ws.subprotocol == MSGPACK_SUBPROTOCOL


async def test_health_endpoint(server: Network) -> None:
    client = make_network()
    await client.connect(url_of(server))
    await wait_until(lambda: server.connections)
    status, headers, body = await http_get(server.addresses[0][1], "/healthz")
    assert status == 200 and headers["content-type"] == "application/json"
    data = json.loads(body)
    assert data["status"] == "ok" and data["connections"] == 1 and data["uptime_seconds"] >= 0
    await client.close()


async def test_failed_handshakes_never_stop_the_listener(server: Network) -> None:
    port = server.addresses[0][1]
    # 1. Plain HTTP requests: the landing page, and 404 for a path nobody serves (the path is
    # not echoed back).
    status, headers, body = await http_get(port, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<a href="/healthz">' in body and b"ws://" in body
    status, _, body = await http_get(port, "/%3Cscript%3Ealert(1)%3C/script%3E")
    assert status == 404 and b"script" not in body and b"/healthz" in body
    # 2. A bad upgrade (missing key).
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    )
    line = await asyncio.wait_for(reader.readline(), 5 * UNIT)
    assert b" 400 " in line
    writer.close()
    # 3. Garbage, and a client that vanishes mid-handshake.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x16\x03\x01garbage\r\n\r\n")
    await asyncio.wait_for(reader.read(), 5 * UNIT)
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr")
    writer.close()
    await asyncio.sleep(0.05)
    # The listener still works.
    client = make_network()
    await client.connect(url_of(server))
    await wait_until(lambda: len(server.connections) == 1)
    await client.close()


async def test_bind_error_names_the_address(server: Network) -> None:
    host, port = server.addresses[0]
    other = Network()
    with pytest.raises(BindError, match=f"127.0.0.1:{port}") as info:
        await other.listen(host, port)
    assert isinstance(info.value, OSError) and info.value.errno is not None
    await other.close()


async def test_connect_failures_are_clear() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here now
    client = make_network()
    with pytest.raises(ConnectFailed, match=f"127.0.0.1:{port}"):
        await client.connect(f"ws://127.0.0.1:{port}/")


async def test_connect_to_a_server_that_sends_no_welcome() -> None:
    from websockets.asyncio.server import serve

    async def silent(ws: Any) -> None:
        await ws.wait_closed()

    async with serve(silent, "127.0.0.1", 0) as plain:
        port = next(iter(plain.sockets)).getsockname()[1]
        client = make_network(NetworkSettings(connect_timeout=0.3))
        with pytest.raises(ConnectFailed, match="no welcome"):
            await client.connect(f"ws://127.0.0.1:{port}/")
        await client.close()


async def test_max_connections_refuses_with_503() -> None:
    net = make_network(NetworkSettings(max_connections=2))
    await net.listen("127.0.0.1", 0)
    clients = [make_network() for _ in range(2)]
    for c in clients:
        await c.connect(url_of(net))
    extra = make_network()
    with pytest.raises(ConnectFailed, match=r"HTTP 503.*max_connections=2"):
        await extra.connect(url_of(net))
    with pytest.raises(InvalidStatus) as info:
        async with ws_connect(url_of(net)):
            pass
    assert info.value.response.status_code == 503
    assert net.statistics().refused == 2 and len(net.connections) == 2
    # a slot frees up: accepted again
    await clients[0].close()
    await wait_until(lambda: len(net.connections) == 1)
    await extra.connect(url_of(net))
    for c in (clients[1], extra, net):
        await c.close()


async def test_allowed_origins() -> None:
    net = make_network(NetworkSettings(allowed_origins=("http://hmi.local",)))
    await net.listen("127.0.0.1", 0)
    with pytest.raises(InvalidStatus) as info:
        async with ws_connect(url_of(net), origin="http://evil.example"):  # type: ignore[arg-type]
            pass
    assert info.value.response.status_code == 403
    async with ws_connect(url_of(net), origin="http://hmi.local") as ws:  # type: ignore[arg-type]
        assert (await asyncio.wait_for(ws.recv(), 5 * UNIT))[0] == 0x92
    await net.close()


@pytest.mark.parametrize("compression", [False, True])
async def test_compression_setting(compression: bool) -> None:
    net = make_network(NetworkSettings(compression=compression))
    await net.listen("127.0.0.1", 0)
    async with ws_connect(url_of(net)) as ws:  # the client offers deflate
        extensions = [type(e).__name__ for e in ws.protocol.extensions]
        assert bool(extensions) is compression
    await net.close()


async def test_ping_timeout_closes_a_silent_peer() -> None:
    net = make_network(NetworkSettings(ping_interval=0.1, ping_timeout=0.2, close_timeout=0.2))
    await net.listen("127.0.0.1", 0)
    events = Recorder()
    net.events.subscribe(events)
    # A raw TCP peer that completes the handshake, then never reads or answers pings.
    reader, writer = await asyncio.open_connection(*net.addresses[0])
    writer.write(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert b"101" in await asyncio.wait_for(reader.readline(), 5 * UNIT)
    await wait_until(lambda: events.of(Disconnected), units=5, what="ping timeout")
    assert events.of(Disconnected)[0].code == 1011
    writer.close()
    await net.close()


async def test_unregistered_send_says_how_to_fix(server: Network) -> None:
    class Unknown(BaseModel):
        a: int

    with pytest.raises(NotRegistered, match=r"register_message\(Unknown\)"):
        server.broadcast(Unknown(a=1))
    with pytest.raises(NotRegistered):
        server.messages(Unknown)


async def test_a_raising_subscriber_does_not_hurt_others_or_the_connection(
    server: Network,
) -> None:
    errors: list[Exception] = []
    good = Recorder()

    def bad(_: Any) -> None:
        raise RuntimeError("user bug")

    server.messages(Ping).subscribe(on_next=bad, on_error=errors.append)
    server.messages(Ping).subscribe(good)
    client = make_network()
    cid = await client.connect(url_of(server))
    client.send(cid, Ping(n=1))
    client.send(cid, Ping(n=2))
    await wait_until(lambda: len(good.items) == 2)
    assert len(errors) == 1 and str(errors[0]) == "user bug"
    assert len(server.connections) == 1
    await client.close()


async def test_statistics_count_frames(server: Network) -> None:
    client = make_network()
    cid = await client.connect(url_of(server))
    for n in range(10):
        client.send(cid, Ping(n=n))
    await wait_until(lambda: server.statistics().messages_received == 10)
    stats = server.statistics()
    assert stats.connections == 1 and stats.accepted == 1
    assert stats.frames_received == 10 and stats.frames_sent == 1  # the welcome
    per = server.connection_statistics(server.connections[0])
    assert per.frames_received == 10 and per.queue_depth == 0 and per.remote.startswith("127.")
    await client.close()


async def test_open_timeout_closes_a_silent_tcp_peer() -> None:
    net = make_network(NetworkSettings(open_timeout=0.2))
    await net.listen("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*net.addresses[0])
    # never send the handshake: the server gives up after open_timeout
    assert await asyncio.wait_for(reader.read(), 5 * UNIT) == b""
    writer.close()
    client = make_network()
    await client.connect(url_of(net))  # the listener is fine
    await client.close()
    await net.close()


async def test_debug_log_lines_use_the_documented_wording(
    server: Network, caplog: pytest.LogCaptureFixture
) -> None:
    got = Recorder()
    server.messages(Chat).subscribe(got)
    with caplog.at_level(logging.DEBUG, logger="pl3xus_rx"):
        client = make_network()
        cid = await client.connect(url_of(server))
        client.send(cid, Chat(user="a", text="b"))
        await wait_until(lambda: got.items)
        await client.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    for line in (
        "Beginning connection from 127.0.0.1",
        "Message read: connection 1",
        "Message deserialized and sent to pl3xus_rx: connection 1, Chat",
        "Client 1 connected from 127.0.0.1",
    ):
        assert line in text


async def test_write_limit_sets_the_socket_high_water_mark() -> None:
    net = make_network(NetworkSettings(write_limit=65536))
    await net.listen("127.0.0.1", 0)
    client = make_network()
    await client.connect(url_of(net))
    await wait_until(lambda: net.connections)
    link = net._connections[net.connections[0]].link
    assert link._transport.get_write_buffer_limits()[1] == 65536  # type: ignore[attr-defined]
    await client.close()
    await net.close()


async def test_frame_heads_are_the_ones_websockets_writes() -> None:
    # The server frames its own messages (no mask, no extension): byte for byte what
    # websockets' own Frame.serialize gives, at every length boundary of RFC 6455's 5.2.
    from websockets.frames import Frame, Opcode

    from pl3xus_rx.net._websocket import frame_head

    for length in (0, 1, 125, 126, 127, 1000, 65535, 65536, 65537, 1 << 20):
        payload = b"a" * length
        for first, opcode in ((0x82, Opcode.BINARY), (0x81, Opcode.TEXT)):
            assert frame_head(first, length) + payload == Frame(opcode, payload).serialize(
                mask=False
            ), (length, opcode)


@pytest.mark.parametrize("compression", [False, True])
async def test_raw_frames_in_chunks_arrive_whole(compression: bool) -> None:
    # bytes, str and tuples of bytes (a frame in chunks, as the flush hands them over), at
    # the frame-length boundaries, arrive as the messages they were, in order; with
    # compression negotiated, through websockets' own framing.
    net = make_network(NetworkSettings(compression=compression))
    await net.listen("127.0.0.1", 0)
    sent: list[Any] = [
        b"",
        (b"",),
        (b"\x93", b"a" * 124),
        (b"\x93", b"b" * 125),
        b"c" * 126,
        (b"d" * 30000, b"e" * 35535),
        (b"f" * 30000, b"", b"g" * 35536),
        "text, é and ☃ " * 20,
        (b"h" * (1 << 20), b"i"),
        bytearray(b"j" * 200),  # (any bytes-like object is binary)
        memoryview(b"k" * 70000),
    ]
    try:
        async with ws_connect(url_of(net), max_size=None) as ws:
            assert bool(ws.protocol.extensions) is compression
            await asyncio.wait_for(ws.recv(), 5 * UNIT)  # the welcome
            await wait_until(lambda: net.connections, what="the connection")
            cid = net.connections[0]
            for data in sent:
                assert net.send_raw(cid, data)
            for data in sent:
                got = await asyncio.wait_for(ws.recv(), 5 * UNIT)
                assert got == (b"".join(data) if isinstance(data, tuple) else data)
            stats = net.statistics()
            whole = [b"".join(d) if isinstance(d, tuple) else d for d in sent]
            assert stats.frames_sent == 1 + len(sent)
            welcome = stats.bytes_sent - sum(len(d) for d in whole)
            assert 0 < welcome < 2000  # every byte of the frames counted, once
    finally:
        await net.close()


async def test_chunked_frames_to_a_peer_that_stops_reading_arrive_whole_and_in_order() -> None:
    # A peer that stops reading fills its socket: the gather writes go short, the rest
    # waits in the transport's buffer, then in the channel; once it reads again every
    # message arrives whole, in order.
    net = make_network(NetworkSettings(write_limit=64 * 1024))
    await net.listen("127.0.0.1", 0)
    sent = [(bytes([n]) * 7, bytes([n]) * (200_000 + n), bytes([255 - n]) * 3) for n in range(80)]
    try:
        async with ws_connect(url_of(net), max_size=None, max_queue=1) as ws:
            await asyncio.wait_for(ws.recv(), 5 * UNIT)  # the welcome
            await wait_until(lambda: net.connections, what="the connection")
            cid = net.connections[0]
            ws.transport.pause_reading()  # (the kernel's buffers fill, then the server's)
            try:
                for data in sent:
                    assert net.send_raw(cid, data)
                await asyncio.sleep(0.2 * UNIT)
                stats = net.connection_statistics(cid)
                assert stats.queue_depth > 0, stats  # (the channel took the rest)
            finally:
                ws.transport.resume_reading()
            for data in sent:
                got = await asyncio.wait_for(ws.recv(), 5 * UNIT)
                assert got == b"".join(data)
    finally:
        await net.close()
