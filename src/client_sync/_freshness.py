"""How old a client's data is (protocol v2), measured without trusting clock agreement.

Each v2 SYNC and BEACON says how old its data was when sent (``age``); the client adds the
time since it received the frame, on its own monotonic clock. No I/O.
"""

from __future__ import annotations

__all__ = ["Freshness"]

DEAD_AFTER_BEACONS = 3
"""A v2 link that brings nothing for this many ``as_of_interval``\\ s is taken as dead..."""
DEAD_AFTER_MIN = 2.0
"""... and for at least this many seconds: a server busy for a moment (a big snapshot, a
slow handler) is not a dead one, and all its clients reconnecting at once would make it
busier."""


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
        self._age: float | None = None  # the shown data's age when it arrived
        self._received = 0.0
        self.as_of: float | None = None
        """The server's wall-clock time the shown data is current as of."""

    def connected(self, interval: float | None, now: float) -> None:
        """A new link; ``interval`` from its welcome (``None``: v1, no ages)."""
        self.interval = interval
        self._heard = now

    @property
    def heard_at(self) -> float:
        """When the link last brought a frame (monotonic)."""
        return self._heard

    def heard(self, now: float) -> None:
        """A frame arrived."""
        self._heard = now

    def shown(self, age: float, received: float, as_of: float) -> None:
        """The data now shown came in a frame received at ``received``, ``age`` old then."""
        self._age, self._received, self.as_of = age, received, as_of

    def age(self, now: float) -> float | None:
        """Seconds the shown data is old at ``now`` (``None``: unknown, e.g. a v1 link)."""
        if self._age is None:
            return None
        return self._age + max(0.0, now - self._received)

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
