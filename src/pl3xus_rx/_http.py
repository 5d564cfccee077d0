"""What the HTTP side of a listener sees and answers: a request object and a typed response
(below both `security` and `net`: authenticators and the transport take them).

Every hook that decides something about an incoming HTTP request (admitting a WebSocket
handshake, serving a plain page) receives an :class:`HttpRequest` and returns an
:class:`HttpResponse`. This is where authentication and ``/metrics`` hang.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import parse_qs

__all__ = [
    "DEFAULT_CSP",
    "HEALTH_PATH",
    "PAGE_HEADERS",
    "AdmissionCheck",
    "HttpRequest",
    "HttpResponse",
    "RouteHandler",
    "page_csp",
]

HEALTH_PATH = "/healthz"
"""The health endpoint every listener serves."""

_EMPTY: Mapping[str, str] = MappingProxyType({})

# what every policy says: load nothing, be framed by nobody, no <base>, no form posts
_CSP_TAIL = "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

DEFAULT_CSP = f"default-src 'none'; {_CSP_TAIL}"
"""The ``Content-Security-Policy`` of an answer whose route sets none (JSON, plain text,
refusals): nothing may load, and no page may frame it."""

PAGE_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "Content-Security-Policy": DEFAULT_CSP,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        # DevTools and /metrics take ?token=: keep no answer in any cache
        "Cache-Control": "no-store",
    }
)
"""The headers every plain HTTP answer of a listener carries (pages, ``/healthz``,
``/metrics``, 404s and refused handshakes alike); a header the answer sets itself wins."""

# an inline block as page_csp hashes it: no attributes, but for a module script's type
_INLINE = re.compile(r'<(script|style)(?: type="module")?>(.*?)</\1>', re.DOTALL | re.IGNORECASE)


def page_csp(html: str, *, connect: bool = False, scripts_from_self: bool = False) -> str:
    """The ``Content-Security-Policy`` for a page served as ``html``: only its own inline
    ``<script>`` and ``<style>`` blocks run (by sha256 hash; written without attributes but
    ``type="module"`` on a script, else they are not hashed and so blocked), images (the tab
    icon) from this origin, and nothing may frame it.

    Args:
        html: The page exactly as served (a change of one byte changes the hashes).
        connect: Allow WebSockets back to this origin (``connect-src 'self'``).
        scripts_from_self: Allow scripts served by this origin too (``script-src 'self'``:
            the browser client ``/pl3xus.js`` that a module imports).

    Returns:
        The header's value.
    """
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for tag, text in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        hashes[tag.lower()].append(f"'sha256-{digest}'")
    if scripts_from_self:
        hashes["script"].insert(0, "'self'")
    parts = ["default-src 'none'"]
    parts += [f"{tag}-src {' '.join(found)}" for tag, found in hashes.items() if found]
    parts.append("img-src 'self'")
    if connect:
        parts.append("connect-src 'self'")
    parts.append(_CSP_TAIL)
    return "; ".join(parts)


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
        """Make a request from a request target and raw header pairs.

        The target is read as a path and a query (origin-form, ``/path?query``) and nothing
        else: ``//x/devtools`` is the path ``//x/devtools``, not host ``x`` and ``/devtools``.
        """
        path, _, raw_query = target.partition("?")
        query = {
            name: tuple(values)
            for name, values in parse_qs(raw_query, keep_blank_values=True).items()
        }
        joined: dict[str, str] = {}
        for name, value in headers:
            key = name.lower()
            joined[key] = f"{joined[key]}, {value}" if key in joined else value
        return cls(
            path or "/",
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
        headers: More headers (``WWW-Authenticate``, a page's ``Content-Security-Policy``...);
            the listener adds each of :data:`PAGE_HEADERS` this does not set.
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
