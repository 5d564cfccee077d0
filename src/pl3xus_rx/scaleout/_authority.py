"""The authority: a SyncServer that also publishes its changes to NATS and serves the
commands of its gateways' clients."""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import time
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from .._http import HttpRequest
from ..protocol import FrameKind, NoticeKind, Status, sent_name
from ..security import Authenticator, Identity
from ..server import SyncServer
from ..sync import ComponentRegistration, FlushedChanges
from ._link import NatsOptions, connect
from ._wire import (
    TICK,
    Subjects,
    batches,
    decode,
    encode,
    entries_of,
    gateway_of,
    identity_from_wire,
)

__all__ = ["Authority"]

logger = logging.getLogger(__name__)

GATEWAY_TIMEOUT = 5.0
"""Seconds without a gateway's heartbeat after which its clients are taken as gone (their
control released)."""

MAX_PAGE = 5000
"""Most entities in one snapshot page."""

TICK_INTERVAL = 1.0
"""Seconds between the authority's ticks (its epoch and last sequence number)."""

REFUSAL_LOG_INTERVAL = 60.0
"""Seconds between two log lines about one gateway's refused anonymous clients."""

MAX_REFUSED = 100_000
"""Most refused clients remembered per gateway (to answer their commands); the oldest go
first (a forgotten one's commands are dropped as an unknown client's)."""

PROBE_TIMEOUT = 5.0
"""Seconds the authenticator may take to answer the anonymous probe (else: not admitted)."""

ANONYMOUS_REFUSED = (
    "this server requires authentication and the gateway admitted this client without "
    "credentials: connect with a token (the gateway must authenticate its clients as the "
    "authority does)"
)
"""The reason given to an anonymous gateway client whose command an authority refuses."""

_PROBE_HOST = "192.0.2.1"  # TEST-NET-1 (RFC 5737): an address that is never loopback


async def admits_anonymous(authenticator: Authenticator) -> bool:
    """Whether ``authenticator`` lets in a client that sends no credentials from another
    machine: asked once with such a handshake request. An exception, a refusal, a timeout
    or a non-anonymous answer all mean no."""
    request = HttpRequest.build(
        "/", remote=f"{_PROBE_HOST}:0", upgrade=True, remote_host=_PROBE_HOST
    )
    try:
        result = authenticator(request)
        if inspect.isawaitable(result):
            result = await asyncio.wait_for(result, PROBE_TIMEOUT)
    except Exception:  # (AuthenticationFailed is the usual answer)
        return False
    return isinstance(result, Identity) and result.anonymous


def _authenticator_of(server: SyncServer) -> Authenticator | None:
    # The server's own authenticator (None: protected mode).
    return server.authenticator


class Authority:
    """Publish ``server``'s flushed changes to NATS (cluster ``cluster``) and answer its
    gateways: snapshot pages, and their clients' commands under the same rules and
    identities as direct clients. ``async with Authority(...)`` (or ``start`` / ``stop``).

    A gateway vouches for its clients' identities; when ``server`` has an authenticator,
    an anonymous one is refused (its commands answered ``forbidden``) unless that
    authenticator admits clients without credentials too (see :meth:`accepts`).

    Args:
        server: The server whose World is the truth.
        url: The NATS server (``nats://host:4222``, ``tls://host:4222``); credentials in it
            are used but never logged.
        cluster: The cluster's name: its subjects are ``pl3xus.<cluster>.*``.
        nats_options: Credentials and TLS for NATS (:class:`NatsOptions`).
    """

    def __init__(
        self,
        server: SyncServer,
        url: str,
        cluster: str,
        *,
        nats_options: NatsOptions | None = None,
    ) -> None:
        self.server = server
        self.url = url
        """The NATS server (may hold credentials: show it through ``redact_url``)."""
        self.nats_options = nats_options
        """Credentials and TLS for the NATS connection."""
        self.subjects = Subjects(cluster)
        self.epoch = secrets.token_hex(8)
        """This run of the authority (gateways re-snapshot when it changes)."""
        self.seq = 0
        """The last batch published."""
        self.nc: NatsClient | None = None
        self._outbox: list[tuple[str, bytes]] = []
        self._draining: asyncio.Task[None] | None = None
        self._taps: list[Any] = []
        self._seen: dict[int, float] = {}  # gateway -> last heartbeat
        self._watch: asyncio.Task[None] | None = None
        self.refused_clients = 0
        """Gateway clients refused: anonymous ones while this server requires
        authentication (see :meth:`accepts`)."""
        self.refused_frames = 0
        """Commands of refused gateway clients (answered ``forbidden``, never handled)."""
        self._refused: dict[int, dict[int, None]] = {}  # gateway -> its refused, oldest first
        self._probed: tuple[Authenticator, bool] | None = None
        self._refusals_logged: dict[int, tuple[float, int]] = {}  # gateway -> (when, since)

    async def __aenter__(self) -> Authority:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect to NATS and start publishing."""
        if self.nc is not None:
            raise RuntimeError(f"this {type(self).__name__} is started already")

        if not await self._anonymous_allowed():
            logger.info(
                "gateways' anonymous clients will be refused: this server's authenticator "
                "admits no client without credentials"
            )
        self.nc = await connect(
            self.url,
            f"pl3xus-authority-{self.subjects.cluster}",
            logger,
            options=self.nats_options,
        )
        await self.nc.subscribe(self.subjects.snap, cb=self._snapshot)
        await self.nc.subscribe(self.subjects.up, cb=self._up)
        for reg in self.server.registry:
            self._taps.append(self.server.flushed(reg.model).subscribe(self._publisher(reg)))
        self.server.on_broadcast(lambda data: self._send(self.subjects.all, data))
        self._watch = asyncio.get_running_loop().create_task(self._watch_gateways())

    async def stop(self) -> None:
        """Stop publishing; forget the gateways' clients; close the NATS connection."""
        for tap in self._taps:
            tap.dispose()
        self._taps = []
        self.server.on_broadcast(None)
        if self._watch is not None:
            self._watch.cancel()
        for connection in self.server.remote_connections():
            self.server.remote_left(connection)
        self._refused.clear()
        if self.nc is not None:
            if self._draining is not None and not self._draining.done():
                await self._draining
            await self._drain()
            await self.nc.close()
            self.nc = None

    # ------------------------------------------------------------------ publishing

    def _publisher(self, reg: ComponentRegistration[Any]) -> Any:
        def publish(changes: FlushedChanges[Any]) -> None:
            payloads = batches(self.epoch, self.seq + 1, reg, changes, self.server.world)
            self.seq += len(payloads)
            for payload in payloads:
                self._send(self.subjects.sync, payload)

        return publish

    def _send(self, subject: str, data: bytes) -> None:
        # In order, from synchronous code (a flush): queued, published by one task.
        self._outbox.append((subject, data))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        nc = self.nc
        while self._outbox and nc is not None:
            batch, self._outbox = self._outbox, []
            for subject, data in batch:
                try:
                    await nc.publish(subject, data)
                except Exception as exc:  # disconnected: gateways re-snapshot on the gap
                    logger.warning("could not publish to %s: %s", subject, exc)

    # ------------------------------------------------------------------ answering

    async def _snapshot(self, msg: Msg) -> None:
        try:
            type_name, after, limit = decode(msg.data)
            reg = self.server.registry.by_name(str(type_name))
            if reg is None:
                await msg.respond(encode([self.epoch, self.seq, [], True, "unknown type"]))
                return
            rows, done = entries_of(
                self.server.world, reg, int(after), max(1, min(int(limit), MAX_PAGE))
            )
            # (published batches up to self.seq are reflected in the World read here)
            await msg.respond(encode([self.epoch, self.seq, rows, done, None]))
        except Exception:
            logger.exception("a snapshot request failed")

    async def _up(self, msg: Msg) -> None:
        try:
            message = decode(msg.data)
            kind = message[0]
            if kind == "frame":
                connection = int(message[1])
                if connection in self._refused.get(gateway_of(connection), ()):
                    self._refuse_frame(connection, message[2])
                else:
                    self.server.remote_frame(connection, message[2])
            elif kind == "hello":
                connection = int(message[1])
                self._seen[gateway_of(connection)] = time.monotonic()
                await self._hello(connection, identity_from_wire(message[2]))
            elif kind == "bye":
                connection = int(message[1])
                self._refused.get(gateway_of(connection), {}).pop(connection, None)
                self.server.remote_left(connection)
            elif kind == "alive":
                gateway, connections = int(message[1]), set(message[2])
                self._seen[gateway] = time.monotonic()
                for connection in self.server.remote_connections():
                    if gateway_of(connection) == gateway and connection not in connections:
                        self.server.remote_left(connection)  # a "bye" that got lost
                self._forget_refused(gateway, keep=connections)
        except Exception:
            logger.exception("a message from a gateway could not be handled")

    # ------------------------------------------------------------------ who may act

    async def accepts(self, identity: Identity) -> bool:
        """Whether a gateway's client with ``identity`` may send commands here. A gateway
        vouches for its clients (NATS is inside the trust boundary), but an anonymous one
        is accepted only where a direct client without credentials would be: when this
        server has no authenticator, or its authenticator admits anonymous clients too."""
        return not identity.anonymous or await self._anonymous_allowed()

    async def _anonymous_allowed(self) -> bool:
        authenticator = _authenticator_of(self.server)
        if authenticator is None:
            return True  # protected mode: the gateway's own admission decided
        if self._probed is None or self._probed[0] is not authenticator:
            self._probed = (authenticator, await admits_anonymous(authenticator))
        return self._probed[1]

    async def _hello(self, connection: int, identity: Identity) -> None:
        gateway = gateway_of(connection)
        if await self.accepts(identity):
            self._refused.get(gateway, {}).pop(connection, None)
            self.server.remote_joined(connection, identity, self._to_client)
            return
        self.server.remote_left(connection)  # (had it been introduced before: no more)
        self.refused_clients += 1
        refused = self._refused.setdefault(gateway, {})
        refused.pop(connection, None)
        refused[connection] = None
        if len(refused) > MAX_REFUSED:
            del refused[next(iter(refused))]
        self._log_refusal(gateway, connection)

    def _log_refusal(self, gateway: int, connection: int) -> None:
        now = time.monotonic()
        logged = self._refusals_logged.get(gateway)
        if logged is not None and now - logged[0] < REFUSAL_LOG_INTERVAL:
            self._refusals_logged[gateway] = (logged[0], logged[1] + 1)
            return
        if len(self._refusals_logged) >= 1024:  # (a bound, whatever the gateways claim)
            self._refusals_logged = {
                g: v for g, v in self._refusals_logged.items() if now - v[0] < REFUSAL_LOG_INTERVAL
            }
        self._refusals_logged[gateway] = (now, 0)
        more = f" ({logged[1]} more in the last minute)" if logged is not None and logged[1] else ""
        logger.warning(
            "gateway %s introduced an anonymous client (connection %s) but this server "
            "requires authentication: its commands are refused%s. Configure the gateway "
            "with the authority's authenticator (pl3xus-rx gateway --token/--jwt-key-file)",
            gateway,
            connection,
            more,
        )

    def _refuse_frame(self, connection: int, frame: Any) -> None:
        """Answer a refused client's command with ``forbidden`` (never handle it)."""
        self.refused_frames += 1
        if not isinstance(frame, list) or not frame:
            return
        reply: list[Any] | None = None
        if frame[0] == FrameKind.SEND and len(frame) > 2:
            entity = frame[2] if frame[2] is None or type(frame[2]) is int else None
            body = {
                "type": sent_name(frame[1]),
                "entity": entity,
                "status": Status.FORBIDDEN.value,
                "reason": ANONYMOUS_REFUSED,
            }
            reply = [FrameKind.NOTICE.value, NoticeKind.MESSAGE_REJECTED.value, body]
        elif len(frame) > 1 and type(frame[1]) is int:
            reply = [FrameKind.REPLY.value, frame[1], Status.FORBIDDEN.value, ANONYMOUS_REFUSED, {}]
        if reply is not None:
            self._to_client(connection, encode(reply))

    def _forget_refused(self, gateway: int, keep: set[int] | None = None) -> None:
        refused = self._refused.pop(gateway, None)
        if refused and keep:
            left = {c: None for c in refused if c in keep}
            if left:
                self._refused[gateway] = left

    def _to_client(self, connection: int, data: bytes) -> None:
        self._send(self.subjects.down(gateway_of(connection)), encode([connection, data]))

    def _tick(self) -> None:
        # "I am epoch E and have published up to S": a gateway that missed the last batches
        # (or never heard of this epoch: a restart with nothing changing) re-snapshots.
        self._send(self.subjects.sync, encode([self.epoch, self.seq, TICK, [], [], []]))

    async def _watch_gateways(self) -> None:
        self._tick()
        while True:
            await asyncio.sleep(TICK_INTERVAL)
            self._tick()
            now = time.monotonic()
            for gateway, seen in list(self._seen.items()):
                if now - seen > GATEWAY_TIMEOUT:
                    del self._seen[gateway]
                    gone = [c for c in self.server.remote_connections() if gateway_of(c) == gateway]
                    logger.warning(
                        "gateway %s silent for %.0f s: %d clients taken as gone",
                        gateway,
                        now - seen,
                        len(gone),
                    )
                    for connection in gone:
                        self.server.remote_left(connection)
                    self._forget_refused(gateway)
