"""How old a client's data is (protocol v2), measured without trusting clock agreement.

Each v2 SYNC and BEACON says the server's wall time its data is current as of (``as_of``)
and how old it already was when sent (``age``), so ``as_of + age`` is the server's clock at
sending. The gap between that and this client's monotonic clock when the frame is taken in
is the clocks' offset plus the frame's delay; the smallest gap seen lately is the best
estimate of the offset (a frame that waited — in the network, or in a loop that stalled —
only shows a larger gap). The age of what is shown is then the server's estimated time now
minus its ``as_of``: right even for frames that waited, and with no clock set anywhere.
No I/O.
"""

from __future__ import annotations

__all__ = ["Freshness"]

DEAD_AFTER_BEACONS = 3
"""A v2 link that brings nothing for this many ``as_of_interval``\\ s is taken as dead..."""
DEAD_AFTER_MIN = 2.0
"""... and for at least this many seconds: a server busy for a moment (a big snapshot, a
slow handler) is not a dead one, and all its clients reconnecting at once would make it
busier."""
OFFSET_SPAN = 30.0
"""Seconds of samples the offset estimate keeps (two spans at most: clocks drift)."""


class Freshness:
    """The age of one provider's data, and whether its link still lives.

    Args:
        stale_after: Seconds of age past which the data counts as stale (``None``: age
            never makes it stale).
    """

    def __init__(self, stale_after: float | None) -> None:
        self.stale_after = stale_after
        self.interval: float | None = None
        """The server's ``as_of_interval`` (``None``: not a v2 link)."""
        self._heard = 0.0
        self.as_of: float | None = None
        """The server's wall-clock time the shown data is current as of."""
        # the smallest (our clock - the server's) in this span and the one before
        self._offset: float | None = None
        self._earlier: float | None = None
        self._span_began = 0.0

    def connected(self, interval: float | None, now: float) -> None:
        """A new link; ``interval`` from its welcome (``None``: v1, no ages)."""
        self.interval = interval
        self._heard = now
        self._offset = self._earlier = None  # (another server: another clock)
        self._span_began = now

    @property
    def heard_at(self) -> float:
        """When the link last brought a frame (monotonic)."""
        return self._heard

    def heard(self, now: float) -> None:
        """A frame arrived."""
        self._heard = now

    def observe(self, received: float, as_of: float, age: float) -> None:
        """A v2 frame taken in at ``received`` (our monotonic clock) said ``as_of`` and
        ``age``: one sample of the clocks' offset."""
        gap = received - (as_of + age)
        if received - self._span_began > OFFSET_SPAN:
            self._earlier, self._offset = self._offset, None
            self._span_began = received
        if self._offset is None or gap < self._offset:
            self._offset = gap

    def shown(self, as_of: float) -> None:
        """The data now shown is current as of ``as_of`` (server wall time)."""
        self.as_of = as_of

    def age(self, now: float) -> float | None:
        """Seconds the shown data is old at ``now`` (``None``: unknown, e.g. a v1 link)."""
        offsets = [o for o in (self._offset, self._earlier) if o is not None]
        if self.as_of is None or not offsets:
            return None
        return max(0.0, now - min(offsets) - self.as_of)

    def too_old(self, now: float) -> bool:
        """Whether the data is older than ``stale_after``."""
        age = self.age(now)
        return self.stale_after is not None and age is not None and age > self.stale_after

    def dead(self, now: float) -> bool:
        """Whether a v2 link brought nothing for :data:`DEAD_AFTER_BEACONS` intervals."""
        interval = self.interval
        return interval is not None and now - self._heard > max(
            DEAD_AFTER_BEACONS * interval, DEAD_AFTER_MIN
        )
