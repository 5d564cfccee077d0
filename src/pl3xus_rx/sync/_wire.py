"""Sync frames: encoding items once and assembling per-connection frames from the bytes.

The sync layer's frames are SUBSCRIBE, UNSUBSCRIBE, SYNC and RESYNC (``FrameKind`` in
:mod:`pl3xus_rx.protocol`; see docs/protocol.md). A group is
``[sub_id, flags, upserts, removals, despawns]``; an upsert is ``[entity, [field values...]]``
(or ``[entity, {field index: value}]`` for a field delta).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from ..protocol import FrameKind, Status, json_encode, msgpack_encode

if TYPE_CHECKING:
    from ._subs import Client

__all__ = [
    "Group",
    "groups_json",
    "groups_msgpack",
    "send_frames",
    "encode_frame",
    "encode_reply",
    "encode_items",
    "msgpack_array_header",
]


def msgpack_array_header(n: int) -> bytes:
    """The msgpack header of an array of ``n`` elements."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


logger = logging.getLogger(__name__)

_pack = msgpack_encode
_HEADER3 = msgpack_array_header(3)
_HEADER5 = msgpack_array_header(5)
_KIND = _pack(int(FrameKind.SYNC))
_PREFIX3 = _HEADER3 + _KIND  # a v1 SYNC frame's first bytes, before its sequence number
_PREFIX5 = _HEADER5 + _KIND  # a v2 one's
_SYNC = int(FrameKind.SYNC)


Group = tuple[int, int, int, Any, list[int], list[int]]
"""``(sub_id, flags, upsert count, joined upsert encodings, removals, despawns)``."""


def groups_msgpack(groups: list[Group]) -> bytes:
    """The groups array of a SYNC frame in msgpack (shareable by connections whose groups
    are the same)."""
    parts = [msgpack_array_header(len(groups))]
    for sub_id, flags, count, joined, removals, despawns in groups:
        parts.append(_HEADER5)
        parts.append(_pack(sub_id))
        parts.append(_pack(flags))
        parts.append(msgpack_array_header(count))
        parts.append(joined)
        parts.append(_pack(removals))
        parts.append(_pack(despawns))
    return b"".join(parts)


def groups_json(groups: list[Group]) -> str:
    """The groups array of a SYNC frame in JSON."""
    body = ",".join(
        f"[{sub_id},{flags},[{joined}],{json.dumps(removals)},{json.dumps(despawns)}]"
        for sub_id, flags, _count, joined, removals, despawns in groups
    )
    return f"[{body}]"


def send_frames(
    out: dict[Client, list[Group]],
    send: Callable[[int, Any], object],
    now: float = 0.0,
    stamp: tuple[float, float] = (0.0, 0.0),
    *,
    chunks: bool = False,
) -> tuple[int, int]:
    """Hand each client of ``out`` its SYNC frame of groups (``send(connection, frame)``,
    one frame alive at a time), advancing its sequence number; returns the frames and
    bytes sent. Clients whose groups are the same objects (plain subscribers with the same
    sub id) share one encoding of them: each frame only adds its own sequence number (and
    for protocol v2, ``stamp``: the data's ``(as_of, age)``; the frame is noted in the
    client's window as sent at ``now``).

    With ``chunks``, a msgpack frame is handed over as a tuple of bytes whose concatenation
    is the frame (its head, the shared body, and for v2 the stamp), so that the body is not
    copied per client before the transport frames it; JSON frames are always one ``str``.
    """
    sent = nbytes = 0
    pack_seq = msgpack.Packer().pack  # (a sequence number is a plain int: no codec needed)
    bodies: dict[Any, bytes | str] = {}
    tails: tuple[bytes, str] | None = None  # the v2 stamp, encoded once per flush
    for client, groups in out.items():
        if not groups:
            continue
        client.seq += 1
        # (the group tuples are alive in ``out`` until the end: their ids are unique, and
        # the engine hands plain subscribers that share a group the same tuple)
        key: Any = id(groups[0]) if len(groups) == 1 else (*map(id, groups),)
        body = bodies.get(key)
        if body is None:
            body = bodies[key] = groups_msgpack(groups) if client.binary else groups_json(groups)
        window = client.window
        data: Any
        if isinstance(body, bytes):
            if window is None:
                head = _PREFIX3 + pack_seq(client.seq)
                size = len(head) + len(body)
                data = (head, body) if chunks else head + body
            else:
                if tails is None:
                    tails = _tails(stamp)
                head = _PREFIX5 + pack_seq(client.seq)
                size = len(head) + len(body) + len(tails[0])
                data = (head, body, tails[0]) if chunks else b"".join((head, body, tails[0]))
        else:
            if window is None:
                data = f"[{_SYNC},{client.seq},{body}]"
            else:
                if tails is None:
                    tails = _tails(stamp)
                data = f"[{_SYNC},{client.seq},{body}{tails[1]}"
            size = len(data)
        if window is not None:  # (Window.sent, inlined: once per v2 frame)
            window.last_sent = now
            if window.acked >= 0:
                window.unacked.append((client.seq, now, size))
                window.unacked_bytes += size
        send(client.id, data)
        sent += 1
        nbytes += size
    return sent, nbytes


def _tails(stamp: tuple[float, float]) -> tuple[bytes, str]:
    """A v2 SYNC frame's last two elements, ``as_of`` and ``age``: msgpack and JSON."""
    as_of, age = float(stamp[0]), float(stamp[1])
    return _pack(as_of) + _pack(age), f",{as_of!r},{age!r}]"


def encode_frame(binary: bool, frame: list[Any]) -> bytes | str:
    """A whole frame in msgpack (``binary``) or JSON.

    Raises:
        ValueError: a value cannot be encoded (a string with a lone surrogate: JSON text
            must be sendable as UTF-8).
        TypeError: a value of a type neither encoding has.
    """
    if binary:
        return msgpack_encode(frame)
    data = json_encode(frame)
    if not data.isascii():
        data.encode()  # raises UnicodeEncodeError (a ValueError) for a lone surrogate
    return data


def encode_reply(binary: bool, frame: list[Any]) -> bytes | str:
    """A REPLY frame; if its body cannot be encoded, an ``internal_error`` REPLY to the same
    request instead (logged), so that the command is still answered."""
    try:
        return encode_frame(binary, frame)
    except (ValueError, TypeError, OverflowError) as exc:
        logger.error("the answer to request %r could not be encoded: %s", frame[1], exc)
        return encode_frame(
            binary,
            [
                FrameKind.REPLY,
                frame[1],
                Status.INTERNAL_ERROR,
                f"the answer could not be encoded: {type(exc).__name__}",
                {},
            ],
        )


encode_item_msgpack = msgpack_encode
"""One upsert item in msgpack."""


def encode_item_json(item: list[Any] | tuple[Any, ...]) -> str:
    """One upsert item in JSON."""
    return json_encode(item)


def encode_items(binary: bool, items: list[tuple[Any, ...]]) -> bytes | str:
    """Upsert items encoded in one call: the concatenation :func:`encode_item_msgpack` (or
    :func:`encode_item_json`, comma-separated) would give item by item."""
    if binary:
        data = msgpack_encode(items)
        return data[len(msgpack_array_header(len(items))) :]
    return json_encode(items)[1:-1]
