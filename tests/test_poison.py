"""Values neither encoding can carry (a lone UTF-16 surrogate) never poison the server: a
client's is refused at decode, naming where it was; a server-made one is left out for that
entity alone while everything else keeps flowing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from conftest import UNIT, wait_until
from pydantic import BaseModel
from websockets.asyncio.client import connect as ws_connect

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import Authorized, ServerError, SyncServer, SyncSettings
from pl3xus_rx.protocol import JSON_SUBPROTOCOL

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]

LONE = "\ud800"


class Label(BaseModel):
    text: str


class Echo(BaseModel):
    text: str


REGISTRY = ClientTypeRegistry.builder().register(Label).register_request(Echo, Echo).build()


def make_server() -> SyncServer:
    server = SyncServer(sync=SyncSettings(max_update_rate_hz=200))
    server.sync_component_builder(Label).with_entity_policy(lambda w, c, e: Authorized()).build()

    def echo(world: Any, ctx: Any, request: Echo) -> Echo:
        return Echo(text=request.text + LONE)  # a handler that makes an unencodable answer

    server.request(Echo).register(echo)
    return server


async def next_frame(ws: Any) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), 5 * UNIT))


async def test_a_json_client_cannot_send_a_lone_surrogate_or_a_bare_nan() -> None:
    server = make_server()
    e = server.world.spawn(Label(text="ok"))
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        ws_connect(f"ws://{host}:{port}/", subprotocols=[JSON_SUBPROTOCOL]) as ws,  # type: ignore[list-item]
    ):
        await next_frame(ws)  # welcome
        # a command: decoded, and answered naming the field; nothing is applied
        await ws.send(f'[7, 1, "Label", {e}, {{"text": "\\ud800"}}]')
        reply = await next_frame(ws)
        assert reply[:3] == [8, 1, "validation_error"]
        assert "lone UTF-16 surrogate" in reply[3]
        assert reply[4]["errors"][0]["loc"] == "value.text"
        assert reply[4]["errors"][0]["type"] == "invalid_text"
        # anything else with one is refused whole
        await ws.send('[3, 1, "Label\\udfff", null, {}]')
        error = await next_frame(ws)
        assert error[0] == 2 and error[1]["code"] == "decode_error"
        assert "lone UTF-16 surrogate" in error[1]["message"] and "at 2" in error[1]["message"]
        await ws.send("[0, NaN]")
        error = await next_frame(ws)
        assert error[1]["code"] == "decode_error" and "NaN" in error[1]["message"]
        # a pair (an emoji) is fine, and the connection goes on
        await ws.send(f'[7, 2, "Label", {e}, {{"text": "\\ud83d\\ude00"}}]')
        reply = await next_frame(ws)
        while reply[0] != 8:  # (a SYNC may come first)
            reply = await next_frame(ws)
        assert reply[:3] == [8, 2, "ok"]
    assert server.world.get(e, Label) == Label(text="\U0001f600")
    assert server.net.statistics().bad_frames == 3


async def test_an_unencodable_server_value_is_left_out_for_its_entity_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_server()
    bad, good = server.world.spawn(Label(text="a")), server.world.spawn(Label(text="b"))
    async with server.serve("127.0.0.1", 0) as (host, port):
        url = f"ws://{host}:{port}/"
        async with (
            SyncProvider(url, REGISTRY) as packed,
            SyncProvider(url, REGISTRY, encoding="json") as texted,
        ):
            views = [packed.components(Label), texted.components(Label)]
            for view in views:
                view.subscribe(lambda _: None)
            await packed.wait_synced(10)
            await texted.wait_synced(10)
            for round_ in range(5):  # several flushes with the poisoned value pending
                server.world.insert(bad, Label(text=f"x{round_}{LONE}"))
                server.world.insert(good, Label(text=f"fine {round_}"))
                await wait_until(
                    lambda r=round_: all(v.get()[good].text == f"fine {r}" for v in views),
                    what="the good entity's update",
                )
            assert all(v.get()[bad] == Label(text="a") for v in views)  # the last good value
            # a new subscriber's snapshot leaves it out too, and has the rest
            async with SyncProvider(url, REGISTRY) as late:
                labels = late.components(Label)
                labels.subscribe(lambda _: None)
                await late.wait_synced(10)
                assert labels.get() == {good: Label(text="fine 4")}
            server.world.insert(bad, Label(text="healed"))
            await wait_until(lambda: all(v.get()[bad].text == "healed" for v in views))
    stats = server.engine.statistics()
    assert stats.unencodable >= 5
    logged = [r for r in caplog.records if "cannot be encoded" in r.getMessage()]
    assert 1 <= len(logged) <= 2  # once per (type, entity) while remembered, not per flush
    assert not [r for r in caplog.records if r.getMessage() == "flush failed"]


async def test_an_unencodable_answer_is_still_answered() -> None:
    server = make_server()
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as sync,
    ):
        for _ in range(2):  # and the next command is answered too
            with pytest.raises(ServerError, match="could not be encoded"):
                await sync.request(Echo(text="hi"))


async def test_the_json_codec_rejects_what_it_could_not_send_on() -> None:
    from pl3xus_rx.exceptions import DecodeError
    from pl3xus_rx.protocol import JsonCodec

    codec = JsonCodec()
    assert codec.decode('["\\ud83d\\ude00", "\\\\ud800"]') == ["\U0001f600", "\\ud800"]
    with pytest.raises(DecodeError, match=r"at 1\.k"):
        codec.decode('[1, {"k": ["\\udc00"]}]')
    with pytest.raises(DecodeError, match="<key>"):
        codec.decode('{"\\ud800": 1}')
    for token in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(DecodeError, match="bare token"):
            codec.decode(f"[{token}]")


async def test_finding_a_lone_surrogate_costs_no_copy_of_a_long_key_per_element() -> None:
    """Where the surrogate is, is told as a path; the path is built only for what is found
    (a wide array under a 100 kB key once cost a copy of the key per element: a gigabyte
    here) and its keys are cut."""
    import tracemalloc

    from pl3xus_rx.protocol import JsonCodec, LoneSurrogate

    frame = [7, 1, "Label", 1, {"text": "SURROGATE", "k" * 100_000: [0] * 10_000}]
    data = json.dumps(frame).replace('"SURROGATE"', '"\\ud800"')
    tracemalloc.start()
    try:
        with pytest.raises(LoneSurrogate) as caught:
            JsonCodec().decode(data, untrusted=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.where == "4.text"
    assert peak < 30 * 2**20, peak  # the decoded frame itself is ~1 MB
    frame = [7, 1, "Label", 1, {"k" * 100_000: {"t": "SURROGATE"}}]
    with pytest.raises(LoneSurrogate) as caught:
        JsonCodec().decode(json.dumps(frame).replace('"SURROGATE"', '"\\ud800"'))
    assert caught.value.where == "4." + "k" * 37 + "....t"
    assert len(caught.value.message) < 400


async def test_frames_with_harmless_escapes_are_not_searched_for_surrogates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only an escape of a surrogate code point can make a lone one: a frame with only
    ``\\u0041``-style escapes is not walked (a big one made the walk cost more than the
    decoding), and a walk skips numbers and nulls."""
    import pl3xus_rx.protocol._codec as codec

    walks: list[object] = []
    real = codec.lone_surrogate
    monkeypatch.setattr(codec, "lone_surrogate", lambda obj: walks.append(obj) or real(obj))
    data = json.dumps([11, 1, "Jog", 1, {"y": "A", "x": [0] * 1000}]).replace('"A"', '"\\u0041"')
    assert codec.JsonCodec().decode(data)[4]["y"] == "A"
    assert walks == []
    pair = json.dumps(["\U0001f600"])  # an escaped pair: walked, and fine
    assert codec.JsonCodec().decode(pair) == ["\U0001f600"] and len(walks) == 1
