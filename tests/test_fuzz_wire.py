"""Wire fuzzing against a real server, with a well-behaved watcher on a second connection.

Random and near-valid frames of every kind, in both encodings (lone surrogates, huge numbers,
NaN, deep nesting, wrong key types). For each run: every command frame with a request id the
server can read gets exactly one REPLY, every ERROR names a known code in plain words, nothing
is logged as a traceback, and the watcher keeps receiving and ends with exactly the server's
values.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
from collections import Counter
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from websockets.asyncio.client import connect as ws_connect

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import Authorized, NetworkSettings, SyncServer
from pl3xus_rx.protocol import (
    CLIENT_COMMAND_KINDS,
    JSON_SUBPROTOCOL,
    ErrorCode,
    FrameKind,
    Status,
    container_budget,
)

WAIT = 10.0  # seconds: every network wait is bounded
BIG = "\x00a 5000-digit integer\x00"  # in JSON text, replaced by one (Python cannot print it)


class Speed(BaseModel):
    value: float


class Nudge(BaseModel):
    by: float


class Count(BaseModel):
    n: int


class Note(BaseModel):
    text: str


PYTHON_REPR = re.compile(r"(entity|got|type|parent|action) (None|True|False)\b|\bnan\b|\binf\b")
REPLY_KINDS = {int(k) for k in CLIENT_COMMAND_KINDS} - {int(FrameKind.SEND)}
NAMES = ["Speed", "EntityControl", "Nudge", "Count", "Note", "pl3xus.tree", "", "speed"]

# -- values: what JSON and msgpack can carry, and what they should refuse


def scalars(binary: bool) -> st.SearchStrategy[Any]:
    ints = st.one_of(
        st.integers(-5, 5),
        st.integers(-(2**63), 2**64 - 1),
        *([] if binary else [st.integers(10**30, 10**40), st.just(BIG)]),
    )
    texts = st.one_of(
        st.text(max_size=8),
        st.sampled_from(["\ud800", "a\udfffb", "take", "release", "Speed"]),
    )
    floats = st.floats(allow_nan=True, allow_infinity=True)
    extra = [st.binary(max_size=6)] if binary else []
    return st.one_of(st.none(), st.booleans(), ints, floats, texts, *extra)


def values(binary: bool) -> st.SearchStrategy[Any]:
    keys = st.one_of(st.text(max_size=6), st.sampled_from(["value", "by", "n", "text"]))
    if binary:
        keys = st.one_of(keys, st.integers(-3, 3))
    return st.recursive(
        scalars(binary),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)
        ),
        max_leaves=12,
    )


def near_valid(binary: bool) -> st.SearchStrategy[list[Any]]:
    """Frames shaped like the real ones, with any part possibly wrong."""
    v = values(binary)
    req = st.one_of(st.integers(0, 50), st.booleans(), st.integers(-(2**63), 2**63), v)
    name = st.one_of(st.sampled_from(NAMES), v)
    entity = st.one_of(st.sampled_from([1, 2, 3, 999]), v)
    payload = st.one_of(
        st.fixed_dictionaries({"value": st.floats(-10, 10)}),
        st.fixed_dictionaries({"by": st.floats(-1, 1)}),
        st.fixed_dictionaries({"n": st.integers(0, 9)}),
        v,
    )
    kind = st.one_of(st.sampled_from([int(k) for k in FrameKind]), st.integers(-2, 99), v)
    return st.one_of(
        st.tuples(st.just(int(FrameKind.MUTATE)), req, name, entity, payload).map(list),
        st.tuples(
            st.just(int(FrameKind.CONTROL)), req, st.sampled_from(["take", "release"]), entity
        ).map(list),
        st.tuples(st.just(int(FrameKind.REQUEST)), req, name, entity, payload).map(list),
        st.tuples(st.just(int(FrameKind.QUERY)), req, name, payload).map(list),
        st.tuples(st.just(int(FrameKind.SEND)), name, entity, payload).map(list),
        st.tuples(
            st.just(int(FrameKind.SUBSCRIBE)),
            req,
            name,
            st.one_of(st.none(), entity),
            st.one_of(st.just({}), st.fixed_dictionaries({"max_rate_hz": v}), v),
        ).map(list),
        st.tuples(st.just(int(FrameKind.UNSUBSCRIBE)), req).map(list),
        st.tuples(st.just(int(FrameKind.RESYNC)), st.one_of(st.none(), req)).map(list),
        st.tuples(st.just(int(FrameKind.MESSAGE)), name, payload).map(list),
        st.lists(v, max_size=6).flatmap(lambda rest: kind.map(lambda k: [k, *rest])),
        v,
    )


def deep(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return [int(FrameKind.QUERY), 7, "Count", value]


# -- what the server should make of a frame


def _walk(value: Any) -> tuple[int, bool, bool]:
    """Maps and arrays in it; whether a string holds a lone surrogate (no codec passes it
    on); whether it holds what JSON refuses too (NaN, infinities, 5,000-digit integers)."""
    containers, surrogate, not_json = 0, False, False
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            containers += 1
            for k, x in item.items():
                stack.extend((k, x))
        elif isinstance(item, list | tuple):
            containers += 1
            stack.extend(item)
        elif isinstance(item, str):
            surrogate |= any(0xD800 <= ord(c) <= 0xDFFF for c in item)
            not_json |= item == BIG
        elif isinstance(item, float):
            not_json |= not math.isfinite(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            not_json |= len(str(abs(item))) > 4000
    return containers, surrogate, not_json


_packer = msgpack.Packer(use_bin_type=True, unicode_errors="surrogatepass")


def encode(frame: Any, binary: bool) -> tuple[bytes | str, bool]:
    """The bytes to send, and whether the server can decode them into ``frame`` (in JSON a
    lone surrogate decodes: the command is answered, naming the field)."""
    containers, surrogate, not_json = _walk(frame)
    if binary:  # (NaN and infinities are fine in msgpack; invalid UTF-8 is not)
        data: bytes | str = _packer.pack(frame)
        poison = surrogate
    else:
        data = json.dumps(frame).replace(json.dumps(BIG), "9" * 5000)
        poison = not_json
    return data, not poison and containers <= container_budget(len(data))


def expects_reply(frame: Any) -> bool:
    return (
        isinstance(frame, list)
        and len(frame) >= 2
        and type(frame[0]) is int
        and frame[0] in REPLY_KINDS
        and type(frame[1]) is int
        and -(2**63) <= frame[1] < 2**64  # (what a REPLY can carry back in either encoding)
    )


# -- the run


def make_server() -> tuple[SyncServer, list[int]]:
    server = SyncServer(NetworkSettings(rate_limit_per_second=None))
    server.sync_component_builder(Speed).with_entity_policy(
        lambda world, ctx, entity: Authorized()
    ).build()
    server.request(Nudge).targeted().returns(Speed).register(
        lambda world, ctx, entity, request: Speed(value=request.by)
    )
    server.query(Count).returns(Count).register(lambda world, query: Count(n=query.n + 1))
    server.message(Note).register(lambda world, ctx, note: None)
    robots = [int(server.world.spawn(Speed(value=float(i)))) for i in range(3)]
    return server, robots


async def run(frames: list[Any], binary: bool) -> None:
    server, robots = make_server()
    registry = ClientTypeRegistry.builder().register(Speed).build()
    problems: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, ctx: problems.append(str(ctx.get("message"))))
    async with server.serve("127.0.0.1", 0) as (host, port):
        url = f"ws://{host}:{port}/"
        extra: dict[str, Any] = {} if binary else {"subprotocols": [JSON_SUBPROTOCOL]}
        async with (
            SyncProvider(url, registry) as watcher,
            ws_connect(url, compression=None, max_size=None, **extra) as fuzz,
        ):
            speeds = watcher.components(Speed)
            seen: list[int] = []
            speeds.subscribe(lambda m: seen.append(len(m)))
            await watcher.wait_synced(WAIT)
            await asyncio.wait_for(fuzz.recv(), WAIT)  # welcome

            async def ticking() -> None:
                for i in range(10_000):
                    server.world.insert(robots[2], Speed(value=1000.0 + i))
                    await asyncio.sleep(0.005)

            ticker = asyncio.create_task(ticking())
            wanted: Counter[Any] = Counter()
            for frame in frames:
                data, readable = encode(frame, binary)
                if readable and expects_reply(frame):
                    wanted[frame[1]] += 1
                await fuzz.send(data)
            barrier = 10**9
            wanted[barrier] += 1
            last = [int(FrameKind.QUERY), barrier, "Count", {"n": 1}]
            await fuzz.send(_packer.pack(last) if binary else json.dumps(last))
            got: Counter[Any] = Counter()
            errors = 0
            while got[barrier] == 0:
                raw = await asyncio.wait_for(fuzz.recv(), WAIT)
                frame = msgpack.unpackb(raw, strict_map_key=False) if binary else json.loads(raw)
                if frame[0] == FrameKind.REPLY:
                    assert frame[1] in wanted, f"a REPLY to nothing asked: {frame!r:.200}"
                    assert frame[2] in {s.value for s in Status} and frame[2] != "internal_error"
                    assert isinstance(frame[3], str) and isinstance(frame[4], dict)
                    if frame[2] == Status.VALIDATION_ERROR:  # what was wrong, itemized
                        items = frame[4].get("errors")
                        assert items and all({"loc", "msg", "type"} <= set(i) for i in items)
                    # values the client sent are shown in the wire's words, never repr()
                    assert not PYTHON_REPR.search(frame[3]), frame[3]
                    got[frame[1]] += 1
                elif frame[0] == FrameKind.ERROR:
                    errors += 1
                    body = frame[1]
                    assert body["code"] in {c.value for c in ErrorCode}, body
                    text = body["message"]
                    assert isinstance(text, str) and "Traceback" not in text, body
                    assert " object at 0x" not in text and "FrameKind." not in text, body
            assert got == wanted, (got, wanted)
            assert errors <= len(frames)
            ticker.cancel()
            before = len(seen)
            server.world.insert(robots[2], Speed(value=-1.0))

            def converged() -> bool:
                return dict(speeds.get()) == dict(server.world.query(Speed))

            for _ in range(int(WAIT / 0.01)):
                if converged():
                    break
                await asyncio.sleep(0.01)
            assert converged(), (speeds.get(), dict(server.world.query(Speed)))
            assert len(seen) > before  # the watcher kept receiving
    assert not problems, problems


frame_lists = st.booleans().flatmap(
    lambda binary: st.tuples(
        st.just(binary),
        st.lists(
            st.one_of(
                near_valid(binary),
                near_valid(binary),
                near_valid(binary),
                st.integers(20, 300).map(deep),
            ),
            min_size=10,
            max_size=60,
        ),
    )
)


@pytest.mark.timeout(300)
@settings(
    max_examples=int(os.environ.get("PL3XUS_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@pytest.mark.slow
@given(case=frame_lists)
def test_fuzzed_frames_are_answered_and_hurt_nobody(
    case: tuple[bool, list[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    binary, frames = case
    caplog.clear()
    with caplog.at_level(logging.INFO):
        asyncio.run(run(frames, binary))
    bad = [
        r
        for r in caplog.records
        if r.name.startswith(("pl3xus_rx", "client_sync"))
        and (r.exc_info is not None or r.levelno >= logging.ERROR)
    ]
    assert not bad, [r.getMessage() for r in bad]


CASES: list[tuple[str, str, str | None]] = [
    # (JSON frame, status, loc of the error item; None: an ERROR frame, no REPLY)
    ('[9, 1, "grab", 1]', "validation_error", "action"),
    ('[15, 2, true, {"Speed": {"value": 1}}]', "validation_error", "parent"),
    ('[15, 3, "cell", {"Speed": {"value": 1}}]', "validation_error", "parent"),
    ("[16, 4, true]", "validation_error", "entity"),
    ("[16, 5, null]", "validation_error", "entity"),
    ('[7, 6, true, 1, {"value": 1}]', "validation_error", "component_name"),
    ('[7, 7, "Speed", 1, {"value": "\\ud800"}]', "validation_error", "value.value"),
    ('[12, 8, "Count", {"n": "\\udfff"}]', "validation_error", "params.n"),
    ('[11, 9, "Nudge", "robot", {"by": 1}]', "validation_error", "entity"),
    ('[7, 10, "Speed", 1, {"value": "x"}]', "validation_error", "value"),
    ("[16, 100000000000000000000000, 1]", None, None),
    ('[14, "Note", null, {"text": "\\ud800"}]', None, None),
]


@pytest.mark.asyncio
async def test_each_malformed_command_is_answered_in_the_wire_s_words() -> None:
    """The cases a client written from docs/protocol.md met: every command with a request
    id gets a ``validation_error`` REPLY whose ``errors`` item names the field; no Python
    repr reaches the wire; a request id no REPLY could carry, and a SEND, get ERROR frames."""
    server, _robots = make_server()
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        ws_connect(f"ws://{host}:{port}/", subprotocols=[JSON_SUBPROTOCOL]) as ws,
    ):
        await asyncio.wait_for(ws.recv(), WAIT)  # welcome
        for text, status, loc in CASES:
            await ws.send(text)
            answer = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            if status is None:
                assert answer[0] == FrameKind.ERROR, (text, answer)
                continue
            assert answer[0] == FrameKind.REPLY and answer[1] == json.loads(text)[1], answer
            assert answer[2] == status, (text, answer)
            items = answer[4]["errors"]
            assert [item["loc"] for item in items][:1] == [loc], (text, answer)
            assert not PYTHON_REPR.search(answer[3]), answer
            assert loc.split(".")[0] in answer[3] or loc == "value", answer  # names it


@pytest.mark.asyncio
async def test_names_a_client_sent_are_echoed_cut_short() -> None:
    """An unknown name is named in the answer, but never echoed whole: a 1 MB name once
    came back as a 5 MB ERROR (SUBSCRIBE), REPLY (the last message query) or notice (SEND),
    parked in the sender's queue."""
    server, _robots = make_server()
    server.register_message(Count)
    name = "N" * 1_000_000
    frames = [
        [3, 1, name, None, {}],
        [0, name, {}],
        [12, 2, "pl3xus.last_message", {"type": name}],
        [14, name, None, {}],
        [3, 3, "Speed", None, {f"k{i}": 1 for i in range(50_000)}],
    ]
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        ws_connect(f"ws://{host}:{port}/", max_size=None) as ws,
    ):
        await asyncio.wait_for(ws.recv(), WAIT)  # welcome
        for frame in frames:
            await ws.send(_packer.pack(frame))
            answer = await asyncio.wait_for(ws.recv(), WAIT)
            assert len(answer) < 2_000, (frame[0], len(answer))
            assert b"NNNNNNNNNN" in answer or frame[0] == 3  # still says which
