"""The client command frames, parsed: MUTATE, CONTROL, REQUEST, QUERY, SEND, SPAWN,
DESPAWN, REFRESH. No I/O.

:func:`parse_command` checks a frame's shape (its length and request id) and returns a
small value per kind (a named tuple: cheap on the hot path). What the values mean (does
the type exist, may this client touch the entity) is the command layer's business; here
only the shape is judged.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..exceptions import FrameError
from ._frames import shown, wire_type
from ._vocab import FrameKind, Status

__all__ = [
    "REQ_ID_MAX",
    "REQ_ID_MIN",
    "Command",
    "CommandFrameError",
    "ControlCommand",
    "DespawnCommand",
    "MutateCommand",
    "QueryCommand",
    "RefreshCommand",
    "RequestCommand",
    "SendCommand",
    "SpawnCommand",
    "parse_command",
    "undecodable_text_reply",
]


class CommandFrameError(FrameError):
    """A command frame with a bad shape. ``req_id`` is its request id when the frame had a
    usable one (then the answer is a ``validation_error`` REPLY whose error item is at
    ``loc``, the field at fault; else an ERROR frame)."""

    def __init__(self, message: str, req_id: int | None = None, loc: str = "") -> None:
        super().__init__(message)
        self.req_id = req_id
        self.loc = loc


REQ_ID_MIN, REQ_ID_MAX = -(2**63), 2**64 - 1
"""The request ids a REPLY can carry back in either encoding (msgpack's integer range)."""


class MutateCommand(NamedTuple):
    """``[7, req_id, type_name, entity, value]``: write a component of an entity."""

    req_id: int
    type_name: Any
    entity: Any
    value: Any


class ControlCommand(NamedTuple):
    """``[9, req_id, "take" | "release", entity]``: take or release control."""

    req_id: int
    action: Any
    entity: Any


class RequestCommand(NamedTuple):
    """``[11, req_id, type_name, entity | null, payload]``: a request with a response."""

    req_id: int
    type_name: Any
    entity: Any
    payload: Any


class QueryCommand(NamedTuple):
    """``[12, req_id, type_name, params]``: a read-only query."""

    req_id: int
    type_name: Any
    params: Any


class SendCommand(NamedTuple):
    """``[14, type_name, entity | null, payload]``: a one-way message (no request id; a
    refusal is a ``message_rejected`` notice)."""

    type_name: Any
    entity: Any
    payload: Any


class SpawnCommand(NamedTuple):
    """``[15, req_id, parent | null, {type_name: value, ...}]``: create an entity."""

    req_id: int
    parent: Any
    components: Any


class DespawnCommand(NamedTuple):
    """``[16, req_id, entity]``: remove an entity (and its descendants)."""

    req_id: int
    entity: Any


class RefreshCommand(NamedTuple):
    """``[17, req_id, credential]``: a new credential for the connection (a token)."""

    req_id: int
    credential: str


CREDENTIAL_MAX = 16 * 1024
"""The longest credential a REFRESH may carry, in characters."""

Command = (
    MutateCommand
    | ControlCommand
    | RequestCommand
    | QueryCommand
    | SendCommand
    | SpawnCommand
    | DespawnCommand
    | RefreshCommand
)

_SHAPES: dict[int, tuple[int, str]] = {
    FrameKind.MUTATE: (5, "[7, req_id, type_name, entity, value]"),
    FrameKind.CONTROL: (4, '[9, req_id, "take" | "release", entity]'),
    FrameKind.REQUEST: (5, "[11, req_id, type_name, entity | null, payload]"),
    FrameKind.QUERY: (4, "[12, req_id, type_name, params]"),
    FrameKind.SPAWN: (4, "[15, req_id, parent | null, {type_name: value, ...}]"),
    FrameKind.DESPAWN: (3, "[16, req_id, entity]"),
    FrameKind.REFRESH: (3, "[17, req_id, credential]"),
}


def parse_command(frame: list[Any]) -> Command:
    """The command a client frame carries.

    Raises:
        CommandFrameError: the frame is not a client command, or its shape is wrong (with
            ``req_id`` set when the frame had one to answer to).
    """
    kind = frame[0] if frame else None
    if kind == FrameKind.SEND:
        if len(frame) != 4:
            raise CommandFrameError("a SEND frame must be [14, type_name, entity | null, payload]")
        return SendCommand(frame[1], frame[2], frame[3])
    shape = _SHAPES.get(kind) if isinstance(kind, int) and not isinstance(kind, bool) else None
    if shape is None:
        raise CommandFrameError(f"frame kind {kind!r} is not a client command")
    req_id = frame[1] if len(frame) >= 2 else None
    if type(req_id) is not int or not REQ_ID_MIN <= req_id <= REQ_ID_MAX:  # (no boolean)
        raise CommandFrameError(
            f"a frame of kind {kind} must start [{kind}, req_id: int, ...] "
            f"(req_id within [-2**63, 2**64 - 1])"
        )
    if len(frame) != shape[0]:
        raise CommandFrameError(f"bad frame shape; expected {shape[1]}", req_id)
    if kind == FrameKind.MUTATE:
        _name(frame[2], req_id, "MUTATE", "component_name")
        _entity(frame[3], req_id, "MUTATE", "entity")
        return MutateCommand(req_id, frame[2], frame[3], frame[4])
    if kind == FrameKind.CONTROL:
        if frame[2] not in ("take", "release") or type(frame[2]) is not str:
            raise CommandFrameError(
                f'CONTROL action must be "take" or "release", got {shown(frame[2], 40)}',
                req_id,
                "action",
            )
        _entity(frame[3], req_id, "CONTROL", "entity")
        return ControlCommand(req_id, frame[2], frame[3])
    if kind == FrameKind.REQUEST:
        _name(frame[2], req_id, "REQUEST", "request_name")
        if frame[3] is not None:
            _entity(frame[3], req_id, "REQUEST", "entity", "an integer or null")
        return RequestCommand(req_id, frame[2], frame[3], frame[4])
    if kind == FrameKind.QUERY:
        _name(frame[2], req_id, "QUERY", "query_name")
        return QueryCommand(req_id, frame[2], frame[3])
    if kind == FrameKind.SPAWN:
        if frame[2] is not None:
            _entity(frame[2], req_id, "SPAWN", "parent", "an integer or null")
        if not isinstance(frame[3], dict):
            raise CommandFrameError(
                f"SPAWN components must be a map {{component_name: value}}, got "
                f"{wire_type(frame[3])}",
                req_id,
                "components",
            )
        return SpawnCommand(req_id, frame[2], frame[3])
    if kind == FrameKind.REFRESH:
        credential = frame[2]
        if not isinstance(credential, str) or not 0 < len(credential) <= CREDENTIAL_MAX:
            raise CommandFrameError(
                f"REFRESH credential must be a non-empty string of at most {CREDENTIAL_MAX} "
                f"characters, got {wire_type(credential)}"
                + (f" of {len(credential)}" if isinstance(credential, str) else ""),
                req_id,
                "credential",
            )
        return RefreshCommand(req_id, credential)
    _entity(frame[2], req_id, "DESPAWN", "entity")
    return DespawnCommand(req_id, frame[2])


_FIELDS: dict[int, tuple[str, ...]] = {
    FrameKind.MUTATE: ("kind", "req_id", "component_name", "entity", "value"),
    FrameKind.CONTROL: ("kind", "req_id", "action", "entity"),
    FrameKind.REQUEST: ("kind", "req_id", "request_name", "entity", "payload"),
    FrameKind.QUERY: ("kind", "req_id", "query_name", "params"),
    FrameKind.SPAWN: ("kind", "req_id", "parent", "components"),
    FrameKind.DESPAWN: ("kind", "req_id", "entity"),
    FrameKind.REFRESH: ("kind", "req_id", "credential"),
}


def undecodable_text_reply(frame: Any, where: str) -> list[Any] | None:
    """The ``validation_error`` REPLY to a command frame that decoded but holds text no
    encoding can carry (a lone UTF-16 surrogate at the dotted path ``where``, e.g.
    ``"4.name"``), naming the field; ``None`` if the frame is not a command with a usable
    request id (then the whole frame is refused with an ERROR)."""
    if not (isinstance(frame, list) and len(frame) >= 2 and type(frame[0]) is int):
        return None
    fields = _FIELDS.get(frame[0])
    req_id = frame[1]
    if fields is None or type(req_id) is not int or not REQ_ID_MIN <= req_id <= REQ_ID_MAX:
        return None
    head, _, rest = where.partition(".")
    index = int(head) if head.isdigit() else -1
    loc = fields[index] if 0 <= index < len(fields) else where
    if rest:
        loc = f"{loc}.{rest}"
    message = (
        f"{loc} holds a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape without its pair): "
        "that is not Unicode text, and no encoding could carry it on"
    )
    error = {"loc": loc, "msg": message, "type": "invalid_text"}
    return [FrameKind.REPLY, req_id, Status.VALIDATION_ERROR.value, message, {"errors": [error]}]


def _name(value: Any, req_id: int, kind: str, field: str) -> None:
    if not isinstance(value, str):
        raise CommandFrameError(
            f"{kind} {field} must be a string, got {wire_type(value)}", req_id, field
        )


def _entity(value: Any, req_id: int, kind: str, field: str, expected: str = "an integer") -> None:
    if type(value) is not int:  # (a boolean is no entity)
        raise CommandFrameError(
            f"{kind} {field} must be {expected} (an entity id), got {wire_type(value)}",
            req_id,
            field,
        )
