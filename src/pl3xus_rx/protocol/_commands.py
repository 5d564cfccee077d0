"""The client command frames, parsed: MUTATE, CONTROL, REQUEST, QUERY, SEND, SPAWN,
DESPAWN. No I/O.

:func:`parse_command` checks a frame's shape (its length and request id) and returns a
small value per kind (a named tuple: cheap on the hot path). What the values mean (does
the type exist, may this client touch the entity) is the command layer's business; here
only the shape is judged.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..exceptions import FrameError
from ._vocab import FrameKind

__all__ = [
    "Command",
    "CommandFrameError",
    "ControlCommand",
    "DespawnCommand",
    "MutateCommand",
    "QueryCommand",
    "RequestCommand",
    "SendCommand",
    "SpawnCommand",
    "parse_command",
]


class CommandFrameError(FrameError):
    """A command frame with a bad shape. ``req_id`` is its request id when the frame had a
    usable one (then the answer is a ``validation_error`` REPLY, else an ERROR frame)."""

    def __init__(self, message: str, req_id: int | None = None) -> None:
        super().__init__(message)
        self.req_id = req_id


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


Command = (
    MutateCommand
    | ControlCommand
    | RequestCommand
    | QueryCommand
    | SendCommand
    | SpawnCommand
    | DespawnCommand
)

_SHAPES: dict[int, tuple[int, str]] = {
    FrameKind.MUTATE: (5, "[7, req_id, type_name, entity, value]"),
    FrameKind.CONTROL: (4, '[9, req_id, "take" | "release", entity]'),
    FrameKind.REQUEST: (5, "[11, req_id, type_name, entity | null, payload]"),
    FrameKind.QUERY: (4, "[12, req_id, type_name, params]"),
    FrameKind.SPAWN: (4, "[15, req_id, parent | null, {type_name: value, ...}]"),
    FrameKind.DESPAWN: (3, "[16, req_id, entity]"),
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
    if len(frame) < 2 or type(frame[1]) is not int:  # (a boolean is not an id)
        raise CommandFrameError(f"a frame of kind {kind} must start [{kind}, req_id: int, ...]")
    req_id: int = frame[1]
    if len(frame) != shape[0]:
        raise CommandFrameError(f"bad frame shape; expected {shape[1]}", req_id)
    if kind == FrameKind.MUTATE:
        return MutateCommand(req_id, frame[2], frame[3], frame[4])
    if kind == FrameKind.CONTROL:
        return ControlCommand(req_id, frame[2], frame[3])
    if kind == FrameKind.REQUEST:
        return RequestCommand(req_id, frame[2], frame[3], frame[4])
    if kind == FrameKind.QUERY:
        return QueryCommand(req_id, frame[2], frame[3])
    if kind == FrameKind.SPAWN:
        return SpawnCommand(req_id, frame[2], frame[3])
    return DespawnCommand(req_id, frame[2])
