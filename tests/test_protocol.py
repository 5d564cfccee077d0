"""Protocol tests: values in, frames out, and back. No sockets."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from pl3xus_rx.exceptions import (
    DecodeError,
    DuplicateRegistration,
    FrameError,
    MessageValidationError,
    NotRegistered,
    UnknownMessageType,
    WrongFrameType,
)
from pl3xus_rx.protocol import (
    JSON_SUBPROTOCOL,
    MSGPACK_SUBPROTOCOL,
    ErrorFrame,
    JsonCodec,
    MessageFrame,
    MsgpackCodec,
    TypeTable,
    WelcomeFrame,
    codec_for_subprotocol,
    error_frame,
    message_frame,
    parse_frame,
    schema_hash,
    validate_message,
    welcome_frame,
)


class Chat(BaseModel):
    user: str
    text: str = Field(max_length=10)


class Stamp(BaseModel):
    at: datetime
    tags: list[str] = []


def table() -> TypeTable:
    t = TypeTable()
    t.register(Chat)
    t.register(Stamp, name="stamp.v1")
    return t


@pytest.mark.parametrize("codec", [MsgpackCodec(), JsonCodec()])
def test_message_round_trip(codec: Any) -> None:
    value = Stamp(at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), tags=["a"])
    data = codec.encode(message_frame("stamp.v1", value.model_dump(mode="json")))
    assert isinstance(data, bytes if codec.binary else str)
    frame = parse_frame(codec.decode(data))
    assert frame == MessageFrame("stamp.v1", {"at": "2026-01-02T03:04:05Z", "tags": ["a"]})
    entry, decoded = validate_message(table(), frame)
    assert entry.name == "stamp.v1" and decoded == value


def test_msgpack_message_bytes_are_as_documented() -> None:
    # docs/protocol.md shows this exact frame.
    data = MsgpackCodec().encode(message_frame("Chat", {"user": "ann", "text": "hi"}))
    assert data.hex() == "9300a44368617482a475736572a3616e6ea474657874a26869"
    assert JsonCodec().encode(message_frame("Chat", {"user": "ann", "text": "hi"})) == (
        '[0,"Chat",{"user":"ann","text":"hi"}]'
    )


def test_schema_hash_is_stable_and_sensitive() -> None:
    class Chat2(BaseModel):  # same fields, other class name: same hash
        user: str
        text: str = Field(max_length=10)

    class Chat3(BaseModel):  # a changed constraint: another hash
        user: str
        text: str = Field(max_length=11)

    assert schema_hash(Chat) == schema_hash(Chat2)
    assert schema_hash(Chat) != schema_hash(Chat3)
    assert len(schema_hash(Chat)) == 16 and int(schema_hash(Chat), 16) >= 0


def test_registration_rules() -> None:
    t = table()
    assert t.register(Chat) is t.by_model(Chat)  # idempotent
    assert t.by_name("stamp.v1") is t.by_model(Stamp)
    assert [e.type_id for e in t] == [0, 1]

    class Other(BaseModel):
        x: int

    with pytest.raises(DuplicateRegistration, match="'Chat' is already registered"):
        t.register(Other, name="Chat")
    with pytest.raises(DuplicateRegistration, match="already registered as 'Chat'"):
        t.register(Chat, name="chat2")
    with pytest.raises(NotRegistered, match=r"register_message\(Other\)"):
        t.by_model(Other)
    with pytest.raises(TypeError):
        t.register(dict)  # type: ignore[type-var]


def test_unknown_type_lists_the_registered_ones() -> None:
    with pytest.raises(UnknownMessageType) as info:
        validate_message(table(), MessageFrame("Nope", {}))
    assert '"Nope"' in str(info.value) and "Chat, stamp.v1" in str(info.value)
    assert info.value.to_wire()["code"] == "unknown_type"
    assert info.value.type_name == "Nope"


def test_validation_error_names_type_and_field() -> None:
    with pytest.raises(MessageValidationError) as info:
        validate_message(table(), MessageFrame("Chat", {"user": "ann", "text": "x" * 11}))
    err = info.value
    assert err.type_name == "Chat" and err.field == "text"
    wire = err.to_wire()
    assert wire["code"] == "validation_error" and wire["type"] == "Chat"
    assert wire["errors"][0]["loc"] == "text" and "10" in wire["errors"][0]["msg"]

    with pytest.raises(MessageValidationError) as info:
        validate_message(table(), MessageFrame("Chat", {"text": "hi"}))
    assert info.value.field == "user"


def test_msgpack_bad_bytes() -> None:
    codec = MsgpackCodec()
    with pytest.raises(DecodeError, match="undecodable"):
        codec.decode(b"\xc1")
    with pytest.raises(DecodeError, match="truncated"):
        codec.decode(codec.encode(message_frame("Chat", {"user": "a"}))[:-3])
    with pytest.raises(DecodeError, match="truncated"):
        codec.decode(b"\x93\x00")
    with pytest.raises(DecodeError, match="trailing bytes"):
        codec.decode(codec.encode([0]) + b"\x01")
    with pytest.raises(WrongFrameType, match="text frame"):
        codec.decode("[0]")


def test_json_bad_text() -> None:
    codec = JsonCodec()
    with pytest.raises(DecodeError, match="truncated JSON"):
        codec.decode('[0,"Chat",{"user":')
    with pytest.raises(DecodeError, match="undecodable JSON"):
        codec.decode("[0,}")
    with pytest.raises(WrongFrameType, match="binary frame"):
        codec.decode(b"[0]")


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({"a": 1}, "non-empty array"),
        ([], "non-empty array"),
        (["x"], "kind must be an integer"),
        ([True, "Chat", {}], "kind must be an integer"),
        ([99], "unknown frame kind 99"),
        ([0, "Chat"], "MESSAGE frame must be"),
        ([0, 5, {}], "MESSAGE frame must be"),
        ([1, "x"], "WELCOME frame must be"),
        ([1, {"version": 1, "connection_id": 1, "messages": [["a", "b"]]}], "list of"),
        ([2, 3], "ERROR frame must be"),
    ],
)
def test_frame_shapes(obj: Any, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        parse_frame(obj)


def test_welcome_and_error_frames() -> None:
    t = table()
    frame = parse_frame(msgpack.unpackb(msgpack.packb(welcome_frame(7, t, {"extra": 1}))))
    assert isinstance(frame, WelcomeFrame)
    assert frame.connection_id == 7 and frame.version == 1
    assert frame.messages == {"Chat": schema_hash(Chat), "stamp.v1": schema_hash(Stamp)}
    assert frame.body["extra"] == 1

    body = {
        "code": "validation_error",
        "message": "bad",
        "type": "Chat",
        "field": "text",
        "limit": None,
    }
    err = parse_frame(json.loads(JsonCodec().encode(error_frame(body))))
    assert isinstance(err, ErrorFrame)
    assert err.error.remote_code == "validation_error" and err.error.field == "text"


def test_codec_for_subprotocol() -> None:
    assert isinstance(codec_for_subprotocol(None), MsgpackCodec)
    assert isinstance(codec_for_subprotocol(MSGPACK_SUBPROTOCOL), MsgpackCodec)
    assert isinstance(codec_for_subprotocol(JSON_SUBPROTOCOL), JsonCodec)
    with pytest.raises(ValueError, match="unknown subprotocol"):
        codec_for_subprotocol("pl3xus.xml")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(name=st.text(min_size=1, max_size=30), payload=json_values)
def test_any_payload_survives_both_codecs(name: str, payload: Any) -> None:
    for codec in (MsgpackCodec(), JsonCodec()):
        frame = parse_frame(codec.decode(codec.encode(message_frame(name, payload))))
        assert frame == MessageFrame(name, payload)


@given(data=st.binary(max_size=64))
def test_random_bytes_never_escape_the_error_family(data: bytes) -> None:
    # Garbage either decodes to something parse_frame judges, or raises DecodeError: never
    # another exception type.
    try:
        obj = MsgpackCodec().decode(data)
    except DecodeError:
        return
    with contextlib.suppress(FrameError):
        parse_frame(obj)


def test_documented_welcome_hashes_are_real() -> None:
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "examples"))
    try:
        from chat_types import ChatMessage, ServerNotice
    finally:
        sys.path.pop(0)
    doc = (root / "docs" / "protocol.md").read_text()
    assert f'[0, "ChatMessage", "{schema_hash(ChatMessage)}"]' in doc
    assert f'[1, "ServerNotice", "{schema_hash(ServerNotice)}"]' in doc


def test_json_codec_writes_non_finite_floats_as_strings() -> None:
    import json
    import math

    text = JsonCodec().encode(message_frame("M", {"a": math.nan, "b": [math.inf, -math.inf, 1.5]}))
    assert text == '[0,"M",{"a":"NaN","b":["Infinity","-Infinity",1.5]}]'
    json.loads(text, parse_constant=lambda token: pytest.fail(f"{token} in JSON"))
    assert JsonCodec().encode([0, "M", {"a": 1.0}]) == '[0,"M",{"a":1.0}]'  # the usual case


def test_msgpack_codec_sends_integers_beyond_64_bits_as_strings() -> None:
    codec = MsgpackCodec()
    frame = codec.decode(codec.encode(message_frame("M", {"a": 2**64, "b": [1, -(2**63)]})))
    assert frame == [0, "M", {"a": str(2**64), "b": [1, -(2**63)]}]  # in range: still ints


def test_the_documented_schema_hash_recipe_reproduces_the_hash() -> None:
    """docs/protocol.md spells out the JSON text of the recipe (numbers, escapes) so that a
    non-Python client can compute hashes; its example and its number forms must hold."""
    import hashlib
    import json
    import pathlib

    from pydantic import BaseModel

    from pl3xus_rx.protocol import schema_hash

    class Speed(BaseModel):
        value: float = 0.0

    doc = (pathlib.Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
    text = '{"properties":{"value":{"default":0.0,"type":"number"}},"type":"object"}'
    assert f"`{text}`" in doc
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    assert digest == schema_hash(Speed) and f"`{digest}`" in doc
    for number, written in [
        (0.0, "0.0"),
        (1.5, "1.5"),
        (0.0001, "0.0001"),
        (1e-05, "1e-05"),
        (1e16, "1e+16"),
        (1234567890123456.0, "1234567890123456.0"),
    ]:
        assert json.dumps(number) == written and f"`{written}`" in doc
    assert json.dumps("é/") == '"\\u00e9/"'
