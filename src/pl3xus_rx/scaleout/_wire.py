"""What an authority and its gateways say to each other over NATS: the cluster wire,
version :data:`CLUSTER_VERSION`. No I/O.

Subjects, for a cluster named ``C`` (docs/scaling.md has the table and the permissions):

- ``pl3xus.C.sync``, authority to every gateway: change batches ``[version, epoch, lease,
  seq, type, upserts, removed, despawned, as_of]`` with ``upserts`` as ``[entity, parent,
  [field values]]``. ``seq`` counts every batch of the authority's life (``epoch``, random
  at its start), so a gateway sees a gap or a restart at once; ``lease`` is the fencing
  token of the authority's lease (``None`` without fencing): a gateway drops what comes
  with an older token than the newest it has seen. ``as_of`` is the authority's flush time
  (Unix seconds): the time base of clients' staleness. Every ``as_of_interval`` a *tick*
  (``type`` ``""``, nothing else) repeats the last ``seq`` without being a batch: a gateway
  notices a lost batch or a restart with nothing changing, and knows the data is current.
- ``pl3xus.C.snap`` (request-reply): ``[version, type, after, limit]`` → ``[version,
  epoch, lease, seq, entries, done, error]``: a page of a type's current values (entities
  above ``after``), and the ``seq`` of the last batch published before it was read.
- ``pl3xus.C.info`` (request-reply, any payload) and ``pl3xus.C.announce`` (published at
  start and when it changes): the authority's :class:`Announcement`.
- ``pl3xus.C.status`` (request-reply): the cluster status (the authority and every gateway
  it hears), for ``pl3xus-rx cluster``.
- ``pl3xus.C.up.G``, gateway ``G`` to the authority: ``["hello", version, connection,
  identity]``, ``["frame", connection, frame]``, ``["bye", connection, moving]``,
  ``["alive", version, [connections], status]``, ``["leaving", version]`` (a gateway that
  stops: the authority forgets it). The authority takes ``G`` from the
  subject and drops any message about a connection that is not numbered from ``G``: with
  the documented NATS permissions a gateway can publish on its own ``up`` subject only,
  so it cannot speak for another gateway's clients.
- ``pl3xus.C.down.G``, the authority to gateway ``G``: ``["to", connection, frame]``,
  ``["close", connection, code, reason]`` (a client the authority refuses) and ``["who",
  [connections]]`` (clients it does not know: introduce them again).
- ``pl3xus.C.all``, the authority to every gateway: a msgpack frame for every client.

A gateway's client connections are numbered from ``gateway << 32``, so the authority knows
which gateway a connection belongs to and every id is unique across the cluster (gateway
ids go up to 2**20, so ids stay below 2**53 for JavaScript clients).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import msgpack
from pydantic import BaseModel

from ..protocol import MsgpackCodec, from_wire, to_wire
from ..security import Identity
from ..sync import ComponentRegistration, FlushedChanges
from ..world import EntityId, World

if TYPE_CHECKING:
    from ..server import SyncServer

__all__ = [
    "BATCH_ITEMS",
    "CLUSTER_VERSION",
    "GATEWAY_SHIFT",
    "MAX_GATEWAY",
    "TICK",
    "Announcement",
    "Batch",
    "Subjects",
    "WireError",
    "batches",
    "decode",
    "decode_untrusted",
    "encode",
    "entries_of",
    "gateway_of",
    "identity_from_wire",
    "identity_to_wire",
    "is_inbox",
    "schema_differences",
    "schema_table",
    "tick",
    "value_of",
]

CLUSTER_VERSION = 2
"""The version of the cluster wire. A peer speaking another version is refused loudly
(the first release of scale-out, version 1, carried no version at all)."""

GATEWAY_SHIFT = 32
"""A gateway's client connections are numbered from ``gateway << GATEWAY_SHIFT``."""

MAX_GATEWAY = 2**20
"""The highest gateway id (client ids stay below 2**53, exact in JavaScript)."""

TICK = ""
"""The ``type`` of a tick: the last batch published, without being one."""

BATCH_ITEMS = 2000
"""Most upserts in one published batch (NATS' default payload limit is 1 MiB)."""


class WireError(ValueError):
    """A cluster message that is not of this version's shape (or not of this version)."""


@dataclass(frozen=True, slots=True)
class Subjects:
    """The NATS subjects of one cluster."""

    cluster: str

    @property
    def prefix(self) -> str:
        """Every subject of the cluster starts with it."""
        return f"pl3xus.{self.cluster}"

    @property
    def sync(self) -> str:
        """The authority's change batches and ticks."""
        return f"{self.prefix}.sync"

    @property
    def snap(self) -> str:
        """Snapshot pages (request-reply)."""
        return f"{self.prefix}.snap"

    @property
    def info(self) -> str:
        """The authority's announcement (request-reply)."""
        return f"{self.prefix}.info"

    @property
    def announce(self) -> str:
        """The authority's announcement, published at its start and when it changes."""
        return f"{self.prefix}.announce"

    @property
    def status(self) -> str:
        """The cluster's status (request-reply): the authority and its gateways."""
        return f"{self.prefix}.status"

    @property
    def all(self) -> str:
        """The authority to every client of every gateway."""
        return f"{self.prefix}.all"

    @property
    def every_up(self) -> str:
        """What the authority subscribes to: every gateway's ``up`` subject."""
        return f"{self.prefix}.up.*"

    def up(self, gateway: int) -> str:
        """One gateway to the authority: its clients joining, their commands, leaving."""
        return f"{self.prefix}.up.{gateway}"

    def down(self, gateway: int) -> str:
        """The authority to one gateway and its clients."""
        return f"{self.prefix}.down.{gateway}"

    def gateway_of_subject(self, subject: str) -> int | None:
        """The gateway an ``up`` subject belongs to (``None``: not one)."""
        head, _, tail = subject.rpartition(".")
        if head != f"{self.prefix}.up" or not tail.isdigit() or len(tail) > 8:
            return None
        gateway = int(tail)
        return gateway if 1 <= gateway <= MAX_GATEWAY else None


def encode(message: Any) -> bytes:
    """One NATS payload."""
    data: bytes = msgpack.packb(message, use_bin_type=True)
    return data


def decode(data: bytes) -> Any:
    """One NATS payload back (from inside the cluster: trusted to be msgpack, not to be of
    the right shape)."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


_UNTRUSTED = MsgpackCodec()


def decode_untrusted(data: bytes) -> Any:
    """A payload a gateway (or anyone allowed to ask) sent the authority: decoded within the
    container budget clients' frames get (a crafted document cannot decode to many times
    its size).

    Raises:
        DecodeError: not one msgpack document, or over the budget.
    """
    return _UNTRUSTED.decode(data, untrusted=True)


def is_inbox(subject: str | None) -> bool:
    """Whether a request's reply subject is an inbox (``_INBOX.``...), the only place the
    authority answers: a reply subject is the requester's choice, and the authority may
    publish where the requester may not (the lease, the batches)."""
    return (
        subject is not None
        and subject.startswith("_INBOX.")
        and "*" not in subject
        and ">" not in subject
        and len(subject) <= 256
    )


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


# ---------------------------------------------------------------------- the schema table


def schema_table(server: SyncServer) -> dict[str, dict[str, Any]]:
    """What must be the same on the authority and its gateways: every registered type by
    kind and name, with its schema hash (components with their fields and field types)."""
    components: dict[str, Any] = {}
    for reg in server.registry:
        fields = reg.model.model_fields
        components[reg.name] = [
            reg.schema_hash,
            {name: _annotation(fields[name].annotation) for name in reg.fields if name in fields},
        ]
    tables = server.commands.wire_tables()
    return {
        "components": components,
        "requests": {row[0]: row[1:3] for row in tables["requests"]},
        "queries": {row[0]: row[1:3] for row in tables["queries"]},
        "one_way": {row[0]: row[1] for row in tables["one_way"]},
        "messages": {e.name: e.schema_hash for e in server.net.message_types},
    }


def _annotation(annotation: Any) -> str:
    name = getattr(annotation, "__name__", None)
    return (
        name
        if isinstance(name, str) and not getattr(annotation, "__args__", None)
        else (repr(annotation).replace("typing.", ""))
    )


def schema_differences(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """How two schema tables differ, one line per type (empty: they agree), from ``mine``'s
    point of view: "only here", "only there", or which fields differ."""
    lines: list[str] = []
    for kind in sorted(set(mine) | set(theirs)):
        here, there = mine.get(kind) or {}, theirs.get(kind) or {}
        for name in sorted(set(here) | set(there)):
            if name not in there:
                lines.append(f"{kind} {name}: only here (the authority has no such type)")
            elif name not in here:
                lines.append(f"{kind} {name}: only on the authority")
            elif here[name] != there[name]:
                lines.append(f"{kind} {name}: {_fields_differ(here[name], there[name])}")
    return lines


def _fields_differ(here: Any, there: Any) -> str:
    if not (isinstance(here, list) and isinstance(there, list) and len(here) == len(there) == 2):
        return "a different schema"
    mine, theirs = here[1], there[1]
    if not (isinstance(mine, dict) and isinstance(theirs, dict)):
        return "a different schema"
    parts = [f"+{f} ({mine[f]})" for f in mine if f not in theirs]
    parts += [f"-{f} ({theirs[f]})" for f in theirs if f not in mine]
    parts += [
        f"{f} is {mine[f]} here, {theirs[f]} there"
        for f in mine
        if f in theirs and mine[f] != theirs[f]
    ]
    if not parts:
        return "the same fields with other constraints or defaults"
    return "fields differ: " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Announcement:
    """What the authority says of itself: on ``info`` requests and ``announce``.

    Attributes:
        version: Its cluster wire version.
        epoch: This run of the authority.
        lease: Its fencing token (``None``: no fencing).
        auth: Whether it refuses anonymous gateway clients.
        schema: Its :func:`schema_table`.
        started: When it started (Unix seconds).
        host: Its host name and process id, for operators.
        as_of_interval: Seconds between its ticks.
    """

    version: int
    epoch: str
    lease: int | None
    auth: bool
    schema: Mapping[str, Any]
    started: float
    host: str
    as_of_interval: float
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        """As sent."""
        return {
            "version": self.version,
            "epoch": self.epoch,
            "lease": self.lease,
            "auth": self.auth,
            "schema": dict(self.schema),
            "started": self.started,
            "host": self.host,
            "as_of_interval": self.as_of_interval,
            **self.extra,
        }

    @staticmethod
    def parse(message: Any) -> Announcement:
        """An announcement as received.

        Raises:
            WireError: not an announcement, or of another wire version.
        """
        if not isinstance(message, dict):
            raise WireError("an announcement must be a map")
        version = message.get("version")
        if version != CLUSTER_VERSION:
            raise WireError(
                f"the authority speaks cluster wire version {version!r}; this gateway "
                f"speaks {CLUSTER_VERSION}"
            )
        try:
            lease = message.get("lease")
            return Announcement(
                version=CLUSTER_VERSION,
                epoch=str(message["epoch"]),
                lease=None if lease is None else int(lease),
                auth=bool(message.get("auth", False)),
                schema=dict(message.get("schema") or {}),
                started=float(message.get("started", 0.0)),
                host=str(message.get("host", "?")),
                as_of_interval=float(message.get("as_of_interval", 0.5)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(f"an unreadable announcement: {exc}") from None


# ---------------------------------------------------------------------- batches


def _fields(reg: ComponentRegistration[Any], value: BaseModel) -> list[Any]:
    dumped = to_wire(value)
    return [dumped[name] for name in reg.fields]


def value_of(reg: ComponentRegistration[Any], fields: list[Any]) -> Any:
    """A component value from its wire field values (validated)."""
    return from_wire(reg.model, dict(zip(reg.fields, fields, strict=True)))


@dataclass(frozen=True, slots=True)
class Batch:
    """One published batch of one type (or a tick: ``type`` :data:`TICK`)."""

    epoch: str
    lease: int | None
    seq: int
    type: str
    upserts: list[list[Any]]
    removed: list[int]
    despawned: list[int]
    as_of: float

    @staticmethod
    def parse(message: Any) -> Batch:
        """A decoded ``sync`` payload as a batch.

        Raises:
            WireError: of another wire version, or not a batch.
        """
        if not isinstance(message, list) or not message:
            raise WireError("a batch must be a list")
        if message[0] != CLUSTER_VERSION:
            raise WireError(
                f"a batch of cluster wire version {message[0]!r} (this side speaks "
                f"{CLUSTER_VERSION})"
            )
        try:
            _, epoch, lease, seq, type_name, upserts, removed, despawned, as_of = message
            return Batch(
                str(epoch),
                None if lease is None else int(lease),
                int(seq),
                str(type_name),
                upserts,
                removed,
                despawned,
                float(as_of),
            )
        except (TypeError, ValueError) as exc:
            raise WireError(f"an unreadable batch: {exc}") from None

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


def tick(epoch: str, lease: int | None, seq: int, as_of: float) -> bytes:
    """A tick's payload."""
    return encode([CLUSTER_VERSION, epoch, lease, seq, TICK, [], [], [], as_of])


def batches(
    epoch: str,
    lease: int | None,
    next_seq: int,
    reg: ComponentRegistration[Any],
    changes: FlushedChanges[Any],
    world: World,
    as_of: float,
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
                    CLUSTER_VERSION,
                    epoch,
                    lease,
                    next_seq + len(out),
                    reg.name,
                    rows[start : start + BATCH_ITEMS],
                    removed if last else [],
                    despawned if last else [],
                    as_of,
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
    # (the page's ids without sorting them all: O(n log limit), one pass)
    page = heapq.nsmallest(limit + 1, (e for e in world.peek(reg.model) if e > after))
    rows = []
    for entity in page[:limit]:
        value = world.get(entity, reg.model)
        if value is not None:
            rows.append([int(entity), _parent(world, entity), _fields(reg, value)])
    return rows, len(page) <= limit
