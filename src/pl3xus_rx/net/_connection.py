"""One connection as ``Network`` sees it: a bounded outbound channel, a writer task, and a
rate limiter on incoming frames (which it hands to the network to decode)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..exceptions import ChannelFull, ConnectionClosed, RateLimited
from ..protocol import Codec, ErrorCode, WireData
from ..security import ANONYMOUS, Identity
from ._events import ConnectionId
from ._settings import NetworkSettings
from ._transport import Link

__all__ = ["ConnectionOwner", "ConnectionStatistics"]

_T = TypeVar("_T")


class ConnectionOwner(Protocol):
    """What a connection asks of the network that owns it (``Network``'s private plumbing
    object answers)."""

    @property
    def settings(self) -> NetworkSettings:
        """The network's settings."""
        ...

    def receive(self, conn: Connection, data: bytes | str) -> None:
        """Decode, check and deliver one incoming message."""
        ...

    def send_error(self, conn: Connection, body: dict[str, Any]) -> None:
        """Tell the peer that something it sent was rejected."""
        ...

    def closed(self, conn: Connection, code: int | None, reason: str) -> None:
        """The link closed."""
        ...

    def count(self, counter: str, n: int = 1) -> None:
        """Add to a network counter."""
        ...

    def emit_error(self, connection: ConnectionId | None, error: Exception) -> None:
        """Report an error on the network's event stream."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, _T], name: str) -> asyncio.Task[_T]:
        """Run a supervised task."""
        ...


logger = logging.getLogger("pl3xus_rx.net")


@dataclass(frozen=True, slots=True)
class ConnectionStatistics:
    """Counters of one connection, as of the call.

    Attributes:
        id: The connection.
        remote: The peer's address.
        subprotocol: The negotiated encoding's subprotocol.
        queue_depth: Frames waiting in the outbound channel now.
        queued_bytes: Their size in bytes.
        max_queue_depth: The deepest the channel has been.
        frames_sent: Frames written to the transport.
        frames_received: Frames read from the peer (before any check).
        dropped: Outbound frames dropped because the channel was full.
        bad_frames: Incoming frames rejected as bad input.
        rate_limited: Incoming frames dropped by the rate limiter.
    """

    id: ConnectionId
    remote: str
    subprotocol: str | None
    queue_depth: int
    queued_bytes: int
    max_queue_depth: int
    frames_sent: int
    frames_received: int
    dropped: int
    bad_frames: int
    rate_limited: int


CLOSE_GRACE = 0.25
"""Seconds between deciding to close an abusive connection (frames refused from then on)
and closing it: time for the replies to what it sent before to go out."""


def _short(reason: str) -> str:
    # A close reason must fit in 123 bytes of UTF-8.
    data = reason.encode()
    return reason if len(data) <= 123 else data[:120].decode(errors="ignore") + "..."


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._last = time.monotonic()

    def charge(self, tokens: float) -> None:
        """Take ``tokens`` more (a costly frame), going into debt by up to one burst."""
        self._tokens = max(self._tokens - tokens, -self.burst)

    def level(self, now: float) -> float:
        """The tokens held now."""
        return min(self._tokens + (now - self._last) * self.rate, self.burst)

    def until(self, level: float, now: float) -> float:
        """Seconds until the bucket holds ``level`` tokens again (0.0 if it does)."""
        tokens = self._tokens + (now - self._last) * self.rate
        return (level - tokens) / self.rate if tokens < level else 0.0

    def take(self, now: float) -> bool:
        """Take one token if there is one."""
        tokens = self._tokens + (now - self._last) * self.rate
        self._last = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False


class Connection:
    """The state of one connection inside a :class:`Network`. Not public."""

    def __init__(
        self, net: ConnectionOwner, cid: ConnectionId, link: Link, codec: Codec, outgoing: bool
    ) -> None:
        settings = net.settings
        self.net = net
        self.id = cid
        self.link = link
        self.last_bad_frame_log = -float("inf")
        self.bad_frames_unlogged = 0
        self.last_error_log = -float("inf")
        self.errors_unlogged = 0
        self.identity: Identity = ANONYMOUS
        self.codec = codec
        self.outgoing = outgoing
        self.queue: deque[bytes | str] = deque()
        self.capacity = settings.channel_capacity
        self.capacity_bytes = settings.channel_capacity_bytes
        self.queued_bytes = 0
        self.warning_depth = settings.channel_warning_depth
        self.writing = False
        self.closing = False
        self.refusing = False  # closing for abuse: no more frames read, replies still go
        self.closed = False
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_warning = -1e9
        rate = settings.rate_limit_per_second
        # Rate limits protect a server from its clients; a client trusts its server.
        limited = rate is not None and not outgoing
        self.bucket = TokenBucket(rate, settings.rate_limit_burst) if limited and rate else None
        self.frame_time = settings.rate_limit_frame_time
        self._window_start = time.monotonic()
        self._violations = 0
        self.peer_welcome: Any = None  # the server's WelcomeFrame, on outgoing connections
        self.welcome: asyncio.Future[Any] | None = (
            asyncio.get_running_loop().create_future() if outgoing else None
        )
        # counters
        self.max_queue_depth = 0
        self.frames_sent = 0
        self.frames_received = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.dropped = 0
        self.bad_frames = 0
        self.rate_limited = 0
        self.writer = net.spawn(self._write_loop(), f"writer {cid}")
        # (a Link written before try_write existed: its backed_up() and write())
        self._try_write: Callable[[WireData], int] = (
            getattr(link, "try_write", None) or self._try_write_in_two
        )

    def _try_write_in_two(self, data: WireData) -> int:
        link = self.link
        if link.backed_up():
            return -1
        if isinstance(data, tuple):
            data = b"".join(data)
        link.write(data)
        return len(data)

    # ----------------------------------------------------------------- outbound

    def enqueue(self, data: WireData) -> bool:
        """Send ``data`` now if the socket can take it, else queue it. Never awaits.

        Returns:
            True if the frame was written or queued.
        """
        if self.closing:
            return False
        queue = self.queue
        if not queue and not self.writing:
            try:
                size = self._try_write(data)
            except ConnectionClosed:
                return False
            if size >= 0:
                self.frames_sent += 1
                self.bytes_sent += size
                return True
        if isinstance(data, tuple):  # (held for later: one piece)
            data = b"".join(data)
        depth = len(queue)
        size = len(data)
        if depth >= self.capacity or self.queued_bytes + size > self.capacity_bytes:
            return self._channel_full()
        queue.append(data)
        self.queued_bytes += size
        self.bytes_sent += size
        depth += 1
        if depth > self.max_queue_depth:
            self.max_queue_depth = depth
        if depth >= self.warning_depth:
            self._depth_warning(depth)
        if self._idle.is_set():
            self._idle.clear()
        self._wakeup.set()
        return True

    def _depth_warning(self, depth: int) -> None:
        now = time.monotonic()
        if now - self._last_warning >= self.net.settings.warning_interval:
            self._last_warning = now
            logger.warning(
                "Channel depth warning: connection %s has %d of %d frames queued",
                self.id,
                depth,
                self.capacity,
            )

    def _channel_full(self) -> bool:
        self.dropped += 1
        policy = self.net.settings.channel_full_policy
        if policy == "drop":
            self.net.count("channel_dropped")
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning(
                    "Channel full: connection %s dropped a frame (%d dropped so far, %s)",
                    self.id,
                    self.dropped,
                    self._limits(),
                )
            self.net.emit_error(
                self.id,
                ChannelFull(
                    f"connection {self.id}: channel full ({self._limits()}); "
                    f"frame dropped ({self.dropped} so far)"
                ),
            )
            return False
        self.net.count("channel_full_closes")
        reason = f"channel full ({self._limits()}): client reads too slowly"
        logger.warning("Closing connection %s: %s", self.id, reason)
        self.net.emit_error(self.id, ChannelFull(f"connection {self.id}: {reason}; closing"))
        self.close_soon(1013, reason, discard_queue=True)
        return False

    def _limits(self) -> str:
        """Which limit the channel reached, as the setting that sets it."""
        if len(self.queue) >= self.capacity:
            return f"channel_capacity={self.capacity}"
        return f"channel_capacity_bytes={self.capacity_bytes}"

    async def _write_loop(self) -> None:
        queue = self.queue
        link = self.link
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while queue:
                    self.writing = True
                    data = queue.popleft()
                    self.queued_bytes -= len(data)
                    if link.backed_up():
                        await link.write_and_drain(data)
                    else:
                        link.write(data)
                    self.frames_sent += 1
                self.writing = False
                self._idle.set()
        except ConnectionClosed:
            queue.clear()
            self.queued_bytes = 0
            self.writing = False
            self._idle.set()

    async def drained(self) -> None:
        """Wait until the channel is empty (or the connection closed)."""
        await self._idle.wait()

    def close_soon(self, code: int, reason: str, *, discard_queue: bool = False) -> None:
        """Start closing from synchronous code; the close runs as a task."""
        if self.closing:
            return
        self.closing = True
        if discard_queue:
            self.queue.clear()
            self.queued_bytes = 0
        self.net.spawn(self.close(code, reason, drain_timeout=0.0), f"close {self.id}")

    async def close(self, code: int, reason: str, *, drain_timeout: float) -> None:
        """Let the channel drain for up to ``drain_timeout`` s, then close with ``code``."""
        self.closing = True
        if drain_timeout > 0 and self.queue:
            try:
                await asyncio.wait_for(self._idle.wait(), drain_timeout)
            except TimeoutError:
                logger.info(
                    "connection %s: %d frames still queued after %.1f s; closing anyway",
                    self.id,
                    len(self.queue),
                    drain_timeout,
                )
        self.writer.cancel()
        try:
            await self.link.close(code, _short(reason))
        except Exception:  # the link may already be gone; on_closed still reports it
            logger.debug("connection %s: error while closing", self.id, exc_info=True)

    # ----------------------------------------------------------------- inbound

    def on_message(self, data: bytes | str) -> float:
        """Transport callback: one whole message arrived. Returns the seconds to wait before
        reading the next one (the connection's debt for costly frames)."""
        self.frames_received += 1
        self.bytes_received += len(data)
        bucket = self.bucket
        if bucket is None:
            self.net.receive(self, data)
            return 0.0
        if self.refusing or not bucket.take(time.monotonic()):
            self._rate_limited()
            return 0.0
        started = time.perf_counter()
        self.net.receive(self, data)
        if self.frame_time is None:
            return 0.0
        # A frame that kept the server busy for N frame times costs N frames, paid in time:
        # the connection is not read again (TCP pushes back on the sender) until its bucket
        # is back where it was before the frame. What it may send after that is what it
        # could before: a costly frame never makes the next ones (an ACK) be dropped.
        spent = (time.perf_counter() - started) / self.frame_time
        if spent <= 1.0:
            return 0.0
        now = time.monotonic()
        level = bucket.level(now)
        bucket.charge(spent - 1.0)
        return bucket.until(level, now)

    def _rate_limited(self) -> None:
        self.rate_limited += 1
        self.net.count("rate_limited")
        settings = self.net.settings
        limit = settings.rate_limit_per_second
        if self.refusing:
            self._refuse("frame dropped: the connection is closing (rate limit exceeded)", limit)
            return
        now = time.monotonic()
        if now - self._window_start > settings.rate_limit_window:
            self._window_start = now
            self._violations = 0
        self._violations += 1
        if self._violations >= settings.rate_limit_max_violations:
            reason = (
                f"rate limit exceeded: {self._violations} frames over {limit:g}/s "
                f"in {settings.rate_limit_window:g} s"
            )
            if not self.closing:
                logger.warning("Closing connection %s: %s", self.id, reason)
                self.net.emit_error(self.id, RateLimited(f"connection {self.id}: {reason}"))
                # Frames from now on are refused; what was accepted before is still answered
                # (replies wait for the next flush) before the close.
                self.refusing = True
                self.net.spawn(self._close_later(1008, reason), f"close {self.id}")
            self._refuse("frame dropped: the connection is closing (rate limit exceeded)", limit)
            return
        err = RateLimited(
            f"connection {self.id}: frame dropped, over the rate limit of {limit:g} frames/s "
            f"(burst {settings.rate_limit_burst})"
        )
        if self._violations == 1:
            logger.warning("%s", err)
        self.net.emit_error(self.id, err)
        self._refuse(f"frame dropped: over the rate limit of {limit:g} frames/s", limit)

    def _refuse(self, message: str, limit: float | None) -> None:
        self.net.send_error(
            self,
            {
                "code": ErrorCode.RATE_LIMITED,
                "message": message,
                "type": None,
                "field": None,
                "limit": limit,
            },
        )

    async def _close_later(self, code: int, reason: str) -> None:
        await asyncio.sleep(CLOSE_GRACE)
        await self.close(code, reason, drain_timeout=1.0)

    def on_closed(self, code: int | None, reason: str) -> None:
        """Transport callback: the link closed (called once)."""
        if self.closed:
            return
        self.closed = True
        self.closing = True
        self.writer.cancel()
        self.queue.clear()
        self.queued_bytes = 0
        self._idle.set()
        self.net.closed(self, code, reason)

    def statistics(self) -> ConnectionStatistics:
        """A snapshot of this connection's counters."""
        return ConnectionStatistics(
            id=self.id,
            remote=self.link.remote,
            subprotocol=self.link.subprotocol,
            queue_depth=len(self.queue),
            queued_bytes=self.queued_bytes,
            max_queue_depth=self.max_queue_depth,
            frames_sent=self.frames_sent,
            frames_received=self.frames_received,
            dropped=self.dropped,
            bad_frames=self.bad_frames,
            rate_limited=self.rate_limited,
        )
