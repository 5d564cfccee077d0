"""Test helpers: an in-memory transport, so apps can be tested without sockets.

Give one :class:`MemoryTransport` to a server ``Network`` and to its clients; the URL's host
and port pick the listener (the scheme is ignored)::

    hub = MemoryTransport()
    server = Network(transport=hub)
    await server.listen("app", 1)
    client = Network(transport=hub)
    await client.connect("memory://app:1")

It keeps the parts of a real link that matter to the layers above: messages arrive later
on the event loop (never inside the sender's call), in order; limits on message size are
enforced with close code 1009; a reader can be paused to make a slow consumer, and then
the writer sees backpressure.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import ssl as _ssl
from collections import deque
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from .exceptions import BindError, ConnectFailed, ConnectionClosed
from .net import HandlerFactory, HttpRequest, LinkHandler, ListenerHooks, NetworkSettings
from .protocol import SUBPROTOCOLS, WireData

__all__ = ["MemoryLink", "MemoryTransport"]

_CLOSE = object()


class MemoryLink:
    """One end of an in-memory connection (a ``Link``)."""

    def __init__(
        self,
        remote: str,
        subprotocol: str | None,
        settings: NetworkSettings,
        high_water: int,
        request: HttpRequest | None = None,
    ) -> None:
        self.remote = remote
        self.request = request
        """The handshake request (on the server's end)."""
        self.subprotocol = subprotocol
        self._settings = settings
        self._high_water = high_water
        self.peer: MemoryLink | None = None
        self.handler: LinkHandler | None = None
        self._inbox: deque[object] = deque()
        self._arrived = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._reading = asyncio.Event()
        self._reading.set()
        self._closed = False
        self._close_info: tuple[int | None, str] | None = None
        self._close_done = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    def start(self, handler: LinkHandler) -> None:
        """Attach the handler and start delivering."""
        self.handler = handler
        self._pump = asyncio.get_running_loop().create_task(self._deliver())

    # -- writing side

    def write(self, data: WireData) -> None:
        """Write one message (a tuple of bytes is one binary message); it arrives at the
        peer later."""
        peer = self.peer
        if self._closed or self._close_info is not None or peer is None or peer._closed:
            raise ConnectionClosed("the in-memory link is closed")
        peer._push(b"".join(data) if isinstance(data, tuple) else data)

    def try_write(self, data: WireData) -> int:
        """:meth:`write` unless backed up: the message's size, or -1 (nothing written)."""
        if self.backed_up():
            return -1
        self.write(data)
        return sum(map(len, data)) if isinstance(data, tuple) else len(data)

    def backed_up(self) -> bool:
        """True while the peer has more than ``high_water`` undelivered messages."""
        peer = self.peer
        return peer is not None and len(peer._inbox) > self._high_water

    async def write_and_drain(self, data: bytes | str) -> None:
        """Write one message, then wait until the peer's backlog is below the high water."""
        self.write(data)
        peer = self.peer
        assert peer is not None
        while self.backed_up():
            if peer._closed:
                raise ConnectionClosed("the in-memory link closed while draining")
            peer._drained.clear()
            await peer._drained.wait()

    async def close(self, code: int, reason: str) -> None:
        """Send a close after what is queued; wait for the peer (up to close_timeout)."""
        if self._closed or self._close_info is not None:
            await self._close_done.wait()
            return
        self._close_info = (code, reason)
        peer = self.peer
        if peer is not None and not peer._closed:
            peer._push(_CLOSE)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._close_done.wait(), self._settings.close_timeout)
        if not self._closed:  # the peer never read the close: abort both ends
            self._finish(1006, "connection aborted: peer did not complete the close")
            if peer is not None:
                peer._finish(1006, "connection aborted")

    def abort(self) -> None:
        """Drop both ends at once (1006), as a dead network would."""
        peer = self.peer
        if not self._closed:
            self._finish(1006, "connection aborted")
        if peer is not None and not peer._closed:
            peer._finish(1006, "connection aborted")

    # -- slow-consumer simulation

    def pause_reading(self) -> None:
        """Stop delivering messages to this end's handler (they pile up)."""
        self._reading.clear()

    def resume_reading(self) -> None:
        """Resume delivering."""
        self._reading.set()

    # -- internals

    def _push(self, item: object) -> None:
        self._inbox.append(item)
        self._arrived.set()

    async def _deliver(self) -> None:
        inbox = self._inbox
        limit = self._settings.message_limit(server=self.request is not None)
        try:
            while not self._closed:
                await self._arrived.wait()
                self._arrived.clear()
                while inbox and not self._closed:
                    await self._reading.wait()
                    item = inbox.popleft()
                    if len(inbox) <= self._high_water:
                        self._drained.set()
                    if item is _CLOSE:
                        peer = self.peer
                        assert peer is not None and peer._close_info is not None
                        code, reason = peer._close_info
                        self._finish(code, reason)
                        peer._finish(code, reason)
                        return
                    assert isinstance(item, bytes | str)
                    if len(item) > limit:
                        reason = f"message of {len(item)} bytes exceeds limit of {limit} bytes"
                        self._close_info = (1009, reason)
                        self._finish(1009, reason)
                        if self.peer is not None:
                            self.peer._finish(1009, reason)
                        return
                    assert self.handler is not None
                    delay = self.handler.on_message(item)
                    await asyncio.sleep(delay)  # let other tasks run, like a socket would
        finally:
            self._drained.set()

    def _finish(self, code: int | None, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._inbox.clear()
        self._drained.set()
        self._close_done.set()
        if self._pump is not None and self._pump is not asyncio.current_task():
            self._pump.cancel()
        if self.handler is not None:
            self.handler.on_closed(code, reason)


class _MemoryListener:
    def __init__(self, transport: MemoryTransport, host: str, port: int) -> None:
        self._transport = transport
        self.address = (host, port)

    async def close(self) -> None:
        self._transport._listeners.pop(self.address, None)


class MemoryTransport:
    """An in-process transport: pass the same instance to servers and clients.

    Args:
        high_water: Undelivered messages per direction above which the writer is told it is
            backed up (its frames then queue in the ``Network`` channel).
    """

    def __init__(self, *, high_water: int = 64, client_host: str = "127.0.0.1") -> None:
        self._listeners: dict[tuple[str, int], ListenerHooks] = {}
        self._ports = itertools.count(49152)
        self._ports_used = itertools.count(40000)
        self._clients = itertools.count(1)
        self.client_host = client_host
        """The address handshakes come from (set another one to play a remote client)."""
        self.high_water = high_water
        self.links: list[MemoryLink] = []
        """Every server-side link ever opened, in order (to pause a reader in tests)."""

    async def listen(
        self, host: str, port: int, hooks: ListenerHooks, *, ssl: _ssl.SSLContext | None = None
    ) -> _MemoryListener:
        """Register a listener at ``host:port`` (port 0 picks a free one)."""
        if port == 0:
            port = next(p for p in self._ports if (host, p) not in self._listeners)
        if (host, port) in self._listeners:
            raise BindError(
                errno.EADDRINUSE, f"cannot listen on {host}:{port}: address already in use"
            )
        self._listeners[(host, port)] = hooks
        return _MemoryListener(self, host, port)

    async def connect(
        self,
        url: str,
        settings: NetworkSettings,
        subprotocol: str | Sequence[str],
        handler_factory: HandlerFactory,
        *,
        headers: Mapping[str, str] | None = None,
        ssl: _ssl.SSLContext | None = None,
    ) -> MemoryLink:
        """Open an in-memory link to the listener named by ``url``'s host and port; the
        handshake comes from :attr:`client_host` with ``headers`` (``ssl`` is ignored)."""
        parts = urlsplit(url)
        key = (parts.hostname or "", parts.port or 0)
        hooks = self._listeners.get(key)
        if hooks is None:
            raise ConnectFailed(f"cannot connect to {url}: connection refused (no listener)")
        offered = [subprotocol] if isinstance(subprotocol, str) else list(subprotocol)
        subprotocol = next((sp for sp in offered if sp in SUBPROTOCOLS), offered[0])
        client_name = f"memory-client-{next(self._clients)}"
        target = parts.path or "/"
        request = HttpRequest.build(
            f"{target}?{parts.query}" if parts.query else target,
            [
                ("Host", parts.netloc),
                ("Sec-WebSocket-Protocol", ", ".join(offered)),
                *(headers or {}).items(),
            ],
            remote=f"{self.client_host}:{next(self._ports_used)}",
            subprotocol=subprotocol,
            upgrade=True,
            remote_host=self.client_host,
        )
        refusal = await hooks.admit(request, 0)
        if refusal is not None:
            body = refusal.body if isinstance(refusal.body, str) else refusal.body.decode()
            raise ConnectFailed(
                f"{url} refused the WebSocket handshake: HTTP {refusal.status}: {body.strip()}"
            )
        server_end = MemoryLink(client_name, subprotocol, hooks.settings, self.high_water, request)
        client_end = MemoryLink(f"{key[0]}:{key[1]}", subprotocol, settings, self.high_water)
        server_end.peer, client_end.peer = client_end, server_end
        self.links.append(server_end)
        server_end.start(hooks.opened(server_end))
        client_end.start(handler_factory(client_end))
        return client_end
