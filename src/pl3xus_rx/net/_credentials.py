"""How long a connection's credential lasts: closing at expiry, refreshing in band (REFRESH
frames), and closing every connection of an identity.

A credential with an expiry (a JWT's ``exp``, or ``Identity.expires_at`` set by a custom
authenticator) bounds the connection it opened: unless the client sends a new one before
then, the connection is closed at expiry plus ``NetworkSettings.credential_grace`` with
:attr:`~pl3xus_rx.protocol.CloseCode.CREDENTIAL_EXPIRED`. A REFRESH frame carries the new
credential; the authenticator judges it as it judges a handshake (the handshake's request,
with the new credential as its bearer token), and it must name the same identity (name,
roles, anonymity): it extends the connection's life, never changes who it is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from .._http import HttpRequest, HttpResponse
from ..protocol import CloseCode, FrameKind, RefreshCommand, Status
from ..security import TOKEN_PARAM
from ._admission import Admission
from ._connection import Connection
from ._settings import NetworkSettings

__all__ = ["Credentials"]

logger = logging.getLogger("pl3xus_rx.net")

REFUSED_PAUSE = 1.0
"""Seconds after a refused refresh during which a connection's next one is refused without
asking the authenticator (a client cannot make the server judge credentials in a loop)."""
_PER_TOKEN = frozenset({"exp", "iat", "nbf", "jti", "auth_time"})  # (differ by token)


def _lasting(claims: Any) -> dict[str, Any]:
    """The claims that say who someone is, not which token they hold."""
    return {k: v for k, v in dict(claims).items() if k not in _PER_TOKEN}


def _renewed(request: HttpRequest, credential: str) -> HttpRequest:
    """The handshake's request as it would look with ``credential`` as its bearer token
    (the old token's query parameter and the cookies left out)."""
    headers = {
        name: value
        for name, value in request.headers.items()
        if name not in ("authorization", "cookie")
    }
    headers["authorization"] = f"Bearer {credential}"
    query = {name: v for name, v in request.query.items() if name != TOKEN_PARAM}
    return dataclasses.replace(request, headers=headers, query=query, state={})


class Credentials:
    """The credential lifetimes of one network's connections.

    Args:
        admission: Holds the authenticator.
        settings: The network's settings, as they are now.
        count: Adds one to a network counter.
        spawn: Runs a coroutine as a supervised task.
    """

    def __init__(
        self,
        admission: Admission,
        settings: Callable[[], NetworkSettings],
        count: Callable[[str], None],
        spawn: Callable[[Any, str], asyncio.Task[Any]],
    ) -> None:
        self._admission = admission
        self._settings = settings
        self._count = count
        self._spawn = spawn
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._refreshing: set[int] = set()
        self._refused: dict[int, float] = {}  # connection -> when its refresh was refused
        self._logged: dict[int, float] = {}  # connection -> when a refusal was last logged
        self.clock: Callable[[], float] = time.time
        """The wall clock expiries are read against (seconds since the epoch)."""

    def welcome(self, conn: Connection) -> dict[str, Any]:
        """What a new connection's welcome says of its credential: whether REFRESH is
        taken (there is an authenticator) and in how many seconds it expires."""
        keys: dict[str, Any] = {}
        if self._admission.authenticator is not None:
            keys["refresh"] = True
        expires = conn.identity.expires_at
        if expires is not None:
            keys["expires_in"] = round(max(0.0, expires - self.clock()), 3)
        return keys

    def opened(self, conn: Connection) -> None:
        """A connection was admitted: close it when its credential runs out."""
        self._schedule(conn)

    def closed(self, conn: Connection) -> None:
        """A connection ended: forget its timer."""
        timer = self._timers.pop(conn.id, None)
        if timer is not None:
            timer.cancel()
        self._refreshing.discard(conn.id)
        self._refused.pop(conn.id, None)
        self._logged.pop(conn.id, None)

    def _schedule(self, conn: Connection) -> None:
        timer = self._timers.pop(conn.id, None)
        if timer is not None:
            timer.cancel()
        expires = conn.identity.expires_at
        if expires is None or conn.outgoing:
            return
        delay = max(0.0, expires + self._settings().credential_grace - self.clock())
        loop = asyncio.get_running_loop()
        self._timers[conn.id] = loop.call_later(delay, self._expired, conn)

    def _expired(self, conn: Connection) -> None:
        self._timers.pop(conn.id, None)
        if conn.closing or conn.closed:
            return
        self._count("expired")
        logger.info(
            "Connection %s (%r): its credential expired and was not refreshed; closing",
            conn.id,
            conn.identity.name,
        )
        conn.close_soon(
            CloseCode.CREDENTIAL_EXPIRED, "the credential expired: reconnect with a new one"
        )

    def refresh(self, conn: Connection, command: RefreshCommand) -> None:
        """A REFRESH frame: judge the new credential off the reader, answer with a REPLY."""
        if self._admission.authenticator is None:
            self._answer(
                conn,
                command.req_id,
                Status.FORBIDDEN,
                "this server has no authenticator: there is no credential to refresh",
            )
            return
        if conn.id in self._refreshing:
            self._answer(
                conn,
                command.req_id,
                Status.FORBIDDEN,
                "a refresh is already under way on this connection: wait for its answer",
            )
            return
        refused = self._refused.get(conn.id)
        if refused is not None and time.monotonic() - refused < REFUSED_PAUSE:
            self._answer(
                conn,
                command.req_id,
                Status.FORBIDDEN,
                f"a refresh was refused less than {REFUSED_PAUSE:g} s ago: wait before the "
                "next one",
            )
            return
        self._refreshing.add(conn.id)
        self._spawn(self._judge(conn, command), f"refresh {conn.id}")

    async def _judge(self, conn: Connection, command: RefreshCommand) -> None:
        try:
            request = conn.link.request or HttpRequest("/", remote=conn.link.remote)
            found = await self._admission.authenticate(
                _renewed(request, command.credential), log=False
            )
        finally:
            self._refreshing.discard(conn.id)
        if conn.closing or conn.closed:
            return
        if isinstance(found, HttpResponse):
            text = found.body if isinstance(found.body, str) else "refused"
            self._refuse(conn, command.req_id, f"was refused ({found.status}): {text.strip()}")
            return
        old = conn.identity
        differ = [
            what
            for what, a, b in (
                ("name", old.name, found.name),
                ("roles", old.roles, found.roles),
                ("anonymity", old.anonymous, found.anonymous),
                ("claims", _lasting(old.claims), _lasting(found.claims)),
            )
            if a != b
        ]
        if differ:
            self._count("auth_failures")
            self._refuse(
                conn,
                command.req_id,
                f"is for another identity (its {' and '.join(differ)} differ): reconnect "
                "with it instead",
            )
            return
        conn.identity = dataclasses.replace(old, expires_at=found.expires_at)
        self._schedule(conn)
        self._count("refreshes")
        body: dict[str, Any] = {"expires_in": None}
        if found.expires_at is not None:
            body["expires_in"] = round(max(0.0, found.expires_at - self.clock()), 3)
        logger.debug("Connection %s (%r): credential refreshed", conn.id, old.name)
        self._answer(conn, command.req_id, Status.OK, "refreshed", body)

    def _refuse(self, conn: Connection, req_id: int, why: str) -> None:
        """Answer a refused refresh, pause the connection's refreshes, log (paced)."""
        now = time.monotonic()
        self._refused[conn.id] = now
        last = self._logged.get(conn.id)
        if last is None or now - last >= self._settings().warning_interval:
            self._logged[conn.id] = now
            logger.warning(
                "Connection %s (%r): a refresh of its credential %s",
                conn.id,
                conn.identity.name,
                why[:300],
            )
        self._answer(conn, req_id, Status.FORBIDDEN, f"the new credential {why}")

    def _answer(
        self,
        conn: Connection,
        req_id: int,
        status: Status,
        message: str,
        body: dict[str, Any] | None = None,
    ) -> None:
        frame = [FrameKind.REPLY, req_id, status.value, message, body or {}]
        conn.enqueue(conn.codec.encode(frame))

    def disconnect(self, connections: list[Connection], identity: str, reason: str) -> int:
        """Close every connection of the identity named ``identity`` with
        :attr:`~pl3xus_rx.protocol.CloseCode.DISCONNECTED` and ``reason``; how many."""
        closed = 0
        for conn in connections:
            if conn.outgoing or conn.closing or conn.identity.name != identity:
                continue
            conn.close_soon(CloseCode.DISCONNECTED, reason, discard_queue=True)
            closed += 1
        if closed:
            logger.info("Closed %d connections of %r: %r", closed, identity, reason)
        return closed
