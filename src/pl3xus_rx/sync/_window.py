"""Acknowledgement windows (protocol v2): how far a connection may fall behind what it was
sent before the engine stops sending and merges instead. No I/O.

A v2 client acknowledges the SYNC frames it applied (``[19, seq]``). From its first ACK on,
its window holds the frames sent and not yet acknowledged; past the window (in time or in
bytes) the connection is *behind*: the engine sends it no SYNC, its subscriptions keep only
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
        last_as_of: The ``as_of`` of the last SYNC it was sent (wall clock).
    """

    acked: int = -1
    unacked: deque[tuple[int, float, int]] = field(default_factory=deque)
    unacked_bytes: int = 0
    behind_since: float | None = None
    last_sent: float = float("-inf")
    last_as_of: float = 0.0

    def sent(self, seq: int, now: float, nbytes: int, as_of: float) -> None:
        """SYNC ``seq`` of ``nbytes`` went out at ``now``, its data current as of ``as_of``."""
        self.last_sent = now
        self.last_as_of = as_of
        if self.acked >= 0:
            self.unacked.append((seq, now, nbytes))
            self.unacked_bytes += nbytes

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

    def judge(self, now: float, seconds: float, nbytes: int, frames: int) -> bool:
        """Whether the connection is behind at ``now`` (and note since when): its oldest
        frame in flight older than ``seconds``, or more than ``nbytes`` or ``frames`` in
        flight."""
        unacked = self.unacked
        behind = bool(unacked) and (
            len(unacked) >= frames or now - unacked[0][1] > seconds or self.unacked_bytes > nbytes
        )
        if not behind:
            self.behind_since = None
        elif self.behind_since is None:
            self.behind_since = now
        return behind
