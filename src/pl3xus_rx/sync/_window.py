"""Acknowledgement windows (protocol v2): how far a connection may fall behind what it was
sent before the engine stops sending and merges instead. No I/O.

A v2 client acknowledges the SYNC frames it applied (``[19, seq]``). From its first ACK on,
its window holds the frames sent and not yet acknowledged; past the window (in time, bytes
or frames) the connection is *behind*: the engine sends it no SYNC, its subscriptions keep only
the latest of what changed, and once acknowledgements bring it back it gets one catch-up
frame. See docs/protocol.md, "Protocol v2".
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..exceptions import FrameError

__all__ = ["Window"]


@dataclass(slots=True)
class Window:
    """One v2 connection's frames in flight and how current its data is.

    Attributes:
        acked: The last SYNC sequence number acknowledged (``-1``: never; the window
            applies only once it has acknowledged).
        unacked: ``(seq, sent at, bytes)`` of each SYNC sent and not yet acknowledged.
        unacked_bytes: Their bytes.
        behind_since: When the connection fell behind (``None``: it is not).
        last_sent: When it was last sent a SYNC or a BEACON (engine clock).

    What is sent is noted by ``send_frames`` and who is behind judged by ``Windows.judge``,
    in their own loops: they run for every frame and every flush.
    """

    acked: int = -1
    unacked: deque[tuple[int, float, int]] = field(default_factory=deque)
    unacked_bytes: int = 0
    behind_since: float | None = None
    last_sent: float = float("-inf")

    def ack(self, seq: int, sent: int) -> bool:
        """The client applied every SYNC up to ``seq`` (``sent``: the last one sent);
        returns whether this was its first acknowledgement.

        Raises:
            FrameError: ``seq`` was not sent yet, or is below one already acknowledged.
        """
        if seq > sent:
            raise FrameError(f"ACK of SYNC {seq}, but only {sent} were sent on this connection")
        if seq < self.acked:
            raise FrameError(f"ACK of SYNC {seq} after an ACK of {self.acked}: it went backwards")
        first = self.acked < 0
        self.acked = seq
        unacked = self.unacked
        while unacked and unacked[0][0] <= seq:
            self.unacked_bytes -= unacked.popleft()[2]
        return first
