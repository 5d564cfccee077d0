"""Frame kinds and the shape of each frame, independent of the encoding.

Every frame is an array whose first element is the frame kind (a small integer). See
``docs/protocol.md`` for the byte-level specification.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from ..exceptions import FrameError, MessageValidationError, RemoteError, UnknownMessageType
from ._types import RegisteredType, TypeTable, from_wire
from ._vocab import FrameKind

__all__ = [
    "PROTOCOL_VERSION",
    "ErrorFrame",
    "Frame",
    "MessageFrame",
    "WelcomeFrame",
    "error_frame",
    "field_errors",
    "message_frame",
    "parse_frame",
    "sent_name",
    "shown",
    "validate_message",
    "welcome_frame",
]

PROTOCOL_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class MessageFrame:
    """``[0, type_name, payload]``: one typed message (payload not yet validated)."""

    type_name: str
    payload: Any


@dataclass(frozen=True, slots=True)
class WelcomeFrame:
    """``[1, body]``: the server's greeting; ``body`` is a map (see docs/protocol.md)."""

    version: int
    connection_id: int
    messages: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """``[2, body]``: the peer rejected something we sent."""

    error: RemoteError


Frame = MessageFrame | WelcomeFrame | ErrorFrame


def message_frame(type_name: str, payload: Any) -> list[Any]:
    """Build a MESSAGE frame from a wire name and a JSON-compatible payload."""
    return [FrameKind.MESSAGE.value, type_name, payload]


def welcome_frame(
    connection_id: int,
    messages: TypeTable,
    extra: dict[str, Any] | None = None,
    version: int = PROTOCOL_VERSION,
) -> list[Any]:
    """Build the WELCOME frame a server sends first on every connection.

    Args:
        connection_id: The id the server gave this connection.
        messages: The server's registered message types.
        extra: More keys for the body (the sync layer adds its type tables).
        version: The protocol version the connection's subprotocol names.
    """
    body: dict[str, Any] = {
        "version": version,
        "connection_id": connection_id,
        "messages": [[e.type_id, e.name, e.schema_hash] for e in messages],
    }
    if extra:
        body.update(extra)
    return [FrameKind.WELCOME.value, body]


def error_frame(body: dict[str, Any]) -> list[Any]:
    """Build an ERROR frame from a :meth:`ProtocolError.to_wire` body."""
    return [FrameKind.ERROR.value, body]


def _parse_message(frame: list[Any]) -> Frame:
    if len(frame) != 3 or not isinstance(frame[1], str):
        raise FrameError("a MESSAGE frame must be [0, type_name: str, payload]")
    return MessageFrame(frame[1], frame[2])


def _parse_welcome(frame: list[Any]) -> Frame:
    if len(frame) != 2 or not isinstance(frame[1], dict):
        raise FrameError("a WELCOME frame must be [1, {version, connection_id, messages}]")
    body = frame[1]
    version, conn, messages = body.get("version"), body.get("connection_id"), body.get("messages")
    if not isinstance(version, int) or not isinstance(conn, int):
        raise FrameError("WELCOME needs integer 'version' and 'connection_id'", field="version")
    if not isinstance(messages, list) or not all(
        isinstance(m, list)
        and len(m) == 3
        and isinstance(m[0], int)
        and isinstance(m[1], str)
        and isinstance(m[2], str)
        for m in messages
    ):
        raise FrameError("WELCOME 'messages' must be a list of [id, name, hash]", field="messages")
    return WelcomeFrame(version, conn, {m[1]: m[2] for m in messages}, body)


def _parse_error(frame: list[Any]) -> Frame:
    if len(frame) != 2 or not isinstance(frame[1], dict):
        raise FrameError("an ERROR frame must be [2, {code, message, ...}]")
    body = frame[1]
    code = body.get("code")
    message = body.get("message")
    err = RemoteError(
        f"peer rejected a frame: {code}: {message}",
        remote_code=str(code),
        body=body,
        type_name=body.get("type") if isinstance(body.get("type"), str) else None,
        field=body.get("field") if isinstance(body.get("field"), str) else None,
        limit=body.get("limit") if isinstance(body.get("limit"), int | float) else None,
    )
    return ErrorFrame(err)


_PARSERS: dict[int, Callable[[list[Any]], Frame]] = {
    FrameKind.MESSAGE: _parse_message,
    FrameKind.WELCOME: _parse_welcome,
    FrameKind.ERROR: _parse_error,
}


def shown(value: Any, limit: int = 60) -> str:
    """A value a peer sent, for an error text or a log line, in the wire's notation (``null``,
    ``true``, ``"text"``, ``[1, 2]``, ``{"a": 1}``; never a Python repr), cut to ``limit``
    characters (a peer's 400-digit number or megabyte string is never rendered whole)."""
    text = _wire_text(value, limit + 1)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def sent_name(value: Any) -> Any:
    """A name a peer sent, to hand back in an error's fields: as it is if it is a string of
    at most 200 characters, else :func:`shown` of it (a megabyte name is never echoed)."""
    return value if isinstance(value, str) and len(value) <= 200 else shown(value)


def _wire_text(value: Any, budget: int) -> str:
    """``value`` in JSON-like text, at most about ``budget`` characters of it rendered."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return json.dumps(value[:budget])  # (ASCII escapes: safe for any log or frame)
    if isinstance(value, int):
        if value.bit_length() > 4 * budget:
            return f"{'-' if value < 0 else ''}an integer of {value.bit_length()} bits"
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (math.inf, -math.inf):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, bytes | bytearray):
        return f"binary data ({len(value)} bytes)"
    if isinstance(value, list | tuple | dict):
        opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
        parts: list[str] = []
        used = 1
        items = value.items() if isinstance(value, dict) else value
        for item in items:
            if used >= budget:
                parts.append("...")
                break
            if isinstance(value, dict):
                key, inner = item
                text = f"{_wire_text(key, budget - used)}: {_wire_text(inner, budget - used)}"
            else:
                text = _wire_text(item, budget - used)
            parts.append(text)
            used += len(text) + 2
        return opening + ", ".join(parts) + closing
    return type(value).__name__


def wire_type(value: Any) -> str:
    """What a decoded value is, in the wire's words (not Python's): ``"a map"``,
    ``"a string"``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bytes | bytearray):
        return "binary data"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list | tuple):
        return "an empty array" if not value else "an array"
    return "a value of another type"


def parse_frame(obj: Any) -> Frame:
    """Check the shape of a decoded frame and return it typed.

    Raises:
        FrameError: not an array, no integer kind, an unknown kind, or the wrong shape.
    """
    if not isinstance(obj, list) or not obj:
        raise FrameError(f"a frame must be a non-empty array [kind, ...], got {wire_type(obj)}")
    kind = obj[0]
    if not isinstance(kind, int) or isinstance(kind, bool):
        raise FrameError(f"frame kind must be an integer, got {wire_type(kind)}")
    parser = _PARSERS.get(kind)
    if parser is None:
        known = ", ".join(str(int(k)) for k in sorted(FrameKind))
        raise FrameError(f"unknown frame kind {kind}; the kinds are {known}")
    return parser(obj)


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as sent on the wire: ``{"loc": "a.b.0", "msg": ..., "type": ...}``."""
    return [
        {"loc": ".".join(str(part) for part in e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors()
    ]


def validate_message(
    table: TypeTable, frame: MessageFrame
) -> tuple[RegisteredType[Any], BaseModel]:
    """Look up a MESSAGE frame's type and validate its payload.

    Raises:
        UnknownMessageType: the name is not in ``table`` (the error lists the known names).
        MessageValidationError: the payload fails validation (the error names the field).
    """
    entry = table.by_name(frame.type_name)
    if entry is None:
        known = ", ".join(table.names()) or "none"
        raise UnknownMessageType(
            f"unknown message type {shown(frame.type_name)}; registered types: {known}",
            type_name=sent_name(frame.type_name),
        )
    try:
        value = from_wire(entry.model, frame.payload)
    except ValidationError as exc:
        errors = field_errors(exc)
        first = errors[0] if errors else {"loc": "", "msg": str(exc)}
        field = first["loc"] or None
        raise MessageValidationError(
            f"{entry.name} failed validation: {len(errors)} error(s); "
            f"first at {field or '<root>'}: {first['msg']}",
            type_name=entry.name,
            field=field,
            errors=errors,
        ) from exc
    return entry, value
