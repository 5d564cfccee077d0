"""What the HTTP side of a listener sees and answers: a request object and a typed response
(below both `security` and `net`: authenticators and the transport take them).

Every hook that decides something about an incoming HTTP request (admitting a WebSocket
handshake, serving a plain page) receives an :class:`HttpRequest` and returns an
:class:`HttpResponse`. This is where authentication and ``/metrics`` hang.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

__all__ = ["HEALTH_PATH", "AdmissionCheck", "HttpRequest", "HttpResponse", "RouteHandler"]

HEALTH_PATH = "/healthz"
"""The health endpoint every listener serves."""

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """An incoming HTTP request: a WebSocket handshake or a plain ``GET``.

    Attributes:
        path: The path, without the query string (``"/devtools"``).
        query: The query parameters, each name with every value given (``?a=1&a=2``).
        headers: The headers, names in lower case (a repeated header: its values joined
            with ``", "``).
        remote: The peer's address, ``"host:port"``.
        subprotocol: For a handshake, the subprotocol the server will choose (``None``: none
            offered, so msgpack); ``None`` for a plain request.
        upgrade: Whether this is a WebSocket handshake.
        remote_host: The peer's IP address alone (``""`` if unknown).
        state: Where the server's checks leave what they found about the request (the
            ``"identity"`` the authenticator gave it).
    """

    path: str
    query: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    remote: str = "?"
    subprotocol: str | None = None
    upgrade: bool = False
    remote_host: str = ""
    state: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def build(
        cls,
        target: str,
        headers: Iterable[tuple[str, str]] = (),
        *,
        remote: str = "?",
        subprotocol: str | None = None,
        upgrade: bool = False,
        remote_host: str = "",
    ) -> HttpRequest:
        """Make a request from a request target (``/path?query``) and raw header pairs."""
        parts = urlsplit(target)
        query = {
            name: tuple(values)
            for name, values in parse_qs(parts.query, keep_blank_values=True).items()
        }
        joined: dict[str, str] = {}
        for name, value in headers:
            key = name.lower()
            joined[key] = f"{joined[key]}, {value}" if key in joined else value
        return cls(
            parts.path or "/",
            MappingProxyType(query),
            MappingProxyType(joined),
            remote,
            subprotocol,
            upgrade,
            remote_host,
        )

    def header(self, name: str) -> str | None:
        """A header's value (any case of ``name``), or ``None``."""
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        """The first value of a query parameter, or ``None``."""
        values = self.query.get(name)
        return values[0] if values else None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """An HTTP answer: a page, or a refusal instead of a WebSocket upgrade.

    Attributes:
        status: The status code.
        body: The body (text is sent as UTF-8).
        content_type: The ``Content-Type``.
        headers: More headers (``WWW-Authenticate``, ``Cache-Control``...).
    """

    status: int
    body: str | bytes = ""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


class RouteHandler(Protocol):
    """Serves one plain-HTTP path (see ``Network.add_route``); may be a coroutine function."""

    def __call__(self, request: HttpRequest, /) -> HttpResponse | Awaitable[HttpResponse]:
        """The response to ``request``."""
        ...


class AdmissionCheck(Protocol):
    """Decides a WebSocket handshake (see ``Network.add_admission_check``)."""

    def __call__(self, request: HttpRequest, /) -> HttpResponse | None:
        """``None`` admits the handshake; a response refuses it."""
        ...
