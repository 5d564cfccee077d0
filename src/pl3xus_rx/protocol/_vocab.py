"""The wire vocabulary, once: frame kinds, SYNC flags, change kinds, reply statuses, control
actions, notice kinds, error codes and the ``EntityControl`` component.

Server and client both import these names from :mod:`pl3xus_rx.protocol`; no other module
spells a frame kind or a status as a bare number or string. ``docs/protocol.md`` documents
each value, and a test checks its tables against :class:`FrameKind`.
"""

from __future__ import annotations

import enum
from enum import IntEnum, IntFlag, StrEnum
from typing import Any, Final

from pydantic import BaseModel, Field

from ..exceptions import (
    CommandRejected,
    Forbidden,
    HandlerTimeout,
    InvalidValue,
    NotFound,
    ServerError,
)

__all__ = [
    "CLIENT_COMMAND_KINDS",
    "FIRST_EXTENSION_KIND",
    "ChangeKind",
    "ControlAction",
    "EntityControl",
    "ErrorCode",
    "FrameKind",
    "NoticeKind",
    "Status",
    "SyncFlag",
    "rejection_for",
]


class FrameKind(IntEnum):
    """The first element of every frame: what the rest of the array means."""

    MESSAGE = 0
    """``[0, type_name, payload]``: a typed message (both ways)."""
    WELCOME = 1
    """``[1, body]``: the server's greeting, first on every connection."""
    ERROR = 2
    """``[2, body]``: the peer rejected something we sent (both ways)."""
    SUBSCRIBE = 3
    """``[3, sub_id, type_name, entity | null, options]`` (client to server)."""
    UNSUBSCRIBE = 4
    """``[4, sub_id]`` (client to server)."""
    SYNC = 5
    """``[5, seq, [group, ...]]`` (server to client)."""
    RESYNC = 6
    """``[6, sub_id | null]``: send fresh snapshots (client to server)."""
    MUTATE = 7
    """``[7, req_id, component_name, entity, value]`` (client to server)."""
    REPLY = 8
    """``[8, req_id, status, message, body]``: the one answer to a command."""
    CONTROL = 9
    """``[9, req_id, "take" | "release", entity]`` (client to server)."""
    NOTICE = 10
    """``[10, kind, body]``: something the server tells a client unasked."""
    REQUEST = 11
    """``[11, req_id, request_name, entity | null, payload]`` (client to server)."""
    QUERY = 12
    """``[12, req_id, query_name, params]`` (client to server)."""
    INVALIDATE = 13
    """``[13, query_name, keys | null]``: refetch cached answers (server to client)."""
    SEND = 14
    """``[14, message_name, entity | null, payload]``: a one-way message (client to server)."""
    SPAWN = 15
    """``[15, req_id, parent | null, {component_name: value, ...}]`` (client to server)."""
    DESPAWN = 16
    """``[16, req_id, entity]`` (client to server)."""
    REFRESH = 17
    """``[17, req_id, credential]``: a new credential for this connection, answered with a
    REPLY (client to server; the network layer takes it)."""
    BEACON = 18
    """``[18, seq, as_of, age]``: nothing new since SYNC ``seq``; what this connection was
    sent is current as of ``as_of`` (protocol v2, server to client, on idle connections)."""
    ACK = 19
    """``[19, seq]``: the client has applied every SYNC up to ``seq`` (protocol v2, client
    to server; opt-in)."""


FIRST_EXTENSION_KIND: Final = FrameKind.SUBSCRIBE
"""Kinds from here on belong to the sync and command layers, not the network layer."""

CLIENT_COMMAND_KINDS: Final = frozenset(
    (
        FrameKind.MUTATE,
        FrameKind.CONTROL,
        FrameKind.REQUEST,
        FrameKind.QUERY,
        FrameKind.SEND,
        FrameKind.SPAWN,
        FrameKind.DESPAWN,
    )
)
"""Kinds a client sends to the command layer."""


class CloseCode(IntEnum):
    """The project's own WebSocket close codes (the 4000 range is the application's)."""

    CREDENTIAL_EXPIRED = 4001
    """The connection's credential expired (plus ``NetworkSettings.credential_grace``) and
    was not refreshed: reconnect with a new one."""
    DISCONNECTED = 4003
    """The server closed every connection of an identity (``SyncServer.disconnect``: a
    revoked user, for instance); the reason says why. Reconnecting may be refused."""
    MOVED = 4004
    """The server is draining or moving this client (``SyncServer.drain``): reconnect at
    once, to another URL when there are several. The commands it had in flight were
    answered before the close (within the drain's timeout)."""


class SyncFlag(IntFlag):
    """The ``flags`` of a SYNC group (live changes have none)."""

    SNAPSHOT = 1
    """The group is (part of) a snapshot: the client reconciles its view against it."""
    COMPLETE = 2
    """The snapshot is complete: every entity the subscription covers has been sent."""
    CONTINUED = 4
    """This snapshot group continues one sent in an earlier frame (big snapshots go out in
    parts, ``SyncSettings.max_snapshot_items`` entities a flush)."""


class ChangeKind(enum.Enum):
    """What happened to one component of one entity (in the World, or in a client's view)."""

    INSERTED = "inserted"
    """The entity did not have the component; now it does."""
    UPDATED = "updated"
    """The component's value changed."""
    REMOVED = "removed"
    """The component was removed; the entity lives on."""
    DESPAWNED = "despawned"
    """The whole entity was despawned (so its components went with it)."""


class Status(StrEnum):
    """The outcome of a command, as sent in its REPLY."""

    OK = "ok"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    VALIDATION_ERROR = "validation_error"
    INTERNAL_ERROR = "internal_error"
    TIMEOUT = "timeout"
    """The handler did not finish within ``SyncSettings.handler_timeout``."""


_REJECTIONS: dict[str, type[CommandRejected]] = {
    Status.FORBIDDEN: Forbidden,
    Status.NOT_FOUND: NotFound,
    Status.VALIDATION_ERROR: InvalidValue,
    Status.INTERNAL_ERROR: ServerError,
    Status.TIMEOUT: HandlerTimeout,
}


def rejection_for(
    status: str, message: str, errors: list[dict[str, Any]] | None = None
) -> CommandRejected:
    """The :class:`~pl3xus_rx.CommandRejected` subclass that matches a REPLY status (an
    unknown status gives the base class), with the server's message and field errors."""
    return _REJECTIONS.get(status, CommandRejected)(message, errors=errors)


class ControlAction(StrEnum):
    """The action of a CONTROL frame."""

    TAKE = "take"
    RELEASE = "release"


class NoticeKind(StrEnum):
    """The kind of a NOTICE frame."""

    CONTROL_REQUESTED = "control_requested"
    """To the holder: someone else asked for control (``{"entity", "by"}``)."""
    CONTROL_RELEASED = "control_released"
    """To the former holder: control expired (``{"entity", "reason"}``)."""
    MESSAGE_REJECTED = "message_rejected"
    """A SEND was refused (``{"type", "entity", "status", "reason", "errors"?}``)."""
    NOTIFICATION = "notification"
    """From the server's code, for people: ``{"level", "text", "context"}`` (a toast)."""


class NotificationLevel(StrEnum):
    """How much a server notification matters."""

    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"


class ErrorCode(StrEnum):
    """The ``code`` of an ERROR frame's body (each names a :class:`ProtocolError` class, or
    a limit)."""

    PROTOCOL_ERROR = "protocol_error"
    DECODE_ERROR = "decode_error"
    WRONG_FRAME_TYPE = "wrong_frame_type"
    BAD_FRAME = "bad_frame"
    UNKNOWN_TYPE = "unknown_type"
    VALIDATION_ERROR = "validation_error"
    RATE_LIMITED = "rate_limited"
    UNKNOWN_COMPONENT = "unknown_component"
    SUBSCRIPTION_ERROR = "subscription_error"
    REMOTE_ERROR = "remote_error"
    """Not sent: the code of a :class:`RemoteError` raised locally from a peer's ERROR."""


class EntityControl(BaseModel):
    """Which connection controls an entity (``holder``; ``None``: nobody), and for which
    authenticated identity (``by``: its name, shared by its connections; ``None`` for an
    anonymous client). Synced like any component, but never writable by a client: control
    changes only through take/release."""

    holder: int | None = None
    by: str | None = None


LAST_MESSAGE_QUERY: Final = "pl3xus.last_message"
"""The built-in query a client asks for the last message of a type the server published."""


REPLAY_REQUEST: Final = "pl3xus.replay"
"""The built-in request a client of a replay server (``pl3xus-rx replay``) plays, pauses,
seeks and sets the speed with (:class:`ReplayControl`, answered with :class:`ReplayState`);
only a replay server answers it, and its WELCOME has a ``replay`` key."""


class ReplayControl(BaseModel):
    """Parameters of ``pl3xus.replay``: ``action`` is ``play``, ``pause``, ``seek`` (to
    ``at``, recording time), ``speed`` (to ``speed``, 0.01 to 1000) or ``status``."""

    action: str
    at: float | None = Field(None, allow_inf_nan=False)
    speed: float | None = Field(None, allow_inf_nan=False)


class ReplayState(BaseModel):
    """Where a replay is: the instant shown (``position``), the recording's ``start`` and
    ``end`` (recording time: the authority's wall-clock seconds), whether it is playing and
    at what speed."""

    position: float
    start: float
    end: float
    playing: bool
    speed: float


class LastMessageQuery(BaseModel):
    """Parameters of ``pl3xus.last_message``: the message type's wire name."""

    type: str


class LastMessage(BaseModel):
    """The answer: the last published message of that type (JSON form), or ``None``."""

    value: dict[str, Any] | None = None


HISTORY_QUERY: Final = "pl3xus.history"
"""The built-in query a client asks for the past of a type that keeps history."""


class HistoryQuery(BaseModel):
    """Parameters of ``pl3xus.history``.

    Attributes:
        type: The component type's wire name.
        entity: One entity, or ``None`` for every entity of the type the identity sees.
        field: One field (its values only), or ``None`` for every kept column.
        seconds: How far back from the latest point (at most what the type keeps).
        cursor: The previous part's ``cursor``, for the next part (``None``: the first).
    """

    type: str
    entity: int | None = None
    field: str | None = None
    seconds: float = 600.0
    cursor: list[float] | None = Field(default=None, max_length=4)


class HistoryPart(BaseModel):
    """One part of the answer to ``pl3xus.history``.

    Attributes:
        type: The component type's wire name.
        fields: The value columns, in order (``whole``: the type's fields, and each value
            is a wire field list in that order).
        whole: Each value is a whole value (a wire field list).
        since: The start of the range asked (the authority's flush time, seconds since
            the epoch).
        until: Its end: the latest flush kept when the first part was answered.
        kept_since: Since when the server keeps every point of the type (older ones
            went for its ``seconds`` or for the budget; ``None``: it keeps none).
        cut_by_budget: The byte budget dropped points inside the range asked.
        series: ``[entity, [t, ...], [value, ...] per column]`` per entity, by entity id.
        cursor: Ask again with it for the next part; ``None``: this was the last one.
    """

    type: str
    fields: list[str]
    whole: bool = False
    since: float
    until: float
    kept_since: float | None = None
    cut_by_budget: bool = False
    series: list[list[Any]] = Field(default_factory=list)
    cursor: list[float] | None = None
