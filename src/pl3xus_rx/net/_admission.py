"""Admission: whether a WebSocket handshake may become a connection — capacity, the
subprotocol, the host and origin (DNS rebinding, cross-site pages), who it is (an
authenticator, or protected mode), then the application's checks. No socket I/O: it judges
an :class:`HttpRequest`."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable

from .._http import HEALTH_PATH, AdmissionCheck, HttpRequest, HttpResponse
from ..exceptions import AuthenticationFailed
from ..protocol import SUBPROTOCOLS
from ..security import ANONYMOUS, Authenticator, Identity, is_loopback, origin_allowed
from ._hosts import HostNames, host_of
from ._settings import NetworkSettings

__all__ = ["Admission"]

logger = logging.getLogger(__name__)


class Admission:
    """The handshake decisions of one network.

    Args:
        settings: The network's settings, as they are now.
        count: Adds one to a network counter (``"refused"``, ``"auth_failures"``).
        load: Whether the network is running, and how many connections it has.
        unavailable: The refusal while the network does not admit anyone, running as it
            is (draining, a health check that says not to admit), else ``None``.
    """

    def __init__(
        self,
        settings: Callable[[], NetworkSettings],
        count: Callable[[str], None],
        load: Callable[[], tuple[bool, int]],
        unavailable: Callable[[], HttpResponse | None] = lambda: None,
    ) -> None:
        self._settings = settings
        self.count = count
        self._load = load
        self._unavailable = unavailable
        self.authenticator: Authenticator | None = None
        """Who may connect (``None``: protected mode)."""
        self.checks: list[AdmissionCheck] = []
        """The application's checks, in order, after the built-in ones."""
        self.refusal_listeners: list[Callable[[HttpRequest, HttpResponse], None]] = []
        """Told ``(request, response)`` for every refused handshake."""
        self.hosts = HostNames()
        """The names this network answers to (the listeners fill it in)."""
        self._logged: dict[str, tuple[float, int]] = {}  # kind -> (last logged, since)

    async def admit(self, request: HttpRequest, pending: int) -> HttpResponse | None:
        """Whether to accept one more handshake (a transport hook): running (not draining,
        no health check refusing), capacity, the subprotocol, the origin, identity (an
        authenticator, or protected mode), then the admission checks. A refusal is told to
        :attr:`refusal_listeners`."""
        refusal = await self._admit(request, pending)
        if refusal is not None:
            for listener in self.refusal_listeners:
                try:
                    listener(request, refusal)
                except Exception:
                    logger.exception("a refusal listener failed")
        return refusal

    async def _admit(self, request: HttpRequest, pending: int) -> HttpResponse | None:
        running, connections = self._load()
        if not running:
            self.count("refused")
            return HttpResponse(503, "server is shutting down\n")
        refusal = self._unavailable()
        if refusal is not None:
            self.count("refused")
            return refusal
        limit = self._settings().max_connections
        if limit is not None and connections + pending >= limit:
            self.count("refused")
            return HttpResponse(
                503, f"server is at its connection limit (max_connections={limit})\n"
            )
        refusal = (
            self._check_subprotocol(request)
            or self.check_host(request)
            or self._check_origin(request)
            or await self._identify(request)
        )
        if refusal is not None:
            self.count("refused")
            return refusal
        for check in self.checks:
            try:
                refusal = check(request)
            except Exception:
                logger.exception("admission check failed for %s", request.remote)
                refusal = HttpResponse(500, "internal error\n")
            if refusal is not None:
                self.count("refused")
                return refusal
        return None

    def _check_subprotocol(self, request: HttpRequest) -> HttpResponse | None:
        offered = request.header("sec-websocket-protocol")
        if offered is None or request.subprotocol is not None:
            return None  # none offered (msgpack), or one of ours
        return HttpResponse(
            400,
            f"none of the offered subprotocols ({offered[:100]}) is spoken here; offer one "
            f"of {', '.join(SUBPROTOCOLS)}\n",
        )

    def _warn(self, kind: str, message: str, *args: object) -> None:
        """Log a refusal: at most one line of each ``kind`` per ``warning_interval``
        (anyone who reaches the port can make handshakes fail), saying how many were not."""
        now = time.monotonic()
        last, quiet = self._logged.get(kind, (-float("inf"), 0))
        if now - last < self._settings().warning_interval:
            self._logged[kind] = (last, quiet + 1)
            return
        self._logged[kind] = (now, 0)
        if quiet:
            message += f" ({quiet} more not logged since the last one)"
        logger.warning(message, *args)

    @property
    def names_checked(self) -> bool:
        """Whether ``Host`` and ``Origin`` must name this server: without an authenticator
        (a rebinding page needs no credential there), or when ``allowed_hosts`` is set."""
        return self.authenticator is None or self._settings().allowed_hosts is not None

    def check_host(self, request: HttpRequest) -> HttpResponse | None:
        """The refusal of a request whose ``Host`` does not name this server (where names
        are checked; ``/healthz`` never: probes send pod addresses), else ``None``."""
        if request.path == HEALTH_PATH or not self.names_checked:
            return None
        given = request.header("host")
        if given is None:
            return None  # (no browser leaves it out)
        name = host_of(given)
        if name is not None and self.hosts.allowed(name, self._settings().allowed_hosts):
            return None
        # (counted as a refused handshake by the caller, if it is one)
        self._warn(
            "host",
            "Refused a request from %s: Host %r is not a name of this server",
            request.remote,
            given[:200],
        )
        return HttpResponse(
            403,
            f"the Host header ({given[:100]!r}) does not name this server; name it by "
            "address or add the name to NetworkSettings.allowed_hosts\n",
        )

    def _check_origin(self, request: HttpRequest) -> HttpResponse | None:
        origin = request.header("origin")
        if origin is None:
            return None  # not a browser
        settings = self._settings()
        extra = settings.allowed_origins or ()
        if "*" in extra or origin in extra:
            return None
        problem = self._origin_problem(request, origin, settings)
        if problem is None:
            return None
        self._warn(
            "origin",
            "Refused a handshake from %s: Origin %r %s",
            request.remote,
            origin[:200],
            problem,
        )
        return HttpResponse(
            403,
            f"this Origin may not connect ({problem}): browsers may connect from the "
            "server's own origin or from NetworkSettings.allowed_origins\n",
        )

    def _origin_problem(
        self, request: HttpRequest, origin: str, settings: NetworkSettings
    ) -> str | None:
        """What is wrong with a browser's ``Origin``, or ``None``."""
        scheme, _, rest = origin.partition("://")
        scheme = scheme.lower()
        if scheme not in ("http", "https") or not rest:
            return "not an http(s) origin"
        tls = self.hosts.tls
        expected = (
            {"http", "https"}
            if len(tls) > 1
            else {"https"}
            if True in tls or settings.behind_tls_proxy
            else {"http"}
        )
        if scheme not in expected:
            return (
                f"an {scheme} page may not connect to this "
                f"{'TLS' if 'https' in expected else 'plain'} server (behind a TLS proxy? "
                "set NetworkSettings.behind_tls_proxy)"
            )
        if self.names_checked:
            name = host_of(rest)
            if name is not None and self.hosts.allowed(name, settings.allowed_hosts):
                return None
            return "its host is not a name of this server"
        return None if origin_allowed(request, None) else "not this server's origin"

    async def _identify(self, request: HttpRequest) -> HttpResponse | None:
        found = await self.identify(request)
        if isinstance(found, HttpResponse):
            return found
        request.state["identity"] = found
        return None

    async def identify(self, request: HttpRequest) -> Identity | HttpResponse:
        """Who sent ``request``, by the same rules as a handshake: the authenticator's
        identity, or in protected mode :data:`~pl3xus_rx.ANONYMOUS` for a loopback client
        (or anyone with ``allow_anonymous``); else the refusal to answer with (401, 403).
        HTTP routes that must be protected (DevTools, metrics) call it."""
        authenticator = self.authenticator
        if authenticator is None:
            if self._settings().allow_anonymous or is_loopback(request.remote_host):
                return ANONYMOUS
            self._warn(
                "protected",
                "Refused %s: protected mode (no authenticator) admits loopback clients only",
                request.remote,
            )
            return HttpResponse(
                403,
                "this server accepts only local clients: it has no authentication configured. "
                "Configure an authenticator (server.authenticate(...)), or set "
                "NetworkSettings(allow_anonymous=True) to let anyone in.\n",
            )
        return await self.authenticate(request)

    async def authenticate(
        self, request: HttpRequest, *, log: bool = True
    ) -> Identity | HttpResponse:
        """The authenticator's identity for ``request``, or the refusal to answer with (a
        refusal is counted in ``auth_failures`` and, with ``log``, logged). There must be
        one."""
        authenticator = self.authenticator
        assert authenticator is not None
        try:
            result = authenticator(request)
            identity = await result if inspect.isawaitable(result) else result
        except AuthenticationFailed as exc:
            self.count("auth_failures")
            if log:
                self._warn(
                    "auth",
                    "Authentication refused %s: %d %r",
                    request.remote,
                    exc.status,
                    exc.reason,
                )
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
            return HttpResponse(exc.status, f"{exc.reason}\n", headers=headers)
        except Exception:
            self.count("auth_failures")
            logger.exception("the authenticator failed for %s", request.remote)
            return HttpResponse(500, "internal error\n")
        if not isinstance(identity, Identity):
            logger.error("the authenticator returned %r, not an Identity", type(identity))
            return HttpResponse(500, "internal error\n")
        return identity
