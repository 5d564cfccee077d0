"""Bad input from the network: every case answered, counted, logged; nothing else breaks."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
import pytest_asyncio
from conftest import UNIT, Chat, Ping, Recorder, make_network, url_of, wait_until
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from pl3xus_rx import (
    DecodeError,
    Disconnected,
    FrameError,
    MessageValidationError,
    Network,
    NetworkSettings,
    RateLimited,
    UnknownMessageType,
    WrongFrameType,
)
from pl3xus_rx import Error as ErrorEvent
from pl3xus_rx.protocol import JSON_SUBPROTOCOL

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]


async def recv_frame(ws: ClientConnection) -> Any:
    data = await asyncio.wait_for(ws.recv(), 5 * UNIT)
    return json.loads(data) if isinstance(data, str) else msgpack.unpackb(data)


@pytest_asyncio.fixture
async def raw(server: Network) -> AsyncIterator[ClientConnection]:
    async with ws_connect(url_of(server), compression=None) as ws:
        assert (await recv_frame(ws))[0] == 1  # welcome
        yield ws


def chat(user: str = "ann", text: str = "hi") -> bytes:
    return msgpack.packb([0, "Chat", {"user": user, "text": text}])


CASES = [
    (b"\xc1\xc1", "decode_error", DecodeError, "undecodable msgpack", None, None),
    (chat()[:-2], "decode_error", DecodeError, "truncated msgpack", None, None),
    (msgpack.packb([0, "Nope", {}]), "unknown_type", UnknownMessageType, '"Nope"', "Nope", None),
    (
        msgpack.packb([0, "Chat", {"user": "ann", "text": "x" * 201}]),
        "validation_error",
        MessageValidationError,
        "Chat failed validation",
        "Chat",
        "text",
    ),
    (
        msgpack.packb([0, "Chat", {"text": "no user"}]),
        "validation_error",
        MessageValidationError,
        "Chat failed validation",
        "Chat",
        "user",
    ),
    (
        '[0,"Chat",{"user":"a","text":"b"}]',
        "wrong_frame_type",
        WrongFrameType,
        "text frame",
        None,
        None,
    ),
    (msgpack.packb([42, 1]), "bad_frame", FrameError, "unknown frame kind 42", None, None),
    (msgpack.packb({"kind": 0}), "bad_frame", FrameError, "non-empty array", None, None),
    (
        msgpack.packb([1, {"version": 1, "connection_id": 1, "messages": []}]),
        "bad_frame",
        FrameError,
        "unexpected WELCOME",
        None,
        None,
    ),
]


@pytest.mark.parametrize(
    ("data", "code", "exc_type", "text", "type_name", "field"),
    CASES,
    ids=[c[1] + "-" + c[3].split()[0] for c in CASES],
)
async def test_bad_frame_is_answered_counted_logged_and_harmless(
    server: Network,
    raw: ClientConnection,
    caplog: pytest.LogCaptureFixture,
    data: bytes | str,
    code: str,
    exc_type: type,
    text: str,
    type_name: str | None,
    field: str | None,
) -> None:
    events, got = Recorder(), Recorder()
    server.events.subscribe(events)
    server.messages(Chat).subscribe(got)
    bystander = make_network()
    bystander_got = Recorder()
    bystander.messages(Ping).subscribe(bystander_got)
    await bystander.connect(url_of(server))

    with caplog.at_level(logging.WARNING, logger="pl3xus_rx.net"):
        await raw.send(data)
        error = await recv_frame(raw)
    assert error[0] == 2
    body = error[1]
    assert body["code"] == code and text in body["message"]
    assert body["type"] == type_name and body["field"] == field
    if code == "validation_error":
        assert body["errors"][0]["loc"] == field
    assert server.statistics().bad_frames == 1
    await wait_until(lambda: events.of(ErrorEvent))
    assert isinstance(events.of(ErrorEvent)[0].error, exc_type)
    assert any(
        "Bad frame from connection" in r.getMessage() and text in r.getMessage()
        for r in caplog.records
    )

    # The same connection still works, and so does everyone else.
    await raw.send(chat(text="still here"))
    await wait_until(lambda: got.items, what="a valid message after the bad one")
    assert got.items[0].message.text == "still here"
    server.broadcast(Ping(n=1))
    await wait_until(lambda: bystander_got.items)
    assert (await recv_frame(raw)) == [0, "Ping", {"n": 1}]
    assert not events.of(Disconnected)
    await bystander.close()


async def test_json_connection_bad_input(server: Network) -> None:
    got = Recorder()
    server.messages(Chat).subscribe(got)
    async with ws_connect(
        url_of(server),
        subprotocols=[JSON_SUBPROTOCOL],  # type: ignore[list-item]
        compression=None,
    ) as ws:
        await recv_frame(ws)
        await ws.send(b"\x93\x00")
        err = await recv_frame(ws)
        assert err[0] == 2 and err[1]["code"] == "wrong_frame_type"
        await ws.send('[0,"Chat",{"user":')
        err = await recv_frame(ws)
        assert err[1]["code"] == "decode_error" and "truncated JSON" in err[1]["message"]
        await ws.send('[0,"Chat",{"user":"a","text":"ok"}]')
        await wait_until(lambda: got.items)
    assert server.statistics().bad_frames == 2


async def test_client_side_receives_server_errors_as_events(server: Network) -> None:
    # The client registers a Chat the server validates differently: the server rejects it and
    # the client sees a RemoteError event naming the field.
    client = make_network()
    events = Recorder()
    client.events.subscribe(events)
    cid = await client.connect(url_of(server))
    client.send(cid, Chat.model_construct(user="ann", text="x" * 500))
    await wait_until(lambda: events.of(ErrorEvent))
    err = events.of(ErrorEvent)[0].error
    assert err.remote_code == "validation_error" and err.field == "text"
    assert client.statistics().errors_received == 1
    await client.close()


async def test_over_max_message_size_closes_1009_naming_the_limit() -> None:
    net = make_network(NetworkSettings(max_message_size=4096, max_frame_size=1024))
    await net.listen("127.0.0.1", 0)
    events = Recorder()
    net.events.subscribe(events)
    other = make_network()
    await other.connect(url_of(net))
    async with ws_connect(url_of(net), compression=None, max_size=None) as ws:
        await recv_frame(ws)
        # fragments under max_frame_size add up to under max_message_size: accepted
        payload = msgpack.packb([0, "Chat", {"user": "a", "text": "b" * 150}]) + b""
        assert len(payload) < 1024
        await ws.send(payload)
        # one frame over max_frame_size: refused
        await ws.send(b"\x00" * 2000)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5 * UNIT)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        assert "1024" in info.value.rcvd.reason
    async with ws_connect(url_of(net), compression=None, max_size=None) as ws:
        await recv_frame(ws)
        await ws.send([b"\x00" * 1000] * 5)  # 5 fragments of 1000 B: 5000 B > 4096
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5 * UNIT)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        assert "4096" in info.value.rcvd.reason
    async with ws_connect(url_of(net), compression=None) as ws:
        await recv_frame(ws)
        await ws.send([b"\x92\x00", b"\xa3abc"])  # a small fragmented message is fine
        err = await recv_frame(ws)  # [0, "abc"] is a bad MESSAGE frame, answered normally
        assert err[0] == 2 and err[1]["code"] == "bad_frame"
    await wait_until(lambda: len(net.connections) == 1)  # the bystander is still connected
    await other.close()
    await net.close()


async def test_rate_limit_drops_then_closes_1008() -> None:
    settings = NetworkSettings(
        rate_limit_per_second=5,
        rate_limit_burst=5,
        rate_limit_max_violations=20,
        rate_limit_window=60,
        rate_limit_frame_time=None,  # count frames only: a slow first frame costs no more
    )
    net = make_network(settings)
    await net.listen("127.0.0.1", 0)
    got, events = Recorder(), Recorder()
    net.messages(Ping).subscribe(got)
    net.events.subscribe(events)
    polite = make_network()
    polite_cid = await polite.connect(url_of(net))
    async with ws_connect(url_of(net), compression=None) as ws:
        await recv_frame(ws)
        for n in range(10):
            await ws.send(msgpack.packb([0, "Ping", {"n": n}]))
        errors = [await recv_frame(ws) for _ in range(5)]
        assert all(e[1]["code"] == "rate_limited" and e[1]["limit"] == 5 for e in errors)
        await wait_until(lambda: len(got.items) == 5)
        assert [d.message.n for d in got.items] == [0, 1, 2, 3, 4]
        assert net.statistics().rate_limited == 5
        assert any(isinstance(e.error, RateLimited) for e in events.of(ErrorEvent))
        # sustained abuse: closed with 1008
        for n in range(30):
            try:
                await ws.send(msgpack.packb([0, "Ping", {"n": 100 + n}]))
            except ConnectionClosed:
                break
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(ws.recv(), 5 * UNIT)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008
        assert "rate limit" in info.value.rcvd.reason
    # the polite client is unaffected
    polite.send(polite_cid, Ping(n=999))
    await wait_until(lambda: got.items[-1].message.n == 999)
    await polite.close()
    await net.close()


async def test_errors_speak_the_wire_and_huge_numbers_are_bad_input(server: Network) -> None:
    async with ws_connect(
        url_of(server),
        subprotocols=[JSON_SUBPROTOCOL],  # type: ignore[list-item]
        compression=None,
    ) as ws:
        await recv_frame(ws)
        await ws.send("[99]")
        err = await recv_frame(ws)
        assert "the kinds are 0, 1, 2, 3" in err[1]["message"]
        assert "FrameKind" not in err[1]["message"] and "<" not in err[1]["message"]
        await ws.send("{}")
        err = await recv_frame(ws)
        assert err[1]["message"].endswith("got a map")
        await ws.send("[" + "9" * 5000 + "]")  # past what Python converts: bad input, named
        err = await recv_frame(ws)
        assert err[1]["code"] == "decode_error" and "digits" in err[1]["message"]
        await ws.send('[0,"Chat",{"user":"a","text":"still fine"}]')
        await wait_until(lambda: server.statistics().messages_received == 1)


async def test_bad_frame_warnings_are_throttled_per_connection(
    server: Network, raw: ClientConnection, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(50):
        await raw.send(b"\xc1" * 1000)
    for _ in range(50):
        assert (await recv_frame(raw))[1]["code"] == "decode_error"  # each one answered
    warnings = [r for r in caplog.records if "Bad frame from connection" in r.getMessage()]
    assert len(warnings) == 1  # the rest within warning_interval: counted, not logged
    assert server.statistics().bad_frames == 50
    server_conn = server._connections[server.connections[0]]  # internal: the count kept
    assert server_conn.bad_frames_unlogged == 49


async def test_a_handshake_offering_only_foreign_subprotocols_is_refused_by_name(
    server: Network,
) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as info:
        async with ws_connect(url_of(server), subprotocols=["chat.v9"]):  # type: ignore[list-item]
            pass
    assert info.value.response.status_code == 400
    body = info.value.response.body.decode()
    assert "chat.v9" in body and "pl3xus.json.v1" in body
    async with ws_connect(
        url_of(server),
        subprotocols=["chat.v9", JSON_SUBPROTOCOL],  # type: ignore[list-item]
    ) as ws:  # one of ours among them: fine
        assert ws.subprotocol == JSON_SUBPROTOCOL


async def test_a_decoder_bomb_is_refused_by_its_budget_and_nothing_else_stops(
    server: Network,
) -> None:
    """A frame of empty maps: one byte each on the wire, ~70 decoded. Refused, named, in
    both encodings, and the connection (and others) go on."""
    n = 2 * 1024 * 1024
    bomb = b"\xdd" + n.to_bytes(4, "big") + b"\x80" * n
    async with (
        ws_connect(url_of(server), compression=None, max_size=None) as ws,
        ws_connect(
            url_of(server),
            subprotocols=[JSON_SUBPROTOCOL],  # type: ignore[list-item]
            compression=None,
        ) as js,
    ):
        await recv_frame(ws)
        await recv_frame(js)
        await ws.send(bomb)
        err = await recv_frame(ws)
        assert err[1]["code"] == "decode_error"
        assert "maps and arrays" in err[1]["message"] and "one per 8 bytes" in err[1]["message"]
        await js.send("[" + ",".join(["{}"] * 100_000) + "]")
        err = await recv_frame(js)
        assert err[1]["code"] == "decode_error" and "maps and arrays" in err[1]["message"]
        # nested near-valid frames under the budget decode (and are answered on their merit)
        await ws.send(msgpack.packb([0, "Chat", {"user": "a", "text": "b"}]))
        await js.send('[0,"Chat",{"user":"a","text":"b"}]')
        await wait_until(lambda: server.statistics().messages_received == 2)


async def test_the_server_refuses_messages_over_its_own_default_limit() -> None:
    net = make_network()  # defaults: a server accepts 4 MiB
    await net.listen("127.0.0.1", 0)
    ws = await ws_connect(url_of(net), compression=None, max_size=None)
    try:
        await recv_frame(ws)
        with pytest.raises(ConnectionClosed) as info:
            # 1 MiB fragments (each under the frame limit) adding up to over 4 MiB; the
            # server may close while the client is still sending
            await ws.send([b"\x00" * (1024 * 1024)] * 5)
            await asyncio.wait_for(ws.recv(), 5 * UNIT)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        assert "4194304" in info.value.rcvd.reason
    finally:
        ws.transport.abort()
        await asyncio.wait_for(net.close(), 10 * UNIT)
