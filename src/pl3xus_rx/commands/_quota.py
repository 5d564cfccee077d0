"""Who spawned which entity, and how much each owner holds: the ledger behind the spawn
quotas and the default despawn policy. No I/O.

An entity a client spawned remembers its :class:`Owner`: the identity when authenticated
(all its connections share one account), the connection when anonymous (every anonymous
client is the same identity, so keying by it would make all of them one owner). The
server's own entities have no owner.

Each owner's account holds its entities and the bytes their components are charged: their
encoding (as ``max_value_bytes`` measures a value) plus :data:`OBJECT_COST` per value object
inside, so that the charge follows the memory they take. An entity leaves its account
however it goes — a client's DESPAWN, the server's ``world.despawn``, its parent's despawn —
because the ledger reads the World's own change trackers for the types it holds: the cost is
a few dict operations per change of those types, and catching up (at every SPAWN and
DESPAWN) costs the changes since the last time, never a walk of the World.

An anonymous connection that leaves keeps its account while its entities live: they count
against the server-wide limits until the server despawns them (``owned_by`` finds them),
and nobody can despawn them as their owner (connection ids are never reused).

Across a restart (a server with a state file), an identity's entities stay its own: the
name is durable. A connection is not: what anonymous clients spawned comes back owned by
:data:`RESTORED_ANONYMOUS`, an owner no client ever is, still counted against the
server-wide limits, exactly as if their connections had left.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..protocol import Status, to_wire
from ..sync._policy import Authorized, Denied, MutationContext
from ..sync._registry import ComponentRegistration
from ..sync._settings import SyncSettings
from ..sync._wire import encode_item_msgpack
from ..world import DESPAWNED, FINAL, ChangeTracker, EntityId, World
from ._effects import Reject

__all__ = ["RESTORED_ANONYMOUS", "Holdings", "Owner", "SpawnLedger", "charged_size"]


@dataclass(frozen=True, slots=True)
class Owner:
    """Who spawned an entity: an authenticated identity (by ``name``) or, for an anonymous
    client, its ``connection``. Exactly one of the two is set.

    Attributes:
        name: The authenticated identity's name (its connections share the account).
        connection: The anonymous client's connection id.
    """

    name: str | None = None
    connection: int | None = None

    @classmethod
    def of(cls, ctx: MutationContext) -> Owner:
        """The owner of what ``ctx`` spawns."""
        if ctx.identity.anonymous:
            return cls(connection=ctx.connection)
        return cls(name=ctx.identity.name)

    def __str__(self) -> str:
        if self.name is not None:
            return f"identity {self.name!r}"
        if self.connection == 0:
            return "anonymous clients before a restart"
        return f"anonymous connection {self.connection}"


RESTORED_ANONYMOUS = Owner(connection=0)
"""The owner of entities that anonymous clients spawned before a restart (restored from a
state file): connection 0, which no client ever has. Nobody despawns them as their owner;
they count against the server-wide spawn limits until the server despawns them
(``server.commands.owned_by(RESTORED_ANONYMOUS)`` finds them)."""


@dataclass(frozen=True, slots=True)
class Holdings:
    """What an owner (or every client together) holds spawned.

    Attributes:
        entities: Spawned entities alive.
        bytes: The bytes their components are charged (encoded, plus ``OBJECT_COST``
            per value object inside), as last written by clients.
    """

    entities: int
    bytes: int


OBJECT_COST = 56
"""Bytes charged per value object inside a spawned component (a string, a number, a list,
a map: what Python spends on each, whatever its encoding), on top of its encoded bytes: a
list of 300,000 two-letter strings is 1 MB encoded but some 18 MB in memory."""


def charged_size(reg: ComponentRegistration[Any], value: BaseModel) -> int:
    """The bytes ``value`` is charged as held: its size as one msgpack sync item (what
    ``max_value_bytes`` is compared with) plus :data:`OBJECT_COST` per value object in it,
    so that the charge follows the memory it takes; 0 if it cannot be encoded (the flush
    leaves such a value out)."""
    if reg.json_native:
        fields: Any = tuple(value.__dict__.values())
    else:
        dumped = to_wire(value)
        fields = [dumped[name] for name in reg.fields]
    try:
        encoded = len(encode_item_msgpack((0, fields)))
    except (ValueError, TypeError, OverflowError):
        return 0
    return encoded + OBJECT_COST * _objects(fields)


def _objects(fields: Any) -> int:
    """How many values ``fields`` holds, nested lists and maps (and their keys) included."""
    count = 0
    stack = [fields]
    while stack:
        item = stack.pop()
        count += 1
        if isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return count


class _Record:
    """One spawned entity: its owner and its components' sizes."""

    __slots__ = ("owner", "sizes")

    def __init__(self, owner: Owner, sizes: dict[type[BaseModel], int]) -> None:
        self.owner = owner
        self.sizes = sizes


class _Account:
    """One owner's entities and bytes."""

    __slots__ = ("bytes", "entities")

    def __init__(self) -> None:
        self.entities: set[EntityId] = set()
        self.bytes = 0


def _limit(name: str, limit: int) -> str:
    return f"(SyncSettings.{name}={limit})"


class SpawnLedger:
    """The owner of every client-spawned entity, and each owner's holdings.

    Args:
        world: The World the entities live in.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self.records: dict[EntityId, _Record] = {}
        """Every spawned entity alive (as of the last :meth:`catch_up`), with its record."""
        self.owners: dict[EntityId, Owner] = {}
        """The owner of each entity of :attr:`records` (copied whole by a state save)."""
        self._accounts: dict[Owner, _Account] = {}
        self._trackers: dict[type[BaseModel], ChangeTracker] = {}
        self._bare: set[EntityId] = set()  # spawned, no tracked component left: polled
        self.entities = 0
        """Spawned entities alive, all owners together."""
        self.bytes = 0
        """Their components' bytes, all owners together."""

    # ------------------------------------------------------------------ reading

    def owner_of(self, entity: EntityId) -> Owner | None:
        """Who spawned ``entity`` (``None``: the server did, or it does not exist)."""
        if not self.world.contains(entity):
            return None
        record = self.records.get(entity)
        return None if record is None else record.owner

    def holdings(self, owner: Owner | None = None) -> Holdings:
        """What ``owner`` holds (``None``: every client together)."""
        self.catch_up()
        if owner is None:
            return Holdings(self.entities, self.bytes)
        account = self._accounts.get(owner)
        return Holdings(0, 0) if account is None else Holdings(len(account.entities), account.bytes)

    def owned_by(self, owner: Owner) -> list[EntityId]:
        """The entities ``owner`` spawned that are alive, in no particular order."""
        self.catch_up()
        account = self._accounts.get(owner)
        return [] if account is None else list(account.entities)

    # ------------------------------------------------------------------ limits

    def check_spawn(self, owner: Owner, nbytes: int, settings: SyncSettings) -> None:
        """Catch up, then refuse (``forbidden``, naming the setting) a spawn of ``nbytes``
        by ``owner`` that would pass a limit."""
        self.catch_up()
        refusal = self._spawn_refusal(owner, nbytes, settings)
        if refusal is not None:
            raise Reject(Status.FORBIDDEN, refusal)

    def _spawn_refusal(self, owner: Owner, nbytes: int, settings: SyncSettings) -> str | None:
        account = self._accounts.get(owner)
        held, held_bytes = (0, 0) if account is None else (len(account.entities), account.bytes)
        limit = settings.max_spawned_entities_per_owner
        if limit is not None and held + 1 > limit:
            return (
                f"this client already holds {held} spawned entities "
                f"{_limit('max_spawned_entities_per_owner', limit)}: despawn some first"
            )
        limit = settings.max_spawned_bytes_per_owner
        if limit is not None and held_bytes + nbytes > limit:
            return (
                f"this client's spawned entities would hold {held_bytes + nbytes:,} bytes "
                f"{_limit('max_spawned_bytes_per_owner', limit)}"
            )
        limit = settings.max_spawned_entities
        if limit is not None and self.entities + 1 > limit:
            return (
                f"clients hold {self.entities} spawned entities, the server's limit "
                f"{_limit('max_spawned_entities', limit)}"
            )
        limit = settings.max_spawned_bytes
        if limit is not None and self.bytes + nbytes > limit:
            return (
                f"clients' spawned entities would hold {self.bytes + nbytes:,} bytes, "
                f"over the server's limit {_limit('max_spawned_bytes', limit)}"
            )
        return None

    def check_depth(self, parent: EntityId | None, settings: SyncSettings) -> None:
        """Refuse a spawn under ``parent`` deeper than ``max_spawn_depth`` (walks at most
        that many ancestors)."""
        limit = settings.max_spawn_depth
        if parent is None or limit is None:
            return
        depth = 2  # the new entity's, under a root parent
        for _ in self.world.ancestors(parent):
            depth += 1
            if depth > limit:
                break
        if depth > limit:
            raise Reject(
                Status.FORBIDDEN,
                f"an entity under {parent} would be deeper than the server allows "
                f"{_limit('max_spawn_depth', limit)}",
            )

    def check_growth(
        self, entity: EntityId, model: type[BaseModel], size: int, settings: SyncSettings
    ) -> None:
        """Refuse a write of ``size`` bytes to ``model`` of the spawned ``entity`` that
        would take its owner (or all clients) past a byte limit. Counts can only be too
        high before a catch-up, so the ledger catches up only when one seems passed."""
        refusal = self._growth_refusal(entity, model, size, settings)
        if refusal is None:
            return
        self.catch_up()
        refusal = self._growth_refusal(entity, model, size, settings)
        if refusal is not None:
            raise Reject(Status.FORBIDDEN, refusal)

    def _growth_refusal(
        self, entity: EntityId, model: type[BaseModel], size: int, settings: SyncSettings
    ) -> str | None:
        record = self.records.get(entity)
        if record is None:
            return None
        delta = size - record.sizes.get(model, 0)
        if delta <= 0:
            return None
        account = self._accounts[record.owner]
        limit = settings.max_spawned_bytes_per_owner
        if limit is not None and account.bytes + delta > limit:
            return (
                f"entity {entity} was spawned by a client whose spawned entities would then "
                f"hold {account.bytes + delta:,} bytes "
                f"{_limit('max_spawned_bytes_per_owner', limit)}"
            )
        limit = settings.max_spawned_bytes
        if limit is not None and self.bytes + delta > limit:
            return (
                f"clients' spawned entities would then hold {self.bytes + delta:,} bytes, "
                f"over the server's limit {_limit('max_spawned_bytes', limit)}"
            )
        return None

    # ------------------------------------------------------------------ bookkeeping

    def record(self, entity: EntityId, owner: Owner, sizes: dict[type[BaseModel], int]) -> None:
        """``owner`` spawned ``entity`` with components of these sizes."""
        self.records[entity] = _Record(owner, sizes)
        self.owners[entity] = owner
        account = self._accounts.get(owner)
        if account is None:
            account = self._accounts[owner] = _Account()
        account.entities.add(entity)
        nbytes = sum(sizes.values())
        account.bytes += nbytes
        self.entities += 1
        self.bytes += nbytes
        self._track(sizes)

    def resize(self, entity: EntityId, model: type[BaseModel], size: int) -> None:
        """A client wrote a ``model`` value of ``size`` bytes to ``entity`` (nothing if it
        is not a spawned entity)."""
        record = self.records.get(entity)
        if record is None:
            return
        delta = size - record.sizes.get(model, 0)
        record.sizes[model] = size
        self._accounts[record.owner].bytes += delta
        self.bytes += delta
        self._track((model,))

    def catch_up(self) -> None:
        """Release what left the World since the last call: despawned entities (however:
        by a client, the server, or with their parent) and removed components."""
        records = self.records
        for model, tracker in self._trackers.items():
            if not tracker.pending:
                continue
            pending = tracker.drain()
            if not records:
                continue
            for entity, code in pending.items():
                record = records.get(entity)
                if record is None or code & FINAL == 0:  # (0: upserted, and there now)
                    continue
                if code & FINAL == DESPAWNED or not self.world.contains(entity):
                    self._release(entity, record)
                    continue
                size = record.sizes.pop(model, 0)  # removed; the entity lives on
                self._accounts[record.owner].bytes -= size
                self.bytes -= size
                if not any(m in self._trackers for m in self.world.component_types(entity)):
                    self._bare.add(entity)  # its despawn would go unseen: poll it
        if self._bare:
            for entity in [e for e in self._bare if not self.world.contains(e)]:
                self._bare.discard(entity)
                record = records.get(entity)
                if record is not None:
                    self._release(entity, record)

    def _release(self, entity: EntityId, record: _Record) -> None:
        del self.records[entity]
        del self.owners[entity]
        self._bare.discard(entity)
        nbytes = sum(record.sizes.values())
        account = self._accounts[record.owner]
        account.entities.discard(entity)
        account.bytes -= nbytes
        if not account.entities:
            del self._accounts[record.owner]
        self.entities -= 1
        self.bytes -= nbytes

    def _track(self, models: Iterable[type[BaseModel]]) -> None:
        for model in models:
            if model not in self._trackers:
                self._trackers[model] = self.world.track(model, _nothing)

    # ------------------------------------------------------------------ the default policies

    def own_parents_only(
        self, world: World, ctx: MutationContext, parent: EntityId | None, values: Any
    ) -> Any:
        """The default spawn policy: ``Authorized`` as a root, under the server's entities
        or under the caller's own; never under another client's entity (its child would
        pin it: its owner could no longer despawn it)."""
        above = None if parent is None else self.owner_of(parent)
        if above is not None and above != Owner.of(ctx):
            return Denied(
                f"entity {parent} was spawned by another client: only its owner may spawn "
                "under it (the server's allow_spawn(policy) decides otherwise)"
            )
        return Authorized()

    def owners_only(self, world: World, ctx: MutationContext, entity: EntityId) -> Any:
        """The default despawn policy: ``Authorized`` when the caller's :class:`Owner`
        spawned ``entity`` and every entity below it (a despawn takes them too), else
        ``Denied`` saying which rule refused."""
        owner = Owner.of(ctx)
        if self.owner_of(entity) != owner:
            return Denied(
                f"entity {entity} was not spawned by this client: by default a client may "
                "despawn only what it spawned (the server's allow_despawn(policy) decides "
                "otherwise)"
            )
        stack = list(world.children(entity))
        while stack:
            below = stack.pop()
            if self.owner_of(below) != owner:
                return Denied(
                    f"entity {entity} has entities below it that this client did not spawn "
                    "(a despawn would take them too)"
                )
            stack.extend(world.children(below))
        return Authorized()


def _nothing() -> None:
    """The ledger's trackers wake nobody: it catches up when it decides."""
