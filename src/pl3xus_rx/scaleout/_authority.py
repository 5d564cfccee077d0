"""The authority: a SyncServer that also publishes its changes to NATS and serves the
commands of its gateways' clients."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from ..server import SyncServer
from ..sync import ComponentRegistration, FlushedChanges
from ._link import connect
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


class Authority:
    """Publish ``server``'s flushed changes to NATS (cluster ``cluster``) and answer its
    gateways: snapshot pages, and their clients' commands under the same rules and
    identities as direct clients. ``async with Authority(...)`` (or ``start`` / ``stop``)."""

    def __init__(self, server: SyncServer, url: str, cluster: str) -> None:
        self.server = server
        self.url = url
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

    async def __aenter__(self) -> Authority:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect to NATS and start publishing."""
        if self.nc is not None:
            raise RuntimeError(f"this {type(self).__name__} is started already")

        self.nc = await connect(self.url, f"pl3xus-authority-{self.subjects.cluster}", logger)
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
                self.server.remote_frame(int(message[1]), message[2])
            elif kind == "hello":
                connection = int(message[1])
                self._seen[gateway_of(connection)] = time.monotonic()
                self.server.remote_joined(
                    connection, identity_from_wire(message[2]), self._to_client
                )
            elif kind == "bye":
                self.server.remote_left(int(message[1]))
            elif kind == "alive":
                gateway, connections = int(message[1]), set(message[2])
                self._seen[gateway] = time.monotonic()
                for connection in self.server.remote_connections():
                    if gateway_of(connection) == gateway and connection not in connections:
                        self.server.remote_left(connection)  # a "bye" that got lost
        except Exception:
            logger.exception("a message from a gateway could not be handled")

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
