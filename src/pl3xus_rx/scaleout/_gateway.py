"""A gateway: a SyncServer whose World is a replica of the authority's, fed over NATS. It
holds client WebSockets, serves subscriptions and snapshots from the replica (the same wire
protocol: a client cannot tell it from the authority), and forwards every command to the
authority, relaying the answers."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from ..net import Connected, Disconnected
from ..net._events import ConnectionId
from ..protocol import FrameKind, Status
from ..server import SyncServer
from ..world import EntityId
from ._link import NatsOptions, connect
from ._wire import (
    GATEWAY_SHIFT,
    TICK,
    Batch,
    Subjects,
    decode,
    encode,
    identity_to_wire,
)

__all__ = ["Gateway"]

logger = logging.getLogger(__name__)

PAGE = 2000
"""Entities asked for per snapshot page."""

HEARTBEAT = 1.0
"""Seconds between the gateway's heartbeats (with its live connections)."""


class Gateway:
    """Serve ``server``'s clients from a replica of the authority of ``cluster``.

    ``server`` must register what the authority registers (components, requests, queries,
    one-way messages, visibility rules, and the authenticator: clients authenticate here),
    so that its welcome and its checks are the authority's: give both the same setup
    function. Its World becomes the replica (filled and kept in step by the gateway).

    Args:
        server: The server that holds the clients.
        url: The NATS server; credentials in it are used but never logged.
        cluster: The authority's cluster name.
        gateway: This gateway's number (default: random, 1 to 2**20).
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
        self.server = server
        self.url = url
        """The NATS server (may hold credentials: show it through ``redact_url``)."""
        self.nats_options = nats_options
        """Credentials and TLS for the NATS connection."""
        self.subjects = Subjects(cluster)
        self.gateway = gateway if gateway is not None else secrets.randbelow(2**20) + 1
        """This gateway's number: its clients' connection ids start at ``gateway << 32``."""
        self.nc: NatsClient | None = None
        self.epoch: str | None = None
        self.seq = 0
        """The last batch applied."""
        self.synced = asyncio.Event()
        """Set while the replica is up to date (cleared during a snapshot)."""
        self.snapshots = 0
        """Snapshots taken (the first, and after each gap, restart or NATS reconnect)."""
        self._buffer: list[Batch] | None = None  # batches that arrive during a snapshot
        self._resync: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._events: Any = None
        self.heard = time.time()
        """When (wall clock) the replica was last known current: a batch applied in order,
        or a tick that found nothing missing. Protocol-v2 clients are told their data is
        as of then (``SyncServer.as_of_source``): while the authority is silent, their
        age grows."""

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect to NATS, take the first snapshot, start forwarding.

        Raises:
            ConnectionError: no NATS server answered.
        """
        if self.nc is not None:
            raise RuntimeError(f"this {type(self).__name__} is started already")

        async def reconnected() -> None:
            logger.info("NATS reconnected: taking a fresh snapshot")
            self._schedule_resync(hello=True)

        self.nc = await connect(
            self.url,
            f"pl3xus-gateway-{self.subjects.cluster}-{self.gateway}",
            logger,
            options=self.nats_options,
            reconnected=reconnected,
        )
        server = self.server
        server.net.number_connections_from(self.gateway << GATEWAY_SHIFT)
        server.forward_commands(self._forward)
        server.as_of_source = lambda: self.heard
        self._events = server.net.events.subscribe(self._on_event)
        await self.nc.subscribe(self.subjects.sync, cb=self._on_batch)
        await self.nc.subscribe(self.subjects.down(self.gateway), cb=self._on_down)
        await self.nc.subscribe(self.subjects.all, cb=self._on_all)
        await self._snapshot()
        self._spawn(self._heartbeat())

    async def stop(self) -> None:
        """Stop forwarding and close the NATS connection (clients of the server stay until
        it closes them; their commands are answered ``internal_error`` from then on, never
        applied to the replica)."""
        if self._events is not None:
            self._events.dispose()
        for task in list(self._tasks):
            task.cancel()
        if self.nc is not None:
            for cid in self.server.net.connections:
                await self._publish_up(["bye", int(cid)])
            nc, self.nc = self.nc, None  # (commands are refused from here on)
            await nc.drain()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ replica

    async def _on_batch(self, msg: Msg) -> None:
        try:
            batch = Batch.parse(decode(msg.data))
        except Exception:
            logger.exception("a batch could not be decoded; taking a fresh snapshot")
            self._schedule_resync()
            return
        if batch.type == TICK:
            if self._buffer is None and batch.epoch == self.epoch and batch.seq == self.seq:
                self.heard = time.time()  # nothing missing
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
        self.heard = time.time()

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
        """Page through every type's current values, then apply what arrived meanwhile."""
        assert self.nc is not None
        self.synced.clear()
        if self._buffer is None:
            self._buffer = []
        world = self.server.world
        start_seq: int | None = None
        epoch: str | None = None
        seen: dict[str, set[int]] = {}
        failures = 0
        while True:
            try:
                for reg in self.server.registry:
                    after, names = 0, seen.setdefault(reg.name, set())
                    while True:
                        reply = await self.nc.request(
                            self.subjects.snap, encode([reg.name, after, PAGE]), timeout=5
                        )
                        page_epoch, page_seq, rows, done, _error = decode(reply.data)
                        if epoch is None:
                            epoch, start_seq = page_epoch, page_seq
                        elif page_epoch != epoch:
                            raise RuntimeError("the authority restarted during the snapshot")
                        batch = Batch(epoch, 0, reg.name, rows, [], [])
                        batch.apply(world, reg)
                        names.update(row[0] for row in rows)
                        if done or not rows:
                            break
                        after = rows[-1][0]
                break
            except Exception as exc:
                failures += 1  # (no authority yet, or it restarted meanwhile)
                log = logger.warning if failures == 1 or failures % 60 == 0 else logger.debug
                log("snapshot failed %d times (%s); trying again", failures, exc or type(exc))
                epoch, start_seq, seen = None, None, {}
                await asyncio.sleep(0.5)
        assert epoch is not None and start_seq is not None
        # what the authority no longer has
        for reg in self.server.registry:
            names = seen.get(reg.name, set())
            for entity in [e for e in world.peek(reg.model) if e not in names]:
                world.remove(EntityId(entity), reg.model)
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
        self.heard = time.time()  # (the snapshot is as of about now)
        self.snapshots += 1
        if hello:  # a new authority (or a new NATS link): introduce every client again
            for cid in self.server.net.connections:
                await self._hello(cid)
        self.synced.set()

    # ------------------------------------------------------------------ clients

    def _on_event(self, event: object) -> None:
        if isinstance(event, Connected):
            self._spawn(self._hello(event.id))
        elif isinstance(event, Disconnected):
            self._spawn(self._publish_up(["bye", int(event.id)]))

    async def _hello(self, connection: ConnectionId) -> None:
        if not self.server.net.has_connection(connection):
            return
        identity = self.server.identity_of(connection)
        await self._publish_up(["hello", int(connection), identity_to_wire(identity)])

    def _forward(self, connection: ConnectionId, frame: list[Any]) -> None:
        nc = self.nc
        if nc is None or not nc.is_connected:
            # answered at once rather than left to time out in the client
            if frame[0] != FrameKind.SEND and len(frame) > 1 and type(frame[1]) is int:
                self.server.deliver(
                    int(connection),
                    [
                        FrameKind.REPLY,
                        frame[1],
                        Status.INTERNAL_ERROR.value,
                        "the gateway cannot reach the authority (NATS is down); not applied",
                        {},
                    ],
                )
            return
        self._spawn(self._publish_up(["frame", int(connection), frame]))

    async def _publish_up(self, message: list[Any]) -> None:
        if self.nc is None:
            return
        try:
            await self.nc.publish(self.subjects.up, encode(message))
        except Exception as exc:
            logger.warning("could not reach the authority: %s", exc)

    async def _on_down(self, msg: Msg) -> None:
        try:
            connection, data = decode(msg.data)
            frame = decode(data)
        except Exception:
            logger.exception("a frame from the authority could not be decoded")
            return
        if self.server.net.has_connection(ConnectionId(connection)):
            self.server.deliver(int(connection), frame)

    async def _on_all(self, msg: Msg) -> None:
        try:
            frame = decode(msg.data)
        except Exception:
            logger.exception("a frame from the authority could not be decoded")
            return
        for cid in self.server.net.connections:
            self.server.deliver(int(cid), frame)

    async def _heartbeat(self) -> None:
        while True:
            connections = [int(c) for c in self.server.net.connections]
            await self._publish_up(["alive", self.gateway, connections])
            await asyncio.sleep(HEARTBEAT)
