"""A gateway: a SyncServer whose World is a replica of the authority's, fed over NATS. It
holds client WebSockets, serves subscriptions and snapshots from the replica (the same wire
protocol: a client cannot tell it from the authority), and forwards every command to the
authority, relaying the answers."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from ..net import Connected, Disconnected, HealthCheck
from ..net._events import ConnectionId
from ..protocol import CloseCode, FrameKind, Status
from ..server import SyncServer
from ..world import EntityId
from ._link import NatsOptions, connect
from ._metrics import GatewayCollector
from ._wire import (
    CLUSTER_VERSION,
    GATEWAY_SHIFT,
    MAX_GATEWAY,
    TICK,
    Announcement,
    Batch,
    Subjects,
    WireError,
    decode,
    encode,
    identity_to_wire,
    schema_differences,
    schema_table,
)

__all__ = ["Gateway"]

logger = logging.getLogger(__name__)

PAGE = 2000
"""Entities asked for per snapshot page."""

HEARTBEAT = 1.0
"""Seconds between the gateway's heartbeats (with its live connections and its state)."""

SILENCE = 3.0
"""Seconds without a tick or a batch from the authority after which the link counts as
lost: ``/healthz`` answers 503 and a WARNING is logged (INFO when it is back)."""

FENCE_MEMORY = 20.0
"""Seconds the newest fencing token seen stays authoritative without a word from its
holder: batches with an older token are dropped meanwhile (a stale authority), and followed
after (the token can go back when NATS loses its JetStream store)."""

MAX_UP = 10_000
"""Most messages waiting to go up to the authority; beyond, commands are answered
``internal_error`` at once."""


class Gateway:
    """Serve ``server``'s clients from a replica of the authority of ``cluster``.

    ``server`` must register what the authority registers (components, requests, queries,
    one-way messages, visibility rules, and the authenticator: clients authenticate here),
    so that its welcome and its checks are the authority's: give both the same setup
    function. Its World becomes the replica (filled and kept in step by the gateway). A
    gateway whose registrations differ from the authority's does not serve: it refuses
    clients, ``/healthz`` says why, and it logs the types and fields that differ.

    Args:
        server: The server that holds the clients.
        url: The NATS server; credentials in it are used but never logged.
        cluster: The authority's cluster name.
        gateway: This gateway's id, 1 to 2**20: fixed per NATS credential, so that NATS
            permissions confine it to its own subjects (default: random, with a warning).
        nats_options: Credentials and TLS for NATS (:class:`NatsOptions`).
    """

    def __init__(
        self,
        server: SyncServer,
        url: str,
        cluster: str,
        gateway: int | None = None,
        *,
        nats_options: NatsOptions | None = None,
    ) -> None:
        if gateway is not None and not 1 <= gateway <= MAX_GATEWAY:
            raise ValueError(f"a gateway id is 1 to {MAX_GATEWAY}, not {gateway}")
        self.server = server
        self.url = url
        """The NATS server (may hold credentials: show it through ``redact_url``)."""
        self.nats_options = nats_options
        """Credentials and TLS for the NATS connection."""
        self.subjects = Subjects(cluster)
        self.chosen_id = gateway is not None
        self.gateway = gateway if gateway is not None else secrets.randbelow(MAX_GATEWAY) + 1
        """This gateway's id: its clients' connection ids start at ``gateway << 32``."""
        self.nc: NatsClient | None = None
        self.epoch: str | None = None
        self.seq = 0
        """The last batch applied."""
        self.lease: int | None = None
        """The newest fencing token seen (batches with an older one are dropped)."""
        self.synced = asyncio.Event()
        """Set while the replica is up to date (cleared during a snapshot)."""
        self.snapshots = 0
        """Snapshots taken (the first, and after each gap, restart or NATS reconnect)."""
        self.fenced = 0
        """Batches dropped because they came from an authority whose lease is not the
        newest (a stale authority that woke up)."""
        self.skew: list[str] = []
        """How this gateway's registrations differ from the authority's (empty: they
        agree). While not empty the gateway refuses clients."""
        self.heard = time.time()
        """The authority's time (Unix seconds) the replica is current as of: the flush time
        of the last batch applied in order, or of the last tick that found nothing
        missing. Protocol-v2 clients are told their data is as of then."""
        self.announcement: Announcement | None = None
        """What the authority last said of itself."""
        self.draining = False
        """Set by :meth:`drain`: no more clients; those here move elsewhere."""
        self._received = time.monotonic()  # the last tick or batch received (any state)
        self._lease_heard = -1e9  # the last batch or tick with the newest token
        self._heard_at = time.monotonic()  # when (this gateway's clock) ``heard`` was set
        self._link_up = False
        self._lost_at: float | None = None
        self._snapshots_at_loss = 0
        self._buffer: list[Batch] | None = None  # batches that arrive during a snapshot
        self._resync: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._events: Any = None
        self._up: deque[bytes] = deque()
        self._sending: asyncio.Task[None] | None = None
        self._moving: set[int] = set()
        self._refusals: list[str] = []  # NATS permission violations heard
        self._version_skew = False  # ``skew`` says the wire version differs
        self.unreadable = 0
        """Messages on the batch subject that were not batches (dropped, logged)."""
        self.silence = SILENCE
        """Seconds without a word from the authority after which the link counts as lost."""
        self.forwarded = 0
        """Client commands forwarded to the authority."""
        self._announced = 0  # the highest seq the authority announced (this epoch)
        self._relaying: dict[tuple[int, int], float] = {}  # (client, request id) -> sent
        self._relay_seconds: Any = None
        self._collector: GatewayCollector | None = None

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect to NATS, meet the authority, take the first snapshot, start forwarding.

        Raises:
            ConnectionError: no NATS server answered, or NATS refused this gateway's
                subjects.
            StateConflict: ``server`` keeps a state file (only the authority persists).
        """
        if self.nc is not None:
            raise RuntimeError(f"this {type(self).__name__} is started already")
        if self.server.state_path is not None:  # (refused before any connection is made)
            self.server.forward_commands(self._forward)  # (raises StateConflict, naming it)
        if not self.chosen_id:
            logger.warning(
                "gateway id %d picked at random: NATS permissions cannot confine a gateway "
                "whose id changes (give each its own with --gateway-id; docs/scaling.md, NATS "
                "permissions)",
                self.gateway,
            )

        async def reconnected() -> None:
            logger.info("NATS reconnected: taking a fresh snapshot")
            self._schedule_resync(hello=True)

        self.nc = await connect(
            self.url,
            f"pl3xus-gateway-{self.subjects.cluster}-{self.gateway}",
            logger,
            options=self.nats_options,
            reconnected=reconnected,
            errors=self._nats_error,
        )
        server = self.server
        server.net.number_connections_from(self.gateway << GATEWAY_SHIFT)
        server.forward_commands(self._forward)
        server.as_of_source = self._as_of
        server.add_health_check("authority", self._health)
        if server.metrics is not None:
            from prometheus_client import Histogram

            self._collector = GatewayCollector(self)
            server.metrics.registry.register(self._collector)
            self._relay_seconds = Histogram(
                "pl3xus_gateway_relay_seconds",
                "From forwarding a client's command to the authority's answer arriving",
                buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
                registry=server.metrics.registry,
            )
        self._events = server.net.events.subscribe(self._on_event)
        self._buffer = []  # (batches before the first snapshot wait for it)
        await self.nc.subscribe(self.subjects.sync, cb=self._on_batch)
        await self.nc.subscribe(self.subjects.down(self.gateway), cb=self._on_down)
        await self.nc.subscribe(self.subjects.all, cb=self._on_all)
        await self.nc.subscribe(self.subjects.announce, cb=self._on_announce)
        await self._check_permissions()
        try:
            await self._ask_info()
        except Exception as exc:  # (no authority yet: the snapshot below waits for one)
            logger.debug("no announcement from the authority yet: %s", exc or type(exc))
        if self.skew:  # serving nothing, refusing clients, saying why; met again later
            self._schedule_resync()
        else:
            await self._snapshot()
        self._spawn(self._heartbeat())
        self._spawn(self._watch_link())

    def _as_of(self) -> tuple[float, float]:
        """``(as_of, age)`` for protocol-v2 clients: the authority's flush time the replica
        is current as of, and how long ago that was by this gateway's own clock (since it
        heard it; the hop takes about a millisecond): right even when the two machines'
        clocks disagree."""
        return self.heard, time.monotonic() - self._heard_at

    def _heard(self, as_of: float) -> None:
        self.heard = as_of
        self._heard_at = time.monotonic()

    def _nats_error(self, exc: Exception) -> None:
        text = str(exc)
        if "permissions violation" in text.lower() and len(self._refusals) < 10:
            self._refusals.append(text)

    async def _check_permissions(self) -> None:
        """Publish on this gateway's ``up`` subject once (a heartbeat) and wait for NATS to
        answer: a user whose permissions do not cover this gateway's subjects (the wrong
        ``--gateway-id`` for it) is refused now, loudly, rather than serving a replica whose
        commands go nowhere.

        Raises:
            ConnectionError: NATS refused one of this gateway's subjects.
        """
        assert self.nc is not None
        connections = [int(c) for c in self.server.net.connections]
        await self.nc.publish(
            self.subjects.up(self.gateway),
            encode(["alive", CLUSTER_VERSION, connections, {"state": "snapshotting"}]),
        )
        try:
            await self.nc.flush(timeout=2)
        except Exception as exc:  # (no answer: the snapshot below will say more)
            logger.debug("NATS did not answer a flush: %s", exc)
        for _ in range(20):  # (the error callback runs as a task: give it 0.2 s)
            if self._refusals:
                break
            await asyncio.sleep(0.01)
        if self._refusals:
            nc, self.nc = self.nc, None
            await nc.close()
            raise ConnectionError(
                f"NATS refused gateway {self.gateway}'s subjects ({self._refusals[0]}): is "
                f"--gateway-id {self.gateway} the id this NATS user may use? "
                "(docs/scaling.md, NATS permissions)"
            )

    async def stop(self) -> None:
        """Stop forwarding and close the NATS connection (clients of the server stay until
        it closes them; their commands are answered ``internal_error`` from then on, never
        applied to the replica)."""
        if self._events is not None:
            self._events.dispose()
            self._events = None
        for task in list(self._tasks):
            task.cancel()
        metrics = self.server.metrics
        if metrics is not None and self._collector is not None:
            metrics.registry.unregister(self._collector)
            if self._relay_seconds is not None:
                metrics.registry.unregister(self._relay_seconds)
            self._collector = self._relay_seconds = None
        if self.nc is not None:
            for cid in self.server.net.connections:
                self._publish_up(["bye", int(cid), int(cid) in self._moving])
            self._publish_up(["leaving", CLUSTER_VERSION])
            if self._sending is not None and not self._sending.done():
                await asyncio.wait([self._sending], timeout=2.0)
            nc, self.nc = self.nc, None  # (commands are refused from here on)
            await nc.drain()

    async def drain(self, timeout: float = 10.0) -> None:
        """Stop admitting clients, let the commands in flight be answered (up to
        ``timeout`` seconds), then close every client with 4004 (``CloseCode.MOVED``: a
        ``SyncProvider`` given several URLs moves to the next at once). The authority is
        told they are moving: control held by an authenticated identity waits for it
        (``SyncSettings.control_move_grace``). Then :meth:`stop`."""
        self.draining = True
        self._moving.update(int(c) for c in self.server.net.connections)
        await self.server.drain(timeout, reason="gateway draining: reconnect to another")
        await self.stop()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ the authority

    def _meet(self, announcement: Announcement) -> None:
        """Check what the authority announced against this gateway's registrations."""
        self.announcement = announcement
        if announcement.lease is not None and (
            self.lease is None or announcement.lease > self.lease
        ):
            self.lease = announcement.lease
        skew = schema_differences(schema_table(self.server), announcement.schema)
        if skew != self.skew:
            if skew:
                logger.error(
                    "this gateway's registrations differ from the authority's (%s); it refuses "
                    "clients until both run the same app: %s",
                    announcement.host,
                    "; ".join(skew[:20]),
                )
            elif self.skew:
                logger.info("the authority's registrations now match this gateway's: serving")
        self.skew = skew

    async def _ask_info(self) -> None:
        assert self.nc is not None
        reply = await self.nc.request(self.subjects.info, b"", timeout=5)
        self._meet(Announcement.parse(decode(reply.data)))

    async def _on_announce(self, msg: Msg) -> None:
        message: Any = None
        try:
            message = decode(msg.data)
            announcement = Announcement.parse(message)
        except Exception as exc:
            version = message.get("version") if isinstance(message, dict) else None
            if type(version) is int and version != CLUSTER_VERSION:
                self._version_error(str(exc))
            else:
                self.unreadable += 1
                logger.warning("an unreadable announcement was dropped: %s", exc)
            return
        self._meet(announcement)

    def _version_error(self, text: str) -> None:
        line = f"cluster wire version mismatch: {text}"
        if self.skew != [line]:
            logger.error("%s; this gateway refuses clients until both run the same release", line)
        self.skew = [line]
        self._version_skew = True

    # ------------------------------------------------------------------ replica

    async def _on_batch(self, msg: Msg) -> None:
        message: Any = None
        try:
            message = decode(msg.data)
            batch = Batch.parse(message)
        except Exception as exc:
            versioned = isinstance(exc, WireError) and isinstance(message, list) and message
            if versioned and type(message[0]) is int and message[0] != CLUSTER_VERSION:
                self._version_error(str(exc))  # (a peer of another release)
            else:  # (not a batch at all: nothing to serve from it)
                self.unreadable += 1
                if self.unreadable == 1 or self.unreadable % 1000 == 0:
                    logger.warning(
                        "%d unreadable message(s) on %s (%s)", self.unreadable, msg.subject, exc
                    )
            return
        if self._version_skew:  # (the right version again: meet the authority again)
            self._version_skew = False
            self.skew = []
            self._schedule_resync()
        if batch.lease is not None:
            if (
                self.lease is not None
                and batch.lease < self.lease
                and time.monotonic() - self._lease_heard < FENCE_MEMORY
            ):
                self.fenced += 1
                if self.fenced == 1 or self.fenced % 1000 == 0:
                    logger.warning(
                        "dropped %d batches from an authority whose lease is not the newest "
                        "(token %d < %d): a stale authority is still publishing",
                        self.fenced,
                        batch.lease,
                        self.lease,
                    )
                return
            if self.lease is not None and batch.lease < self.lease:
                logger.warning(
                    "the fencing token went back from %d to %d with nothing heard from the "
                    "newer holder for %.0f s (NATS lost its store?): following the authority "
                    "that speaks",
                    self.lease,
                    batch.lease,
                    FENCE_MEMORY,
                )
            self.lease = batch.lease
            self._lease_heard = time.monotonic()
        self._received = time.monotonic()
        if batch.epoch == self.epoch or self.epoch is None:
            self._announced = max(self._announced, batch.seq)
        else:
            self._announced = batch.seq
        if batch.type == TICK:
            if self._buffer is None and batch.epoch == self.epoch and batch.seq == self.seq:
                self._heard(batch.as_of)  # nothing missing
            if self._buffer is None and (batch.epoch != self.epoch or batch.seq > self.seq):
                logger.info(
                    "behind the authority (tick %s/%d): fresh snapshot", batch.epoch, batch.seq
                )
                self._schedule_resync(hello=batch.epoch != self.epoch)
            return
        if self._buffer is not None:
            self._buffer.append(batch)
            return
        if batch.epoch != self.epoch:
            logger.info("the authority restarted (epoch %s): fresh snapshot", batch.epoch)
            self._schedule_resync(hello=True)
            self._buffer = [batch]
            return
        if batch.seq <= self.seq:
            return  # already in the snapshot
        if batch.seq != self.seq + 1:
            logger.warning("batches %d to %d missing: fresh snapshot", self.seq + 1, batch.seq - 1)
            self._schedule_resync()
            self._buffer = [batch]
            return
        self._apply(batch)
        self._heard(batch.as_of)

    def _apply(self, batch: Batch) -> None:
        reg = self.server.registry.by_name(batch.type)
        if reg is not None:
            try:
                batch.apply(self.server.world, reg)
            except Exception:
                logger.exception("batch %d of %s could not be applied", batch.seq, batch.type)
        self.seq = batch.seq

    def _schedule_resync(self, hello: bool = False) -> None:
        if self._resync is not None and not self._resync.done():
            return
        self._buffer = self._buffer if self._buffer is not None else []
        self._resync = self._spawn(self._snapshot(hello=hello))

    async def _snapshot(self, hello: bool = False) -> None:
        """Meet the authority, page through every type's current values, then apply what
        arrived meanwhile."""
        assert self.nc is not None
        self.synced.clear()
        if self._buffer is None:
            self._buffer = []
        world = self.server.world
        start_seq: int | None = None
        epoch: str | None = None
        seen: dict[str, set[int]] = {}
        failures = 0
        started = time.monotonic()
        while True:
            try:
                await self._ask_info()
                if self.skew:  # (nothing to read that this gateway could serve)
                    raise RuntimeError("registrations differ from the authority's")
                for reg in self.server.registry:
                    after, names = 0, seen.setdefault(reg.name, set())
                    while True:
                        ask = encode([CLUSTER_VERSION, reg.name, after, PAGE])
                        reply = await self.nc.request(self.subjects.snap, ask, timeout=5)
                        _, page_epoch, lease, page_seq, rows, done, error = decode(reply.data)
                        if error is not None:
                            raise RuntimeError(f"the authority said: {error}")
                        if epoch is None:
                            epoch, start_seq = page_epoch, page_seq
                        elif page_epoch != epoch:
                            raise RuntimeError("the authority restarted during the snapshot")
                        if lease is not None and (self.lease is None or lease > self.lease):
                            self.lease = lease
                        batch = Batch(epoch, lease, 0, reg.name, rows, [], [], 0.0)
                        batch.apply(world, reg)
                        names.update(row[0] for row in rows)
                        if done or not rows:
                            break
                        after = rows[-1][0]
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1  # (no authority yet, it restarted meanwhile, or skew)
                log = logger.warning if failures == 1 or failures % 60 == 0 else logger.debug
                log("snapshot failed %d times (%s); trying again", failures, exc or type(exc))
                epoch, start_seq, seen = None, None, {}
                await asyncio.sleep(0.5 if not self.skew else 5.0)
        assert epoch is not None and start_seq is not None
        # what the authority no longer has
        removed = 0
        for reg in self.server.registry:
            names = seen.get(reg.name, set())
            for entity in [e for e in world.peek(reg.model) if e not in names]:
                world.remove(EntityId(entity), reg.model)
                removed += 1
        self.epoch, self.seq = epoch, start_seq
        buffered, self._buffer = self._buffer or [], None
        for batch in buffered:
            if batch.epoch == epoch and batch.seq > self.seq:
                if batch.seq != self.seq + 1:
                    logger.warning("a gap right after the snapshot: again")
                    self._schedule_resync()
                    self._buffer = [b for b in buffered if b.seq > self.seq]
                    return
                self._apply(batch)
        self._heard(time.time())  # (the snapshot is as of about now)
        self._received = time.monotonic()
        self.snapshots += 1
        entities = sum(len(v) for v in seen.values())
        logger.info(
            "snapshot %d of the authority (epoch %s, seq %d): %d values, %d removed, %.2f s",
            self.snapshots,
            epoch,
            start_seq,
            entities,
            removed,
            time.monotonic() - started,
        )
        if hello:  # a new authority (or a new NATS link): introduce every client again
            for cid in self.server.net.connections:
                self._hello(cid)
        self.synced.set()

    # ------------------------------------------------------------------ health

    def link(self) -> dict[str, Any]:
        """The authority link as ``/healthz`` and ``pl3xus-rx cluster`` show it."""
        silent = time.monotonic() - self._received
        lag = max(0.0, time.monotonic() - self._heard_at)
        return {
            "link": "up" if silent <= SILENCE else "lost",
            "state": self._state(),
            "epoch": self.epoch,
            "seq": self.seq,
            "seq_behind": max(0, self._announced - self.seq),
            "lag_ms": round(lag * 1000.0, 1),
            "last_heard_s": round(silent, 3),
            "lease": self.lease,
            "snapshots": self.snapshots,
            "fenced": self.fenced,
        }

    def _state(self) -> str:
        if self.skew:
            return "skew"
        if self.draining:
            return "draining"
        if time.monotonic() - self._received > SILENCE:
            return "silent"
        return "synced" if self.synced.is_set() else "snapshotting"

    def _health(self) -> HealthCheck:
        detail = self.link()
        state = detail["state"]
        if self.skew:
            detail["reason"] = "registrations differ from the authority's: " + "; ".join(
                self.skew[:5]
            )
        elif state == "silent":
            detail["reason"] = f"no word from the authority for {detail['last_heard_s']:.1f} s"
        elif state == "snapshotting" and self.snapshots == 0:
            detail["reason"] = "the replica is not complete yet"
        ok = state == "synced"
        admit = not self.skew and self.snapshots > 0
        return HealthCheck(ok=ok, detail=detail, admit=admit)

    async def _watch_link(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            if now - last > 1.5:  # this gateway's own stall: read what is queued first
                self._received = max(self._received, now)
                last = now
                continue
            last = now
            silent = now - self._received
            if self._lost_at is None and silent > SILENCE:
                self._lost_at = time.monotonic() - silent
                self._snapshots_at_loss = self.snapshots
                logger.warning(
                    "no word from the authority for %.1f s (NATS or the authority is down or "
                    "stalled): serving the replica as of %.1f s ago",
                    silent,
                    max(0.0, time.monotonic() - self._heard_at),
                )
            elif self._lost_at is not None and silent <= SILENCE and self.synced.is_set():
                logger.info(
                    "the authority is back after %.1f s; %d fresh snapshot(s) taken",
                    time.monotonic() - self._lost_at,
                    self.snapshots - self._snapshots_at_loss,
                )
                self._lost_at = None

    # ------------------------------------------------------------------ clients

    def _on_event(self, event: object) -> None:
        if isinstance(event, Connected):
            self._hello(event.id)
        elif isinstance(event, Disconnected):
            moving = int(event.id) in self._moving
            self._moving.discard(int(event.id))
            if self._relaying:
                gone = int(event.id)
                self._relaying = {k: v for k, v in self._relaying.items() if k[0] != gone}
            self._publish_up(["bye", int(event.id), moving])

    def _hello(self, connection: ConnectionId) -> None:
        if not self.server.net.has_connection(connection):
            return
        identity = self.server.identity_of(connection)
        hello = ["hello", CLUSTER_VERSION, int(connection), identity_to_wire(identity)]
        self._publish_up(hello)

    def _forward(self, connection: ConnectionId, frame: list[Any]) -> None:
        nc = self.nc
        if nc is None or not nc.is_connected:
            self._refuse(connection, frame, "the gateway cannot reach the authority (NATS is down)")
            return
        if not self._publish_up(["frame", int(connection), frame]):
            self._refuse(connection, frame, "the gateway is overloaded")
            return
        self.forwarded += 1
        timed = self._relay_seconds is not None and frame[0] != FrameKind.SEND
        if timed and type(frame[1]) is int and len(self._relaying) < 10_000:  # (bounded)
            self._relaying[int(connection), frame[1]] = time.perf_counter()

    def _refuse(self, connection: ConnectionId, frame: list[Any], why: str) -> None:
        # answered at once rather than left to time out in the client
        if frame[0] != FrameKind.SEND and len(frame) > 1 and type(frame[1]) is int:
            self.server.deliver(
                int(connection),
                [FrameKind.REPLY, frame[1], Status.INTERNAL_ERROR.value, f"{why}; not applied", {}],
            )

    def _publish_up(self, message: list[Any]) -> bool:
        """Queue ``message`` for the authority (in order, one task publishes). Returns
        ``False`` when the queue is full (:data:`MAX_UP`)."""
        if self.nc is None:
            return False
        if len(self._up) >= MAX_UP:
            return False
        self._up.append(encode(message))
        if self._sending is None or self._sending.done():
            self._sending = asyncio.get_running_loop().create_task(self._send_up())
        return True

    async def _send_up(self) -> None:
        subject = self.subjects.up(self.gateway)
        while self._up:
            nc = self.nc
            if nc is None:
                self._up.clear()
                return
            data = self._up.popleft()
            try:
                await nc.publish(subject, data)
            except Exception as exc:
                logger.warning("could not reach the authority: %s", exc)

    async def _on_down(self, msg: Msg) -> None:
        try:
            message = decode(msg.data)
            kind = message[0]
            if kind == "to":
                connection, frame = int(message[1]), decode(message[2])
                if self._relaying and frame[0] == FrameKind.REPLY:
                    sent = self._relaying.pop((connection, frame[1]), None)
                    if sent is not None and self._relay_seconds is not None:
                        self._relay_seconds.observe(time.perf_counter() - sent)
                if self.server.net.has_connection(ConnectionId(connection)):
                    self.server.deliver(connection, frame)
            elif kind == "who":
                for connection in message[1]:
                    self._hello(ConnectionId(int(connection)))
            elif kind == "close":
                _, connection, code, reason = message
                cid = ConnectionId(int(connection))
                if type(code) is not int or not 4000 <= code <= 4999:
                    code = int(CloseCode.DISCONNECTED)  # (only the application's own codes)
                reason = str(reason)[:120]
                if self.server.net.has_connection(cid):
                    logger.info("the authority closes client %s: %r", connection, reason)
                    self._spawn(self.server.net.disconnect(cid, code=code, reason=reason))
        except Exception:
            logger.exception("a message from the authority could not be handled")

    async def _on_all(self, msg: Msg) -> None:
        try:
            frame = decode(msg.data)
        except Exception:
            logger.exception("a frame from the authority could not be decoded")
            return
        if frame and frame[0] == "visibility":  # (the authority's visibility_changed)
            _, name, entity = frame
            reg = self.server.registry.by_name(name) if name is not None else None
            if name is None or reg is not None:
                model = reg.model if reg is not None else None
                target = None if entity is None else EntityId(int(entity))
                self.server.visibility_changed(model, target)
            return
        for cid in self.server.net.connections:
            self.server.deliver(int(cid), frame)

    async def _heartbeat(self) -> None:
        while True:
            connections = [int(c) for c in self.server.net.connections]
            status = self.link()
            status["address"] = self._address()
            self._publish_up(["alive", CLUSTER_VERSION, connections, status])
            await asyncio.sleep(HEARTBEAT)

    def _address(self) -> str | None:
        found = self.server.net.addresses
        if not found:
            return None
        host, port = found[0][:2]
        return f"{host}:{port}"
