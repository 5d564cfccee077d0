"""The client's subscription frames, parsed: SUBSCRIBE, UNSUBSCRIBE, RESYNC, ACK. No I/O.

:func:`parse_subscription` checks a frame's shape and returns a small value per kind; what
the values mean (does the type exist, are the options valid) is the sync engine's
business.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..exceptions import FrameError
from ._vocab import FrameKind

__all__ = [
    "AckFrame",
    "ResyncFrame",
    "SubscribeFrame",
    "SubscriptionFrame",
    "UnsubscribeFrame",
    "parse_subscription",
]


class SubscribeFrame(NamedTuple):
    """``[3, sub_id, type_name, entity | null, options]``: watch a type (or one entity)."""

    sub_id: int
    type_name: str
    entity: Any
    options: Any


class UnsubscribeFrame(NamedTuple):
    """``[4, sub_id]``: stop watching."""

    sub_id: int


class ResyncFrame(NamedTuple):
    """``[6, sub_id | null]``: send a fresh snapshot (of one subscription, or all)."""

    sub_id: int | None


class AckFrame(NamedTuple):
    """``[19, seq]``: every SYNC up to ``seq`` was applied (protocol v2)."""

    seq: int


SubscriptionFrame = SubscribeFrame | UnsubscribeFrame | ResyncFrame | AckFrame


def parse_subscription(frame: list[Any]) -> SubscriptionFrame:
    """The subscription frame ``frame`` carries.

    Raises:
        FrameError: not a subscription frame, or its shape is wrong (named).
    """
    kind = frame[0] if frame else None
    if kind == FrameKind.SUBSCRIBE:
        if len(frame) != 5 or type(frame[1]) is not int or not isinstance(frame[2], str):
            raise FrameError(
                "a SUBSCRIBE frame must be [3, sub_id: int, type_name: str, "
                "entity: int | null, options: map]"
            )
        return SubscribeFrame(frame[1], frame[2], frame[3], frame[4])
    if kind == FrameKind.UNSUBSCRIBE:
        if len(frame) != 2 or type(frame[1]) is not int:
            raise FrameError("an UNSUBSCRIBE frame must be [4, sub_id: int]")
        return UnsubscribeFrame(frame[1])
    if kind == FrameKind.RESYNC:
        if len(frame) != 2 or not (frame[1] is None or type(frame[1]) is int):
            raise FrameError("a RESYNC frame must be [6, sub_id: int | null]")
        return ResyncFrame(frame[1])
    if kind == FrameKind.ACK:
        if len(frame) != 2 or type(frame[1]) is not int or frame[1] < 0:
            raise FrameError("an ACK frame must be [19, seq: int >= 0]")
        return AckFrame(frame[1])
    raise FrameError(f"frame kind {kind} is not sent by clients")
