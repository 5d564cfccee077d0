"""The one exception family of ``pl3xus_rx``.

Every error the library raises on purpose derives from :class:`Pl3xusError`. Misuse errors
also inherit the matching builtin, so ordinary ``except ValueError`` clauses keep working::

    Pl3xusError
    ├── SettingsError (ValueError)         a setting is out of range; names the field
    ├── NotRegistered (TypeError)          a type was used without being registered
    ├── DuplicateRegistration (ValueError) two types under one name
    ├── UnsupportedModel (TypeError)       a model that cannot be used where it was given
    ├── NetworkStateError (RuntimeError)   a call in the wrong state (names the state)
    ├── ConnectionNotFound (KeyError)      no live connection has this id
    ├── EntityNotFound (KeyError)          no such entity in the World (or despawned)
    ├── ValueTooLarge (ValueError)         a synced value encodes to more than its limit
    ├── BindError (OSError)                the listen address could not be bound
    ├── ConnectFailed (ConnectionError)    connect() could not reach or greet the peer
    ├── ConnectionClosed                   the peer went away while we used the connection
    │   └── ConnectionLost                 the link dropped while a command was in flight
    ├── SchemaMismatch                     both ends name a type but disagree on its schema
    ├── SequenceGap                        a SYNC frame went missing (the client resyncs)
    ├── AuthenticationFailed               an authenticator refused a handshake (401 / 403)
    ├── CommandTimeout (TimeoutError)      no answer to a command in time
    ├── CommandRejected                    the server refused a mutation, request or query
    │   ├── Forbidden                      not allowed (read-only, policy, control)
    │   ├── NotFound                       no such entity or type
    │   ├── InvalidValue (ValueError)      the value failed validation (names the field)
    │   ├── ServerError                    the server's handler failed
    │   └── HandlerTimeout                 the server's handler did not finish in time
    ├── ChannelFull                        a connection's outbound channel was full
    ├── RateLimited                        a peer sent faster than its rate limit
    ├── StateError                         the World's state file could not be used
    │   ├── StateUnreadable                not a state file, truncated, corrupt, newer format
    │   ├── StateSchemaChanged             saved types changed shape (named, with fields)
    │   ├── StateRestoreFailed (ValueError) a saved value does not fit its type any more
    │   ├── StateWriteFailed (OSError)     a save could not be written (disk full, read-only)
    │   └── StateConflict (RuntimeError)   a state call at the wrong time, or a gateway
    ├── RecordingError                     a recording could not be written or read
    │   └── RecordingUnreadable (ValueError) not a recording, or a newer format
    └── ProtocolError                      bad data arrived from the network
        ├── DecodeError                    bytes that are not a frame (undecodable, truncated)
        ├── FrameError                     a decodable frame of the wrong shape or kind
        ├── UnknownMessageType             a message type this end never registered
        ├── MessageValidationError         a payload that fails its model's validation
        ├── WrongFrameType                 text where binary was negotiated, or the reverse
        ├── SubscriptionError              a SUBSCRIBE or RESYNC that cannot be served
        │   └── UnknownComponent           it named a component the server does not sync
        └── RemoteError                    the peer reported that our frame was bad

Each ``ProtocolError`` subclass's ``code`` is one of :class:`pl3xus_rx.protocol.ErrorCode`.

Foreign exceptions (``websockets``, ``msgpack``, ``pydantic``) are mapped at the boundary and
chained with ``raise ... from exc`` so the cause stays visible.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationFailed",
    "BindError",
    "CommandRejected",
    "CommandTimeout",
    "ConnectionLost",
    "Forbidden",
    "HandlerTimeout",
    "InvalidValue",
    "NotFound",
    "ServerError",
    "ChannelFull",
    "ConnectFailed",
    "ConnectionClosed",
    "ConnectionNotFound",
    "DecodeError",
    "DuplicateRegistration",
    "EntityNotFound",
    "FrameError",
    "MessageValidationError",
    "NetworkStateError",
    "NotRegistered",
    "Pl3xusError",
    "ProtocolError",
    "RateLimited",
    "RecordingError",
    "RecordingUnreadable",
    "RemoteError",
    "SchemaMismatch",
    "SequenceGap",
    "SettingsError",
    "StateConflict",
    "StateError",
    "StateRestoreFailed",
    "StateSchemaChanged",
    "StateUnreadable",
    "StateWriteFailed",
    "SubscriptionError",
    "UnknownComponent",
    "UnknownMessageType",
    "UnsupportedModel",
    "ValueTooLarge",
    "WrongFrameType",
]


class Pl3xusError(Exception):
    """Root of every error raised by pl3xus_rx."""


class SettingsError(Pl3xusError, ValueError):
    """A settings object was given an invalid value; the message names the field."""


class NotRegistered(Pl3xusError, TypeError):
    """A type was used that was never registered; the message says how to register it."""


class DuplicateRegistration(Pl3xusError, ValueError):
    """Two different types were registered under one wire name."""


class UnsupportedModel(Pl3xusError, TypeError):
    """A model cannot be used where it was given (e.g. a ``RootModel`` as a synced
    component); the message says why and what to use instead."""


class NetworkStateError(Pl3xusError, RuntimeError):
    """A call was made in a state that does not allow it; the message names the state."""


class ConnectionNotFound(Pl3xusError, KeyError):
    """No live connection has the given id."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "connection not found"


class EntityNotFound(Pl3xusError, KeyError):
    """The entity does not exist (never spawned, or despawned)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "entity not found"


class ValueTooLarge(Pl3xusError, ValueError):
    """A value of a synced component encodes to more bytes than
    ``SyncSettings.max_value_bytes``: refused where it is stored (``world.insert``,
    ``spawn``, ``modify``), so that no client ever gets a frame too big for it. The message
    names the type, the size and the limit."""


class SequenceGap(Pl3xusError):
    """A SYNC frame's sequence number skipped; the replica asks for fresh snapshots."""


class AuthenticationFailed(Pl3xusError):
    """Raised by an authenticator to refuse a handshake.

    Attributes:
        reason: Why, sent to the client in the HTTP body (say what is missing, never a
            secret).
        status: 401 (no or expired credentials: the client may try again with some) or 403
            (credentials refused).
    """

    def __init__(self, reason: str, *, status: int = 401) -> None:
        if status not in (401, 403):
            raise ValueError(f"status must be 401 or 403, got {status}")
        super().__init__(reason)
        self.reason = reason
        self.status = status


class BindError(Pl3xusError, OSError):
    """The listen address could not be bound; the message names the address and OS error."""


class ConnectFailed(Pl3xusError, ConnectionError):
    """``connect()`` could not reach the peer or did not receive its welcome."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status the server refused the handshake with (401: no or a bad
        credential, 403...), or ``None`` when it did not answer with one."""


class ConnectionClosed(Pl3xusError):
    """The connection closed while it was in use.

    Attributes:
        code: The WebSocket close code, when known.
        reason: The close reason, when known.
    """

    def __init__(self, message: str, *, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class ConnectionLost(ConnectionClosed):
    """The connection dropped while a command was in flight. The command may or may not
    have been applied; it is never re-sent (so never applied twice)."""


class CommandTimeout(Pl3xusError, TimeoutError):
    """No answer to a command within its timeout. The server may still apply it."""


class CommandRejected(Pl3xusError):
    """The server answered a mutation, request or query with an error status.

    Attributes:
        status: The status string (``"forbidden"``, ``"not_found"``, ...).
        message: The server's explanation.
        errors: Field errors (for ``validation_error``): ``loc``, ``msg``, ``type`` each.
    """

    status = "error"

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(f"{self.status}: {message}")
        self.message = message
        self.errors = errors or []


class Forbidden(CommandRejected):
    """Not allowed: read-only component, entity policy, or control held by someone else.
    A server handler or policy raises ``Forbidden("door open")`` to refuse in its words."""

    status = "forbidden"


class NotFound(CommandRejected):
    """The entity, component type, request type or query type does not exist (a server
    handler raises it for what it does not know: ``NotFound("no program 7")``)."""

    status = "not_found"


class InvalidValue(CommandRejected, ValueError):
    """The value failed validation on the server; ``errors`` names the fields.

    A server handler or policy raises it to refuse a value in its own words:
    ``InvalidValue("must stay below 2 m/s", field="speed")``.
    """

    status = "validation_error"

    def __init__(
        self,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        field: str | None = None,
    ) -> None:
        if errors is None and field is not None:
            errors = [{"loc": field, "msg": message, "type": "value_error"}]
        super().__init__(message, errors=errors)


class ServerError(CommandRejected):
    """The server's handler raised; the server itself carries on."""

    status = "internal_error"


class HandlerTimeout(CommandRejected):
    """The server's handler did not finish within its ``handler_timeout`` (it was cancelled;
    what it did before that stands)."""

    status = "timeout"


class SchemaMismatch(Pl3xusError):
    """The two ends disagree on a type: one lacks it, or its schema hash differs.

    Attributes:
        type_name: The wire name of the type.
        local_hash: This end's schema hash, or ``None`` if this end lacks the type.
        remote_hash: The peer's schema hash, or ``None`` if the peer lacks the type.
        detail: What differs, where it can be told (a component's field names).
    """

    def __init__(
        self,
        type_name: str,
        local_hash: str | None,
        remote_hash: str | None,
        detail: str | None = None,
    ) -> None:
        if remote_hash is None:
            text = f"{type_name} is registered here but the peer does not know it"
        elif local_hash is None:
            text = f"the peer registers {type_name} but this end does not"
        else:
            text = (
                f"{type_name} has schema hash {local_hash} here but {remote_hash} on the peer; "
                "both ends must use the same model definition"
            )
        if detail:
            text = f"{text} ({detail})"
        super().__init__(text)
        self.detail = detail
        self.type_name = type_name
        self.local_hash = local_hash
        self.remote_hash = remote_hash


class ChannelFull(Pl3xusError):
    """A connection's bounded outbound channel was full when a frame was sent to it."""


class RateLimited(Pl3xusError):
    """A peer sent frames faster than its configured rate limit."""


class StateError(Pl3xusError):
    """A server's state file (``SyncServer(state=PATH)``) could not be loaded or saved. The
    message names the file, what is wrong and what to do.

    Attributes:
        path: The state file.
    """

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class StateUnreadable(StateError):
    """The file is not a state file this version can read: not a state file at all (another
    application's, or a wrong path), cut short, corrupt (its checksum differs), or written
    in a newer format. Nothing was loaded; the file was left as it is."""


class StateSchemaChanged(StateError):
    """Types in the state file changed shape since it was written (fields added, removed
    or retyped), or are no longer synced. The server does not start until each is migrated
    (``server.migrate_state(name[, fn])``) or dropped (``server.drop_state(name)``).

    Attributes:
        changes: Type name -> what differs (its fields, in words).
    """

    def __init__(self, message: str, *, path: str = "", changes: dict[str, str]) -> None:
        super().__init__(message, path=path)
        self.changes = changes


class StateRestoreFailed(StateError, ValueError):
    """A saved value does not fit its type any more (its validation, a migration or the
    size limit refused it); the message names the type, the entity and the field. Nothing
    was loaded."""


class StateWriteFailed(StateError, OSError):
    """A save could not be written (no space left, a read-only or missing folder, no
    permission): the message names the file, the step and the system's error. The file
    written before is left whole."""


class StateConflict(StateError, RuntimeError):
    """A state call that cannot be made now: loading into a World that holds entities
    already, loading twice, a second server on the same state file, or a state file on a
    gateway (whose World is a replica of its authority's: only the authority persists)."""


class RecordingError(Pl3xusError):
    """A recording (``SyncServer(record=...)``, ``pl3xus-rx record``, ``pl3xus-rx replay``)
    could not be written or read. The message names the file and what is wrong.

    Attributes:
        path: The recording file (empty when not known).
    """

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class RecordingUnreadable(RecordingError, ValueError):
    """Not a recording this version reads: another kind of file, written in a newer format,
    or unreadable before its first keyframe. (A file cut short while it was written is
    read up to its last whole record; that is not an error.)"""


class ProtocolError(Pl3xusError):
    """Bad data arrived from the network.

    Attributes:
        code: A short machine-readable code, also sent in error frames (e.g.
            ``"validation_error"``).
        type_name: The message type concerned, if any.
        field: The offending field (dotted path), if any.
        limit: The limit that was exceeded, if any.
    """

    code = "protocol_error"

    def __init__(
        self,
        message: str,
        *,
        type_name: str | None = None,
        field: str | None = None,
        limit: int | float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.type_name = type_name
        self.field = field
        self.limit = limit

    def to_wire(self) -> dict[str, Any]:
        """The body of the error frame that reports this error to the peer."""
        return {
            "code": self.code,
            "message": self.message,
            "type": self.type_name,
            "field": self.field,
            "limit": self.limit,
        }


class DecodeError(ProtocolError):
    """Bytes that could not be decoded as a frame (not msgpack/JSON, or truncated)."""

    code = "decode_error"


class FrameError(ProtocolError):
    """A decodable frame whose shape or kind is not part of the protocol."""

    code = "bad_frame"


class UnknownMessageType(ProtocolError):
    """A message named a type that this end never registered."""

    code = "unknown_type"


class MessageValidationError(ProtocolError):
    """A message payload failed its model's validation.

    Attributes:
        errors: pydantic's error list (``loc``, ``msg``, ``type`` per error).
    """

    code = "validation_error"

    def __init__(
        self,
        message: str,
        *,
        type_name: str | None = None,
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, type_name=type_name, field=field)
        self.errors = errors or []

    def to_wire(self) -> dict[str, Any]:
        """The body of the error frame, with the per-field errors."""
        body = super().to_wire()
        body["errors"] = self.errors
        return body


class WrongFrameType(ProtocolError):
    """A text frame arrived where binary was negotiated, or the reverse."""

    code = "wrong_frame_type"


class SubscriptionError(ProtocolError):
    """A SUBSCRIBE (or RESYNC) that cannot be served; the error frame names the subscription.

    Attributes:
        subscription: The client's subscription id.
    """

    code = "subscription_error"

    def __init__(
        self,
        message: str,
        *,
        subscription: int | None,
        type_name: str | None = None,
        field: str | None = None,
        limit: int | float | None = None,
    ) -> None:
        super().__init__(message, type_name=type_name, field=field, limit=limit)
        self.subscription = subscription

    def to_wire(self) -> dict[str, Any]:
        """The error frame body, with the subscription id."""
        body = super().to_wire()
        body["subscription"] = self.subscription
        return body


class UnknownComponent(SubscriptionError):
    """A subscription named a component type the server does not sync."""

    code = "unknown_component"


class RemoteError(ProtocolError):
    """The peer sent an error frame: something we sent it was rejected.

    Attributes:
        remote_code: The ``code`` the peer put in its error frame (e.g. ``"unknown_type"``).
        body: The whole error-frame body as received.
    """

    code = "remote_error"

    def __init__(
        self,
        message: str,
        *,
        remote_code: str,
        body: dict[str, Any],
        type_name: str | None = None,
        field: str | None = None,
        limit: int | float | None = None,
    ) -> None:
        super().__init__(message, type_name=type_name, field=field, limit=limit)
        self.remote_code = remote_code
        self.body = body
