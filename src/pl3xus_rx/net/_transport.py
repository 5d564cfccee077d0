"""The small interface between ``Network`` and the byte movers (WebSocket, in-memory)."""

from __future__ import annotations

import ssl as _ssl
from collections.abc import Mapping, Sequence
from typing import Protocol

from .._http import HttpRequest, HttpResponse
from ..protocol import WireData
from ._settings import NetworkSettings

__all__ = [
    "HandlerFactory",
    "Link",
    "LinkHandler",
    "Listener",
    "ListenerHooks",
    "Transport",
]


class Link(Protocol):
    """One open connection as the transport sees it: it moves whole messages."""

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol (selects the codec)."""
        ...

    @property
    def remote(self) -> str:
        """The peer's address, for logs."""
        ...

    @property
    def request(self) -> HttpRequest | None:
        """The handshake request the peer opened this link with (``None`` on the side that
        connected)."""
        ...

    def write(self, data: WireData) -> None:
        """Write one message now without waiting; bytes (or a tuple of bytes, the message's
        chunks in order) go binary, str goes text.

        Raises:
            ConnectionClosed: the link is no longer open.
        """
        ...

    def try_write(self, data: WireData) -> int:
        """:meth:`write` unless :meth:`backed_up`: returns the message's size (``len`` of
        the str, or of the bytes in all), or -1 when backed up (nothing written).

        Raises:
            ConnectionClosed: the link is no longer open.
        """
        ...

    def backed_up(self) -> bool:
        """True while the transport's own write buffer is above its high-water mark."""
        ...

    async def write_and_drain(self, data: bytes | str) -> None:
        """Write one message, then wait until the write buffer is below its high-water mark.

        Raises:
            ConnectionClosed: the link closed. Cancelling is safe (the message was written).
        """
        ...

    async def close(self, code: int, reason: str) -> None:
        """Start the closing handshake and wait for it (bounded by the close timeout)."""
        ...

    def abort(self) -> None:
        """Drop the link at once, without a closing handshake (a peer that is gone would
        never answer one); the handler is told it closed (1006)."""
        ...


class LinkHandler(Protocol):
    """What the transport calls for each connection (implemented by ``Network``'s
    per-connection ``Connection``)."""

    def on_message(self, data: bytes | str) -> float:
        """One whole message arrived. Returns how many seconds the transport should wait
        before delivering the next one (0.0: go on): a connection that cost the server more
        than its share is read no sooner, so TCP pushes back on its sender."""
        ...

    def on_closed(self, code: int | None, reason: str) -> None:
        """The link closed (always called exactly once, last)."""
        ...


class ListenerHooks(Protocol):
    """What a listener asks its ``Network`` (its private plumbing object answers)."""

    @property
    def settings(self) -> NetworkSettings:
        """The network's settings."""
        ...

    def health(self, request: HttpRequest) -> HttpResponse:
        """The answer to ``GET /healthz``."""
        ...

    async def http(self, request: HttpRequest) -> HttpResponse | None:
        """The answer to a plain HTTP request (``None``: no such page)."""
        ...

    async def admit(self, request: HttpRequest, pending: int) -> HttpResponse | None:
        """``None`` to accept a new WebSocket handshake, else the refusal to send.

        Args:
            request: The handshake request.
            pending: Handshakes the transport has admitted that have not completed yet.
        """
        ...

    def opened(self, link: Link) -> LinkHandler:
        """A handshake completed; returns the handler for the new link's events."""
        ...


class Listener(Protocol):
    """A bound listener."""

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the port is real even when 0 was asked."""
        ...

    async def close(self) -> None:
        """Stop listening. Open links are not touched (``Network`` closes them itself)."""
        ...


class Transport(Protocol):
    """Creates listeners and outgoing links."""

    async def listen(
        self, host: str, port: int, hooks: ListenerHooks, *, ssl: _ssl.SSLContext | None = None
    ) -> Listener:
        """Bind and start accepting (TLS with ``ssl``: ``wss://`` and ``https://``).

        Raises:
            BindError: the address could not be bound (message names it and the OS error).
        """
        ...

    async def connect(
        self,
        url: str,
        settings: NetworkSettings,
        subprotocol: str | Sequence[str],
        handler_factory: HandlerFactory,
        *,
        headers: Mapping[str, str] | None = None,
        ssl: _ssl.SSLContext | None = None,
    ) -> Link:
        """Open a link to ``url`` offering ``subprotocol`` (or several, preferred first;
        the link's ``subprotocol`` is the one the server chose), sending ``headers`` with
        the handshake (``ssl`` for ``wss://``); its events go to ``handler_factory(link)``.

        Raises:
            ConnectFailed: the peer could not be reached or refused the handshake.
        """
        ...


class HandlerFactory(Protocol):
    """Makes the handler of an outgoing link once it is open."""

    def __call__(self, link: Link) -> LinkHandler:
        """Return the handler for ``link``."""
        ...
