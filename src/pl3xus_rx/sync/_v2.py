"""The protocol-v2 connections of one engine: acknowledgement windows, BEACONs and how far
clients lag (each connection's own :class:`~pl3xus_rx.sync._window.Window`). No I/O."""

from __future__ import annotations

from ..exceptions import FrameError
from ..protocol import FrameKind
from ._settings import SyncSettings
from ._subs import Client
from ._window import Window
from ._wire import encode_frame

__all__ = ["Windows"]


class Windows:
    """The protocol-v2 connections of one engine: their windows, beacons and lag.

    Args:
        counters: The engine's counters (``catch_ups`` and ``beacons`` are added to).
    """

    def __init__(self, counters: dict[str, int]) -> None:
        self.v2: dict[int, Client] = {}
        self.acking: set[Client] = set()
        """The v2 connections that acknowledge: their window applies."""
        self._counters = counters

    def add(self, client: Client) -> None:
        """A v2 connection: give it a window."""
        client.window = Window()
        self.v2[client.id] = client

    def remove(self, client: Client) -> None:
        """A connection left."""
        self.v2.pop(client.id, None)
        self.acking.discard(client)

    def ack(self, client: Client, seq: int) -> None:
        """An ACK from ``client``.

        Raises:
            FrameError: not a v2 connection, or a sequence number it may not acknowledge.
        """
        window = client.window
        if window is None:
            raise FrameError("ACK is protocol v2: this connection speaks v1")
        if window.ack(seq, client.seq):
            self.acking.add(client)

    def judge(self, now: float, settings: SyncSettings) -> None:
        """Before a flush: which acknowledging connections are behind."""
        seconds, nbytes = settings.ack_window_seconds, settings.ack_window_bytes
        frames = settings.ack_window_frames
        oldest = now - seconds
        for client in self.acking:  # (every flush: Window.judge's rule, inlined)
            window = client.window
            assert window is not None
            unacked = window.unacked
            behind = bool(unacked) and (
                len(unacked) >= frames or unacked[0][1] < oldest or window.unacked_bytes > nbytes
            )
            if behind:
                if window.behind_since is None:
                    window.behind_since = now
            elif client.behind or window.behind_since is not None:
                window.behind_since = None
                self._counters["catch_ups"] += 1
            client.behind = behind

    def beacons(
        self, now: float, stamp: tuple[float, float], interval: float
    ) -> list[tuple[int, bytes | str]]:
        """BEACON frames for the v2 connections sent nothing for three quarters of
        ``interval`` (called at least every quarter of it: none goes longer than
        ``interval`` without a frame): ``(connection, frame)``. A connection behind its
        window gets none: it has frames to read, and they say how old they are."""
        as_of, age = stamp
        beacons: list[tuple[int, bytes | str]] = []
        for client in self.v2.values():
            window = client.window
            assert window is not None
            if client.behind or now - window.last_sent < 0.75 * interval:
                continue
            window.last_sent = now
            frame = [int(FrameKind.BEACON), client.seq, as_of, round(age, 6)]
            beacons.append((client.id, encode_frame(client.binary, frame)))
        self._counters["beacons"] += len(beacons)
        return beacons

    def overdue(self, now: float, limit: float) -> list[int]:
        """Connections behind their window for more than ``limit`` seconds."""
        found = []
        for client in self.acking:
            since = client.window.behind_since if client.window is not None else None
            if since is not None and now - since > limit:
                found.append(client.id)
        return found

    def lag(self, now: float) -> float:
        """The age of the oldest unacknowledged SYNC frame over every acknowledging
        connection (0 if none is in flight)."""
        oldest = min(
            (c.window.unacked[0][1] for c in self.acking if c.window and c.window.unacked),
            default=now,
        )
        return max(0.0, now - oldest)

    @property
    def behind(self) -> int:
        """Connections behind their window now."""
        return sum(1 for client in self.acking if client.behind)
