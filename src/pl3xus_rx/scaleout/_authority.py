"""The authority: a SyncServer that also publishes its changes to NATS and serves the
commands of its gateways' clients."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import secrets
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from .._http import HttpRequest
from ..net import HealthCheck
from ..protocol import CloseCode, FrameKind, NoticeKind, Status, sent_name
from ..security import Authenticator, Identity
from ..server import SyncServer
from ..sync import ComponentRegistration, FlushedChanges
from ..world import EntityId
from ._lease import LEASE_TTL, Lease, LeaseHeld, LeaseUnavailable
from ._link import NatsOptions, connect
from ._metrics import AuthorityCollector
from ._wire import (
    CLUSTER_VERSION,
    Announcement,
    Subjects,
    batches,
    decode,
    decode_untrusted,
    encode,
    entries_of,
    gateway_of,
    identity_from_wire,
    is_inbox,
    schema_table,
    tick,
)

__all__ = ["Authority"]

logger = logging.getLogger(__name__)

GATEWAY_TIMEOUT = 5.0
"""Seconds without a gateway's heartbeat after which its clients are taken as gone (their
control released), not counting the authority's own stalls (its loop or its NATS link)."""

FORGET_GATEWAY = 600.0
"""Seconds after which a silent gateway is no longer listed (one that stops says so and is
forgotten at once)."""

MAX_PAGE = 5000
"""Most entities in one snapshot page."""

REFUSAL_LOG_INTERVAL = 60.0
"""Seconds between two log lines about one gateway's refused anonymous clients."""

MAX_REFUSED = 100_000
"""Most refused clients remembered per gateway (to answer their commands); the oldest go
first (a forgotten one's commands are answered as an unknown client's)."""

RIVAL_PROBE = 0.5
"""Seconds a starting authority listens for another one answering on its cluster's
``info`` subject (the check that works without JetStream)."""

PROBE_TIMEOUT = 5.0
"""Seconds the authenticator may take to answer the anonymous probe (else: not admitted)."""

UNKNOWN_WAIT = 5.0
"""Seconds a command from a gateway client the authority does not know waits for the
gateway to introduce it again; then it is answered ``internal_error``."""

MAX_WAITING = 1000
"""Most commands waiting for their client's introduction, per gateway (beyond: answered
at once)."""

MAX_OUTBOX = 20_000
"""Most messages queued for NATS; beyond it change batches are dropped (gateways notice the
gap and re-snapshot) and frames to clients are dropped (counted, logged)."""

MAX_GATEWAYS = 4096
"""Most gateways the authority keeps track of (beyond, a silent one without clients is
forgotten to make room; if none is, the newcomer is refused, logged)."""

MAX_GATEWAY_CLIENTS = 50_000
"""Most clients one gateway may introduce (beyond, they are closed with a reason)."""

MAX_HELLO_BYTES = 16 * 1024
"""Largest ``hello`` (the identity a gateway vouches for: name, roles, claims)."""

MAX_WAITING_BYTES = 4 * 1024 * 1024
"""Most bytes of commands waiting for their clients' introduction, per gateway."""

LOG_INTERVAL = 10.0
"""Seconds between two log lines about the same kind of bad message."""

ANONYMOUS_REFUSED = (
    "this server requires authentication and the gateway admitted this client without "
    "credentials: connect with a token (the gateway must authenticate its clients as the "
    "authority does)"
)
"""The reason given to an anonymous gateway client the authority refuses."""

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


@dataclass(slots=True)
class _Gateway:
    """What the authority knows of one gateway."""

    id: int
    heard: float  # monotonic
    status: dict[str, Any] = field(default_factory=dict)
    refused: dict[int, None] = field(default_factory=dict)  # its refused clients, oldest first
    waiting: deque[tuple[float, int, Any, int]] = field(default_factory=deque)  # unknown's
    waiting_bytes: int = 0
    clients: set[int] = field(default_factory=set)  # introduced and accepted
    asked: dict[int, float] = field(default_factory=dict)  # "who" sent, by connection
    lapsed: dict[int, list[int]] = field(default_factory=dict)  # control lost while silent
    refusals_logged: tuple[float, int] = (-1e9, 0)
    silent: bool = False


class Authority:
    """Publish ``server``'s flushed changes to NATS (cluster ``cluster``) and answer its
    gateways: snapshot pages, and their clients' commands under the same rules and
    identities as direct clients. ``async with Authority(...)`` (or ``start`` / ``stop``).

    A gateway vouches for its clients' identities; when ``server`` has an authenticator,
    an anonymous one is refused (closed with 4003 and a reason; its commands answered
    ``forbidden``) unless that authenticator admits clients without credentials too (see
    :meth:`accepts`).

    Args:
        server: The server whose World is the truth.
        url: The NATS server (``nats://host:4222``, ``tls://host:4222``); credentials in it
            are used but never logged.
        cluster: The cluster's name: its subjects are ``pl3xus.<cluster>.*``.
        nats_options: Credentials and TLS for NATS (:class:`NatsOptions`).
        fencing: Hold the cluster's lease (a JetStream key-value bucket: nats-server with
            ``-js``): a second authority is refused at start, and one that wakes from a
            stall after another took the lease stops (:attr:`fenced`); gateways drop what
            it still sends. ``None`` (default): fencing when NATS has JetStream, else a
            warning and detection at start only (an authority already answering on the
            cluster is refused). ``True``: refuse to start without JetStream. ``False``:
            detection at start only.
        lease_ttl: Seconds an unrenewed lease lasts: above the longest stall the
            authority should survive as the authority.
    """

    def __init__(
        self,
        server: SyncServer,
        url: str,
        cluster: str,
        *,
        nats_options: NatsOptions | None = None,
        fencing: bool | None = None,
        lease_ttl: float = LEASE_TTL,
    ) -> None:
        self.server = server
        self.url = url
        """The NATS server (may hold credentials: show it through ``redact_url``)."""
        self.nats_options = nats_options
        """Credentials and TLS for the NATS connection."""
        self.subjects = Subjects(cluster)
        self.cluster = cluster
        """The cluster's name."""
        self.epoch = secrets.token_hex(8)
        """This run of the authority (gateways re-snapshot when it changes)."""
        self.seq = 0
        """The last batch published."""
        self.lease: int | None = None
        """The fencing token of this authority's lease (``None``: no fencing)."""
        self.fencing = fencing
        self.lease_ttl = lease_ttl
        self.fenced = asyncio.Event()
        """Set when this authority lost its lease to another: it has stopped publishing and
        answering (:attr:`fenced_reason` says why); a program should exit."""
        self.fenced_reason = ""
        self._lease: Lease | None = None
        self._subscriptions: list[Any] = []
        self._collector: AuthorityCollector | None = None
        self.started = time.time()
        """When this authority started (Unix seconds)."""
        self.nc: NatsClient | None = None
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._draining: asyncio.Task[None] | None = None
        self._taps: list[Any] = []
        self._gateways: dict[int, _Gateway] = {}
        self._watch: asyncio.Task[None] | None = None
        self._auth_required = False
        self._probed: tuple[Authenticator, bool] | None = None
        self._schema: dict[str, Any] | None = None
        self._resumed = time.monotonic()  # the end of the authority's last own stall
        self._echoed = time.monotonic()  # its last tick or batch heard back from NATS
        self.refused_clients = 0
        """Gateway clients refused: anonymous ones while this server requires
        authentication (see :meth:`accepts`)."""
        self.refused_frames = 0
        """Commands of refused gateway clients (answered ``forbidden``, never handled)."""
        self.foreign_messages = 0
        """Messages on a gateway's ``up`` subject about another gateway's clients (dropped:
        a gateway may speak only for its own)."""
        self.reintroduced = 0
        """Clients a gateway introduced again after the authority asked ("who")."""
        self.dropped = 0
        """Messages dropped because the NATS outbox was full (:data:`MAX_OUTBOX`)."""
        self.misdirected = 0
        """Requests whose reply subject was not an inbox (dropped: see :meth:`_answerable`)."""
        self._logged: dict[str, float] = {}
        self.unleased = 0
        """Messages not sent because the lease was not certainly held (after a stall that
        outlived it, until it is renewed or lost)."""
        self.stalls = 0
        """Stalls of the authority itself (its loop or its NATS link) discounted before
        judging gateways silent."""

    async def __aenter__(self) -> Authority:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect to NATS and start publishing.

        Raises:
            ConnectionError: no NATS server answered, or it refused the credentials.
        """
        if self.nc is not None:
            raise RuntimeError(f"this {type(self).__name__} is started already")

        self._auth_required = not await self._anonymous_allowed()
        if self._auth_required:
            logger.info(
                "gateways' anonymous clients will be refused: this server's authenticator "
                "admits no client without credentials"
            )
        self._schema = schema_table(self.server)

        async def reconnected() -> None:
            logger.info("NATS reconnected: announcing again")
            self._send(self.subjects.announce, encode(self.announcement().to_wire()))

        self.nc = await connect(
            self.url,
            f"pl3xus-authority-{self.subjects.cluster}",
            logger,
            options=self.nats_options,
            reconnected=reconnected,
        )
        try:
            await self._refuse_rival()
            await self._take_lease()
        except BaseException:
            nc, self.nc = self.nc, None
            await nc.close()
            raise
        for subject, handler in (
            (self.subjects.snap, self._snapshot),
            (self.subjects.info, self._info),
            (self.subjects.status, self._status),
            (self.subjects.every_up, self._up),
            (self.subjects.sync, self._echo),  # (its own ticks: the link works)
        ):
            self._subscriptions.append(await self.nc.subscribe(subject, cb=handler))
        for reg in self.server.registry:
            self._taps.append(self.server.flushed(reg.model).subscribe(self._publisher(reg)))
        self.server.on_broadcast(lambda data: self._send(self.subjects.all, data))
        self.server.on_visibility_changed(self._visibility_changed)
        self._send(self.subjects.announce, encode(self.announcement().to_wire()))
        self._watch = asyncio.get_running_loop().create_task(self._watch_gateways())
        if self.server.metrics is not None:
            self._collector = AuthorityCollector(self)
            self.server.metrics.registry.register(self._collector)

    async def _refuse_rival(self) -> None:
        """Another authority answering on this cluster: refuse to start (naming it)."""
        assert self.nc is not None
        try:
            reply = await self.nc.request(self.subjects.info, b"", timeout=RIVAL_PROBE)
        except Exception:  # (no responders, or a timeout: nobody there)
            return
        try:
            rival = Announcement.parse(decode(reply.data))
            holder = {"epoch": rival.epoch, "host": rival.host, "started": rival.started}
        except Exception:
            holder = {"host": "an authority of another release"}
        raise LeaseHeld(self.cluster, holder)

    async def _take_lease(self) -> None:
        assert self.nc is not None
        if self.fencing is False:
            logger.warning(
                "fencing is off: a second authority on cluster %r is refused at its start only",
                self.cluster,
            )
            return
        holder = {
            "epoch": self.epoch,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": self.started,
        }
        lease = Lease(
            self.nc.jetstream(),
            self.cluster,
            holder,
            self.lease_ttl,
            on_lost=self._lost,
            on_new_token=self._new_token,
        )
        try:
            self.lease = await lease.acquire()
        except LeaseUnavailable as exc:
            if self.fencing:
                raise
            logger.warning(
                "fencing is off (%s): a second authority on cluster %r is refused at its "
                "start only",
                exc,
                self.cluster,
            )
            return
        self._lease = lease
        logger.info("holding the lease of cluster %r (fencing token %d)", self.cluster, self.lease)

    def _lost(self, reason: str) -> None:
        """Another authority took the lease while this one was away: stop at once."""
        self.fenced_reason = f"this authority lost the lease of cluster {self.cluster!r}: {reason}"
        logger.error("%s; it stops publishing and answering", self.fenced_reason)
        self._unhook()
        self._outbox.clear()
        self.fenced.set()  # (the handlers answer nothing from now on)
        why = {"reason": self.fenced_reason}
        # (its World is no longer the truth: no new clients here; /healthz says why)
        self.server.add_health_check(
            "lease", lambda: HealthCheck(ok=False, detail=why, admit=False)
        )

    def _unhook(self) -> None:
        """Stop hearing the server's flushes, broadcasts and visibility changes, and stop
        ticking."""
        for tap in self._taps:
            tap.dispose()
        self._taps = []
        self.server.on_broadcast(None)
        self.server.on_visibility_changed(None)
        if self._watch is not None:
            self._watch.cancel()

    def _new_token(self, token: int) -> None:
        logger.warning(
            "the lease of cluster %r had lapsed (a stall?) and was taken again: fencing token %d",
            self.cluster,
            token,
        )
        self.lease = token
        self._send(self.subjects.announce, encode(self.announcement().to_wire()))

    async def stop(self) -> None:
        """Stop publishing; forget the gateways' clients; release the lease; close the
        NATS connection."""
        self._unhook()
        if self._collector is not None and self.server.metrics is not None:
            self.server.metrics.registry.unregister(self._collector)
            self._collector = None
        for connection in self.server.remote_connections():
            self.server.remote_left(connection)
        self._gateways.clear()
        if self.nc is not None:
            if self._draining is not None and not self._draining.done():
                await self._draining
            await self._drain()
            if self._lease is not None:
                await self._lease.release()
                self._lease = None
            await self.nc.close()
            self.nc = None

    def lease_held(self) -> bool:
        """Whether this authority certainly holds its cluster's lease now (``False``
        without fencing)."""
        return self._lease is not None and self._lease.held and not self.fenced.is_set()

    def announcement(self) -> Announcement:
        """What this authority says of itself to gateways (and ``pl3xus-rx cluster``)."""
        return Announcement(
            version=CLUSTER_VERSION,
            epoch=self.epoch,
            lease=self.lease,
            auth=self._auth_required,
            schema=self._schema if self._schema is not None else schema_table(self.server),
            started=self.started,
            host=f"{socket.gethostname()} pid {os.getpid()}",
            as_of_interval=self.server.settings.as_of_interval,
        )

    # ------------------------------------------------------------------ publishing

    def _publisher(self, reg: ComponentRegistration[Any]) -> Any:
        def publish(changes: FlushedChanges[Any]) -> None:
            payloads = batches(
                self.epoch, self.lease, self.seq + 1, reg, changes, self.server.world, time.time()
            )
            self.seq += len(payloads)
            for payload in payloads:
                self._send(self.subjects.sync, payload)

        return publish

    def _send(self, subject: str, data: bytes) -> None:
        # In order, from synchronous code (a flush): queued, published by one task. Bounded:
        # while NATS cannot take them, what does not fit is dropped and counted (a lost batch
        # is a gap the gateways repair with a snapshot).
        if self.fenced.is_set():
            return  # (another authority holds the lease: nothing more from this one)
        lease = self._lease
        if lease is not None and not lease.held and subject != self.subjects.announce:
            # (a stall outlived the lease: until it is renewed or lost, say nothing that
            # could pass for the live authority's; gateways re-snapshot on the gap)
            self.unleased += 1
            return
        if len(self._outbox) >= MAX_OUTBOX:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                logger.warning(
                    "NATS is not keeping up: %d messages dropped so far (gateways re-snapshot)",
                    self.dropped,
                )
            return
        self._outbox.append((subject, data))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        nc = self.nc
        while self._outbox and nc is not None:
            subject, data = self._outbox.popleft()
            try:
                await nc.publish(subject, data)
            except Exception as exc:  # disconnected: gateways re-snapshot on the gap
                logger.warning("could not publish to %s: %s", subject, exc)

    # ------------------------------------------------------------------ answering

    def _answerable(self, msg: Msg) -> bool:
        """Only requests whose reply subject is an inbox are answered: the requester picks
        it, and this authority may publish where the requester may not (its lease, its
        batches); anything else is dropped, counted and logged (paced)."""
        if self.fenced.is_set():
            return False
        if is_inbox(msg.reply):
            return True
        self.misdirected += 1
        self._paced(
            "misdirected",
            "a request on %s asked for its answer on %r, not an inbox: dropped (%d so far)",
            msg.subject,
            (msg.reply or "")[:100],
            self.misdirected,
        )
        return False

    def _paced(self, kind: str, text: str, *args: Any, level: int = logging.WARNING) -> None:
        now = time.monotonic()
        if now - self._logged.get(kind, -1e9) >= LOG_INTERVAL:
            self._logged[kind] = now
            logger.log(level, text, *args)

    async def _snapshot(self, msg: Msg) -> None:
        if not self._answerable(msg):
            return
        try:
            version, type_name, after, limit = decode_untrusted(msg.data)
            if version != CLUSTER_VERSION:
                error = (
                    f"cluster wire version {version!r} asked; this authority speaks "
                    f"{CLUSTER_VERSION}"
                )
                await msg.respond(
                    encode([CLUSTER_VERSION, self.epoch, self.lease, self.seq, [], True, error])
                )
                return
            reg = self.server.registry.by_name(str(type_name))
            if reg is None:
                reply = [
                    CLUSTER_VERSION,
                    self.epoch,
                    self.lease,
                    self.seq,
                    [],
                    True,
                    "unknown type",
                ]
                await msg.respond(encode(reply))
                return
            rows, done = entries_of(
                self.server.world, reg, int(after), max(1, min(int(limit), MAX_PAGE))
            )
            # (published batches up to self.seq are reflected in the World read here)
            await msg.respond(
                encode([CLUSTER_VERSION, self.epoch, self.lease, self.seq, rows, done, None])
            )
        except Exception as exc:
            self._paced("snapshot", "a snapshot request failed: %s", exc or type(exc))

    async def _info(self, msg: Msg) -> None:
        if not self._answerable(msg):
            return
        try:
            await msg.respond(encode(self.announcement().to_wire()))
        except Exception:
            logger.exception("an info request failed")

    async def _status(self, msg: Msg) -> None:
        if not self._answerable(msg):
            return
        try:
            await msg.respond(encode(self.status()))
        except Exception:
            logger.exception("a status request failed")

    def status(self) -> dict[str, Any]:
        """The cluster as this authority sees it (what ``pl3xus-rx cluster`` prints)."""
        now = time.monotonic()
        gateways = []
        for gateway in sorted(self._gateways.values(), key=lambda g: g.id):
            reported = gateway.status
            gateways.append(
                {
                    "id": gateway.id,
                    "address": reported.get("address"),
                    "clients": reported.get("clients", 0),
                    "lag_seq": max(0, self.seq - int(reported.get("seq", 0) or 0)),
                    "lag_ms": reported.get("lag_ms"),
                    "heard": round(now - gateway.heard, 3),
                    "state": "silent" if gateway.silent else reported.get("state", "?"),
                }
            )
        return {
            "version": CLUSTER_VERSION,
            "cluster": self.cluster,
            "epoch": self.epoch,
            "lease": self.lease,
            "started": self.started,
            "uptime": round(time.time() - self.started, 3),
            "entities": len(self.server.world.entities()),
            "clients": len(self.server.net.connections),
            "seq": self.seq,
            "gateways": gateways,
        }

    async def _up(self, msg: Msg) -> None:
        gateway_id = self.subjects.gateway_of_subject(msg.subject)
        if gateway_id is None or self.fenced.is_set():
            return
        try:
            message = decode_untrusted(msg.data)
            kind = message[0]
            gateway = self._gateway(gateway_id)
            if gateway is None:
                return
            if kind == "frame":
                connection = int(message[1])
                if self._foreign(gateway, connection):
                    return
                if connection in gateway.refused:
                    self._refuse_frame(connection, message[2])
                elif not self.server.remote_frame(connection, message[2]):
                    self._unknown(gateway, connection, message[2], len(msg.data))
            elif kind == "hello":
                _, version, connection, identity = message
                if version != CLUSTER_VERSION or self._foreign(gateway, int(connection)):
                    return
                if len(msg.data) > MAX_HELLO_BYTES:
                    self._close(
                        gateway,
                        int(connection),
                        "the identity is too large for the "
                        f"cluster ({len(msg.data)} bytes; at most {MAX_HELLO_BYTES})",
                    )
                    return
                await self._hello(gateway, int(connection), identity_from_wire(identity))
            elif kind == "bye":
                connection = int(message[1])
                moving = bool(message[2]) if len(message) > 2 else False
                if self._foreign(gateway, connection):
                    return
                gateway.refused.pop(connection, None)
                gateway.lapsed.pop(connection, None)
                gateway.clients.discard(connection)
                self._left(connection, moving)
            elif kind == "leaving":  # (it stopped: its clients said bye first)
                for connection in list(gateway.clients):
                    self._left(connection, False)
                self._gateways.pop(gateway.id, None)
                logger.info("gateway %s left the cluster", gateway.id)
            elif kind == "alive":
                _, version, connections, status = message
                if version != CLUSTER_VERSION:
                    return
                if len(connections) > MAX_GATEWAY_CLIENTS:
                    connections = connections[:MAX_GATEWAY_CLIENTS]
                self._alive(gateway, {int(c) for c in connections}, status)
        except Exception as exc:
            self._paced(
                f"bad {gateway_id}",
                "a message from gateway %s could not be handled: %s",
                gateway_id,
                f"{type(exc).__name__}: {str(exc)[:200]}",
            )

    def _left(self, connection: int, moving: bool) -> None:
        # (moving: a draining or silent gateway's signed-in clients keep their control for
        # SyncSettings.control_move_grace, waiting for them to come back)
        self.server.remote_left(connection, moving=moving)

    def _gateway(self, gateway_id: int) -> _Gateway | None:
        gateway = self._gateways.get(gateway_id)
        if gateway is None:
            if len(self._gateways) >= MAX_GATEWAYS:
                idle = next(
                    (g for g in self._gateways.values() if g.silent and not g.clients), None
                )
                if idle is None:
                    self._paced(
                        "full",
                        "gateway %s refused: %d gateways are known and none is silent",
                        gateway_id,
                        MAX_GATEWAYS,
                        level=logging.ERROR,
                    )
                    return None
                del self._gateways[idle.id]
            gateway = self._gateways[gateway_id] = _Gateway(gateway_id, time.monotonic())
            logger.info("gateway %s joined the cluster", gateway_id)
        return gateway

    def _foreign(self, gateway: _Gateway, connection: int) -> bool:
        if gateway_of(connection) == gateway.id:
            return False
        self.foreign_messages += 1
        if self.foreign_messages == 1 or self.foreign_messages % 1000 == 0:
            logger.warning(
                "gateway %s spoke for connection %s, which is not one of its clients: dropped "
                "(%d so far; give each gateway its own NATS user, docs/scaling.md)",
                gateway.id,
                connection,
                self.foreign_messages,
            )
        return True

    def _alive(self, gateway: _Gateway, connections: set[int], status: Any) -> None:
        now = time.monotonic()
        if gateway.silent:
            gateway.silent = False
            logger.info(
                "gateway %s heard again after %.1f s of silence", gateway.id, now - gateway.heard
            )
        gateway.heard = now
        gateway.status = _reported(status, len(connections))
        known = set()
        for connection in list(gateway.clients):
            if connection in connections:
                known.add(connection)
            else:
                gateway.clients.discard(connection)
                self.server.remote_left(connection)  # a "bye" that got lost
        gateway.refused = {c: None for c in gateway.refused if c in connections}
        unknown = [
            c
            for c in connections
            if c not in known and c not in gateway.refused and gateway_of(c) == gateway.id
        ]
        if unknown:  # (a stall made the authority take them as gone: introduce them again)
            self._who(gateway, unknown)

    def _who(self, gateway: _Gateway, connections: list[int]) -> None:
        now = time.monotonic()
        ask = [c for c in connections if now - gateway.asked.get(c, -1e9) >= 1.0][:10_000]
        if not ask:
            return
        if len(gateway.asked) > 20_000:
            gateway.asked = {c: t for c, t in gateway.asked.items() if now - t < 1.0}
        for connection in ask:
            gateway.asked[connection] = now
        self._send(self.subjects.down(gateway.id), encode(["who", ask]))

    def _unknown(self, gateway: _Gateway, connection: int, frame: Any, size: int) -> None:
        """A command from a client this authority does not know (taken as gone during a
        stall, or its introduction lost): kept until the gateway introduces it again, then
        handled; answered ``internal_error`` after :data:`UNKNOWN_WAIT` seconds."""
        if len(gateway.waiting) >= MAX_WAITING or gateway.waiting_bytes + size > MAX_WAITING_BYTES:
            self._unanswerable(connection, frame, "too many commands wait for their clients")
            return
        gateway.waiting.append((time.monotonic(), connection, frame, size))
        gateway.waiting_bytes += size
        self._who(gateway, [connection])

    def _unanswerable(self, connection: int, frame: Any, why: str) -> None:
        if (
            isinstance(frame, list)
            and len(frame) > 1
            and frame[0] != FrameKind.SEND
            and type(frame[1]) is int
        ):
            reason = f"the authority does not know this client ({why}); not applied"
            reply = [FrameKind.REPLY.value, frame[1], Status.INTERNAL_ERROR.value, reason, {}]
            self._to_client(connection, encode(reply))

    # ------------------------------------------------------------------ who may act

    async def accepts(self, identity: Identity) -> bool:
        """Whether a gateway's client with ``identity`` may send commands here. A gateway
        vouches for its clients (NATS is inside the trust boundary), but an anonymous one
        is accepted only where a direct client without credentials would be: when this
        server has no authenticator, or its authenticator admits anonymous clients too."""
        return not identity.anonymous or await self._anonymous_allowed()

    async def _anonymous_allowed(self) -> bool:
        authenticator = self.server.authenticator
        if authenticator is None:
            return True  # protected mode: the gateway's own admission decided
        if self._probed is None or self._probed[0] is not authenticator:
            self._probed = (authenticator, await admits_anonymous(authenticator))
        return self._probed[1]

    async def _hello(self, gateway: _Gateway, connection: int, identity: Identity) -> None:
        gateway.heard = max(gateway.heard, time.monotonic())
        if await self.accepts(identity):
            if connection not in gateway.clients and len(gateway.clients) >= MAX_GATEWAY_CLIENTS:
                self._close(
                    gateway, connection, f"the gateway has {MAX_GATEWAY_CLIENTS} clients already"
                )
                return
            gateway.refused.pop(connection, None)
            if gateway.asked.pop(connection, None) is not None:
                self.reintroduced += 1
            gateway.clients.add(connection)
            self.server.remote_joined(connection, identity, self._to_client)
            lapsed = gateway.lapsed.pop(connection, None)
            for entity in lapsed or ():
                if not self.server.sees(identity, EntityId(entity)):
                    continue  # (hidden from it now, or gone: never named to it)
                body = {
                    "entity": entity,
                    "reason": "lapsed",
                    "detail": "the authority did not hear this client's gateway for "
                    f"{GATEWAY_TIMEOUT:g} s and released its control",
                }
                self._to_client(
                    connection,
                    encode([FrameKind.NOTICE.value, NoticeKind.CONTROL_RELEASED.value, body]),
                )
            self._replay(gateway, connection)
            return
        gateway.clients.discard(connection)
        self.server.remote_left(connection)  # (had it been introduced before: no more)
        self.refused_clients += 1
        gateway.refused.pop(connection, None)
        gateway.refused[connection] = None
        if len(gateway.refused) > MAX_REFUSED:
            del gateway.refused[next(iter(gateway.refused))]
        self._log_refusal(gateway, connection)
        self._send(
            self.subjects.down(gateway.id),
            encode(["close", connection, int(CloseCode.DISCONNECTED), ANONYMOUS_REFUSED]),
        )
        self._replay(gateway, connection)

    def _close(self, gateway: _Gateway, connection: int, reason: str) -> None:
        """Have the gateway close one of its clients, with 4003 and ``reason``."""
        self._paced(
            f"close {gateway.id}",
            "gateway %s: client %s closed: %s",
            gateway.id,
            connection,
            reason,
        )
        message = ["close", connection, int(CloseCode.DISCONNECTED), reason]
        self._send(self.subjects.down(gateway.id), encode(message))

    def _replay(self, gateway: _Gateway, connection: int) -> None:
        """Handle the commands that waited for ``connection``'s introduction, in order."""
        if not gateway.waiting:
            return
        mine = [w for w in gateway.waiting if w[1] == connection]
        if not mine:
            return
        gateway.waiting = deque(w for w in gateway.waiting if w[1] != connection)
        gateway.waiting_bytes -= sum(w[3] for w in mine)
        for _, _, frame, _ in mine:
            if connection in gateway.refused:
                self._refuse_frame(connection, frame)
            else:
                self.server.remote_frame(connection, frame)

    def _log_refusal(self, gateway: _Gateway, connection: int) -> None:
        now = time.monotonic()
        when, since = gateway.refusals_logged
        if now - when < REFUSAL_LOG_INTERVAL:
            gateway.refusals_logged = (when, since + 1)
            return
        gateway.refusals_logged = (now, 0)
        more = f" ({since} more in the last minute)" if since else ""
        logger.warning(
            "gateway %s introduced an anonymous client (connection %s) but this server "
            "requires authentication: it is closed and its commands are refused%s. "
            "Configure the gateway with the authority's authenticator (pl3xus-rx gateway "
            "--token/--jwt-key-file)",
            gateway.id,
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

    def _visibility_changed(self, component: type[Any] | None, entity: EntityId | None) -> None:
        """Gateways apply read access where the bytes go out: they evaluate again too."""
        name = None
        if component is not None:
            reg = self.server.registry.find(component)
            name = reg.name if reg is not None else None
        target = None if entity is None else int(entity)
        self._send(self.subjects.all, encode(["visibility", name, target]))

    def _to_client(self, connection: int, data: bytes) -> None:
        self._send(self.subjects.down(gateway_of(connection)), encode(["to", connection, data]))

    # ------------------------------------------------------------------ membership

    def _tick(self) -> None:
        # "I am epoch E and have published up to S, current as of now": a gateway that missed
        # the last batches (or never heard of this epoch) re-snapshots; one that is in step
        # knows its data is as of now.
        self._send(self.subjects.sync, tick(self.epoch, self.lease, self.seq, time.time()))

    async def _echo(self, msg: Msg) -> None:
        # the authority hears its own ticks: while they come back, its NATS link works
        self._echoed = time.monotonic()

    async def _watch_gateways(self) -> None:
        interval = self.server.settings.as_of_interval
        self._tick()
        last = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            if now - last > max(2 * interval, 1.0):
                self._stall(f"the event loop was stalled for {now - last:.1f} s", now)
            last = now
            self._tick()
            if now - self._echoed > max(3 * interval, 1.5):
                self._stall("the NATS link is down or stalled (its own ticks do not return)", now)
            self._expire_waiting(now)
            for gateway in list(self._gateways.values()):
                silence = now - max(gateway.heard, self._resumed)
                if not gateway.silent and silence > GATEWAY_TIMEOUT:
                    self._silent(gateway, silence)
                elif gateway.silent and silence > FORGET_GATEWAY:
                    del self._gateways[gateway.id]  # (gone: not listed in the status forever)

    def _stall(self, why: str, now: float) -> None:
        """The authority itself could not hear anyone: its own silence is not the gateways'.
        Their clocks start again from now (queued heartbeats are read first)."""
        if now - self._resumed > 1.0:
            self.stalls += 1
            logger.warning("%s: gateways' silence is not counted meanwhile", why)
        self._resumed = now

    def _silent(self, gateway: _Gateway, silence: float) -> None:
        gateway.silent = True
        gone = list(gateway.clients)
        gateway.clients.clear()
        book = self.server.commands.control
        held: dict[int, list[int]] = {}
        for entity in book.held():
            for connection in book.sharers(entity):
                if gateway_of(connection) == gateway.id:
                    held.setdefault(connection, []).append(int(entity))
        logger.warning(
            "gateway %s silent for %.1f s: its %d clients taken as gone (%d held control; "
            "they are told when their gateway is back)",
            gateway.id,
            silence,
            len(gone),
            len(held),
        )
        for connection in gone:  # (authenticated holders' control waits for them a while)
            self._left(connection, moving=True)
        kept = set(book.held())  # (held still, or waiting for a moving holder)
        for connection, entities in held.items():
            lost = [e for e in entities if EntityId(e) not in kept]
            if lost:
                gateway.lapsed[connection] = lost
        gateway.refused.clear()

    def _expire_waiting(self, now: float) -> None:
        for gateway in self._gateways.values():
            waiting = gateway.waiting
            while waiting and now - waiting[0][0] > UNKNOWN_WAIT:
                _, connection, frame, size = waiting.popleft()
                gateway.waiting_bytes -= size
                self._unanswerable(connection, frame, "its gateway did not introduce it")


_STATES = frozenset({"synced", "snapshotting", "silent", "skew", "draining"})


def _reported(status: Any, clients: int) -> dict[str, Any]:
    """What a gateway's heartbeat says of it, kept only where well formed (it shows in the
    status and in /metrics, which must never fail on a gateway's word)."""
    if not isinstance(status, dict):
        status = {}
    kept: dict[str, Any] = {"clients": clients}
    address = status.get("address")
    if isinstance(address, str):
        kept["address"] = address[:100]
    seq = status.get("seq")
    if type(seq) is int and 0 <= seq < 2**63:
        kept["seq"] = seq
    lag = status.get("lag_ms")
    if type(lag) in (int, float) and 0 <= lag < 1e12:
        kept["lag_ms"] = lag
    state = status.get("state")
    if state in _STATES:
        kept["state"] = state
    return kept
