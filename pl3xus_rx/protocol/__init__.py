"""The wire protocol: the whole vocabulary (frame kinds, SYNC flags, statuses, notices,
error codes, ``EntityControl``), frames, the msgpack and JSON codecs, type names and schema
hashes.

This package does no I/O; it turns values into frames and frames into values. The byte-level
specification is ``docs/protocol.md``.
"""

from ._codec import (
    JSON_SUBPROTOCOL,
    MSGPACK_SUBPROTOCOL,
    SUBPROTOCOLS,
    Codec,
    JsonCodec,
    MsgpackCodec,
    codec_for_subprotocol,
    json_encode,
    msgpack_encode,
)
from ._frames import (
    PROTOCOL_VERSION,
    ErrorFrame,
    Frame,
    MessageFrame,
    WelcomeFrame,
    error_frame,
    field_errors,
    message_frame,
    parse_frame,
    shown,
    validate_message,
    welcome_frame,
)
from ._types import RegisteredType, TypeTable, check_component, from_wire, schema_hash, to_wire
from ._vocab import (
    CLIENT_COMMAND_KINDS,
    FIRST_EXTENSION_KIND,
    ChangeKind,
    ControlAction,
    EntityControl,
    ErrorCode,
    FrameKind,
    NoticeKind,
    Status,
    SyncFlag,
    rejection_for,
)

__all__ = [
    "CLIENT_COMMAND_KINDS",
    "FIRST_EXTENSION_KIND",
    "ChangeKind",
    "ControlAction",
    "EntityControl",
    "ErrorCode",
    "NoticeKind",
    "Status",
    "SyncFlag",
    "JSON_SUBPROTOCOL",
    "MSGPACK_SUBPROTOCOL",
    "PROTOCOL_VERSION",
    "SUBPROTOCOLS",
    "Codec",
    "ErrorFrame",
    "Frame",
    "FrameKind",
    "JsonCodec",
    "MessageFrame",
    "MsgpackCodec",
    "RegisteredType",
    "TypeTable",
    "WelcomeFrame",
    "check_component",
    "codec_for_subprotocol",
    "error_frame",
    "field_errors",
    "from_wire",
    "json_encode",
    "message_frame",
    "msgpack_encode",
    "parse_frame",
    "rejection_for",
    "schema_hash",
    "shown",
    "to_wire",
    "validate_message",
    "welcome_frame",
]
