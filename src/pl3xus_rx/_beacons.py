"""The shell that keeps protocol-v2 clients informed while nothing changes: every quarter
``as_of_interval`` it hands the engine's BEACONs to the connections, and closes those
behind their acknowledgement window for too long (``SyncEngine.beacons`` and
``overdue`` decide; this only schedules and sends)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from .exceptions import ConnectionNotFound
from .net import Network
from .net._events import ConnectionId
from .sync import SyncEngine

__all__ = ["Beacons"]

logger = logging.getLogger(__name__)


class Beacons:
    """Beacons and overdue closes for one server.

    Args:
        engine: Decides who gets a beacon and who is overdue.
        net: Closes overdue connections.
        send: Hands an encoded frame to a connection (direct or through a gateway).
        clock: The engine's clock.
        stamp: ``(as_of, age)`` of the data now.
    """

    def __init__(
        self,
        engine: SyncEngine,
        net: Network,
        send: Callable[[int, bytes | str], None],
        clock: Callable[[], float],
        stamp: Callable[[], tuple[float, float]],
    ) -> None:
        self._engine = engine
        self._net = net
        self._send = send
        self._clock = clock
        self._stamp = stamp
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """A v2 connection arrived: tick, if not ticking already."""
        if self._timer is None:
            loop = asyncio.get_running_loop()
            interval = self._engine.settings.as_of_interval
            self._timer = loop.call_later(interval / 4, self._tick)

    def stop(self) -> None:
        """The server is closing."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        engine = self._engine
        now = self._clock()
        try:
            for connection, frame in engine.beacons(now, self._stamp()):
                self._send(connection, frame)
            limit = engine.settings.max_behind_seconds
            for connection in engine.overdue(now):
                logger.warning(
                    "Connection %s acknowledged nothing for %g s: closing it", connection, limit
                )
                self._net.spawn(self._close(ConnectionId(connection), limit), "close behind")
        except Exception:
            logger.exception("beacons failed")
        if engine.speaks_v2:
            self.start()

    async def _close(self, connection: ConnectionId, limit: float) -> None:
        with contextlib.suppress(ConnectionNotFound):
            await self._net.disconnect(
                connection, code=1013, reason=f"behind: no acknowledgement for {limit:g} s"
            )
