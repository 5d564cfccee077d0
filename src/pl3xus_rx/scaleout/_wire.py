"""What an authority and its gateways say to each other over NATS. No I/O.

Subjects, for a cluster named ``C`` (see docs/scaling.md):

- ``pl3xus.C.sync``: the authority's change batches, ``[epoch, seq, type, upserts,
  removed, despawned]`` with ``upserts`` as ``[entity, parent, [field values]]``; ``seq``
  counts every batch of the authority's life (``epoch``, random at its start), so a gateway
  sees a gap or a restart at once.
  Once a second a *tick* ``[epoch, seq, "", [], [], []]`` repeats the last ``seq`` without
  being a batch, so a gateway notices a lost last batch or a restart with nothing changing.
- ``pl3xus.C.snap``: request-reply, ``[type, after, limit]`` → ``[epoch, seq, entries,
  done]``: a page of a type's current values (entities above ``after``), and the ``seq`` of
  the last batch published before it was read.
- ``pl3xus.C.up``: gateway to authority: ``["hello", connection, identity]``,
  ``["frame", connection, frame]``, ``["bye", connection]``, ``["alive", gateway, [connections]]``.
  An authority with an authenticator refuses the ``hello`` of an anonymous identity (unless
  its authenticator admits anonymous clients): that client's frames are answered
  ``forbidden`` on ``down.G``, never handled.
- ``pl3xus.C.down.G``: authority to gateway ``G``: ``[connection, msgpack frame]``.
- ``pl3xus.C.all``: authority to every gateway: a msgpack frame for every client.

A gateway's client connections are numbered from ``gateway << 32``, so the authority knows
which gateway a connection belongs to and every id is unique across the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import msgpack
from pydantic import BaseModel

from ..protocol import from_wire, to_wire
from ..security import Identity
from ..sync import ComponentRegistration, FlushedChanges
from ..world import EntityId, World

__all__ = [
    "BATCH_ITEMS",
    "GATEWAY_SHIFT",
    "TICK",
    "Batch",
    "Subjects",
    "batches",
    "decode",
    "encode",
    "entries_of",
    "gateway_of",
    "identity_from_wire",
    "identity_to_wire",
    "value_of",
]

GATEWAY_SHIFT = 32
"""A gateway's client connections are numbered from ``gateway << GATEWAY_SHIFT``."""

TICK = ""
"""The ``type`` of a tick: ``[epoch, seq, "", [], [], []]`` says the last batch published,
without being one (a gateway that is behind, or on another epoch, re-snapshots)."""

BATCH_ITEMS = 2000
"""Most upserts in one published batch (NATS' default payload limit is 1 MiB)."""


@dataclass(frozen=True, slots=True)
class Subjects:
    """The NATS subjects of one cluster."""

    cluster: str

    @property
    def sync(self) -> str:
        """The authority's change batches."""
        return f"pl3xus.{self.cluster}.sync"

    @property
    def snap(self) -> str:
        """Snapshot pages (request-reply)."""
        return f"pl3xus.{self.cluster}.snap"

    @property
    def up(self) -> str:
        """Gateways to the authority: clients joining, their commands, leaving."""
        return f"pl3xus.{self.cluster}.up"

    @property
    def all(self) -> str:
        """The authority to every client of every gateway."""
        return f"pl3xus.{self.cluster}.all"

    def down(self, gateway: int) -> str:
        """The authority to the clients of one gateway."""
        return f"pl3xus.{self.cluster}.down.{gateway}"


def encode(message: Any) -> bytes:
    """One NATS payload."""
    data: bytes = msgpack.packb(message, use_bin_type=True)
    return data


def decode(data: bytes) -> Any:
    """One NATS payload back (from inside the cluster: trusted)."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def gateway_of(connection: int) -> int:
    """The gateway a client connection belongs to (0: the authority's own)."""
    return connection >> GATEWAY_SHIFT


def identity_to_wire(identity: Identity) -> dict[str, Any]:
    """An identity as the gateway vouches for it."""
    return {
        "name": identity.name,
        "roles": sorted(identity.roles),
        "claims": dict(identity.claims),
        "anonymous": identity.anonymous,
    }


def identity_from_wire(data: dict[str, Any]) -> Identity:
    """The identity a gateway vouched for."""
    return Identity(
        name=str(data.get("name", "anonymous")),
        roles=frozenset(data.get("roles", ())),
        claims=MappingProxyType(dict(data.get("claims", {}))),
        anonymous=bool(data.get("anonymous", True)),
    )


def _fields(reg: ComponentRegistration[Any], value: BaseModel) -> list[Any]:
    dumped = to_wire(value)
    return [dumped[name] for name in reg.fields]


def value_of(reg: ComponentRegistration[Any], fields: list[Any]) -> Any:
    """A component value from its wire field values (validated)."""
    return from_wire(reg.model, dict(zip(reg.fields, fields, strict=True)))


@dataclass(frozen=True, slots=True)
class Batch:
    """One published batch of one type."""

    epoch: str
    seq: int
    type: str
    upserts: list[list[Any]]
    removed: list[int]
    despawned: list[int]

    @staticmethod
    def parse(message: Any) -> Batch:
        """A decoded ``sync`` payload as a batch."""
        epoch, seq, type_name, upserts, removed, despawned = message
        return Batch(str(epoch), int(seq), str(type_name), upserts, removed, despawned)

    def apply(self, world: World, reg: ComponentRegistration[Any]) -> None:
        """Apply to a replica World (ids and parents as the authority's)."""
        for entity, parent, fields in self.upserts:
            world.adopt(EntityId(entity), None if parent is None else EntityId(parent))
            world.insert(EntityId(entity), value_of(reg, fields))
        for entity in self.removed:
            if world.contains(EntityId(entity)):
                world.remove(EntityId(entity), reg.model)
        for entity in self.despawned:
            if world.contains(EntityId(entity)):
                world.despawn(EntityId(entity))


def batches(
    epoch: str,
    next_seq: int,
    reg: ComponentRegistration[Any],
    changes: FlushedChanges[Any],
    world: World,
) -> list[bytes]:
    """The payloads of one flushed batch of ``reg`` (split every :data:`BATCH_ITEMS`
    upserts), numbered from ``next_seq``."""
    rows = [[int(e), _parent(world, e), _fields(reg, v)] for e, v in changes.upserts.items()]
    removed = [int(e) for e in changes.removed]
    despawned = [int(e) for e in changes.despawned]
    out: list[bytes] = []
    for start in range(0, max(len(rows), 1), BATCH_ITEMS):
        last = start + BATCH_ITEMS >= len(rows)
        out.append(
            encode(
                [
                    epoch,
                    next_seq + len(out),
                    reg.name,
                    rows[start : start + BATCH_ITEMS],
                    removed if last else [],
                    despawned if last else [],
                ]
            )
        )
    return out


def _parent(world: World, entity: EntityId) -> int | None:
    if not world.contains(entity):
        return None
    parent = world.parent(entity)
    return None if parent is None else int(parent)


def entries_of(
    world: World, reg: ComponentRegistration[Any], after: int, limit: int
) -> tuple[list[list[Any]], bool]:
    """A snapshot page: ``[entity, parent, fields]`` of the entities above ``after`` that
    have ``reg``'s component, at most ``limit``; and whether it is the last page."""
    ids = sorted(e for e in world.peek(reg.model) if e > after)
    page = ids[:limit]
    rows = []
    for entity in page:
        value = world.get(entity, reg.model)
        if value is not None:
            rows.append([int(entity), _parent(world, entity), _fields(reg, value)])
    return rows, len(ids) <= limit
