"""Spawn quotas and ownership (issue 24, items 3 and 4): client-spawned entities remember
their owner (the identity, or the connection when anonymous); limits per owner and
server-wide, in entities and encoded bytes, and on parent depth, each refused ``forbidden``
naming its setting; the ledger follows every despawn (the server's, a parent's cascade);
bare ``allow_despawn()`` lets a client despawn only what it spawned. Sans-I/O, then a flood
on real sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import msgpack
import pytest
from conftest import UNIT, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import (
    ANONYMOUS,
    Authorized,
    Forbidden,
    Identity,
    NetworkSettings,
    SyncServer,
    SyncSettings,
)
from pl3xus_rx.commands import Commands, Hold, Holdings, Owner, Send
from pl3xus_rx.commands._quota import OBJECT_COST, charged_size
from pl3xus_rx.protocol import FrameKind
from pl3xus_rx.sync import ComponentBuilder, ComponentRegistry, EntityControl, MutationContext
from pl3xus_rx.world import EntityId, World


class Note(BaseModel):
    text: str = ""


class Tag(BaseModel):
    n: int = 0


class Label(BaseModel):
    """The server's own: read-only for clients."""

    text: str = ""


ANN = Identity.of("ann", "operator")
BOB = Identity.of("bob", "operator")


def allow(world: World, ctx: MutationContext, entity: EntityId) -> Authorized:
    return Authorized()


def ctx(connection: int, identity: Identity = ANONYMOUS) -> MutationContext:
    return MutationContext(connection, identity)


class Rig:
    """A World and its Commands: Note and Tag clients may write (no control needed),
    Label is read-only; clients may spawn, and despawn by the default (ownership)."""

    def __init__(self, **limits: Any) -> None:
        self.world = World()
        self.registry = ComponentRegistry()
        self.registry.add(EntityControl)
        ComponentBuilder(self.registry, Note).with_entity_policy(allow).build()
        ComponentBuilder(self.registry, Tag).with_entity_policy(allow).build()
        self.registry.add(Label)
        self.commands = Commands(self.world, self.registry, SyncSettings(**limits))
        self.commands.allow_spawn()
        self.commands.allow_despawn()
        self.req = 0

    def ask(self, who: MutationContext, kind: FrameKind, *args: Any) -> tuple[str, str, Any]:
        """Send a command; its REPLY's status, message and body."""
        self.req += 1
        for effect in self.commands.handle(who, [kind, self.req, *args], 0.0):
            if isinstance(effect, (Send, Hold)) and effect.frame[0] == FrameKind.REPLY:
                assert effect.frame[1] == self.req
                return effect.frame[2], effect.frame[3], effect.frame[4]
        raise AssertionError("no reply")

    def spawn(self, who: MutationContext, parent: int | None = None, **components: Any) -> int:
        """Spawn (it must succeed); the new entity."""
        status, message, body = self.ask(who, FrameKind.SPAWN, parent, components or {"Tag": {}})
        assert status == "ok", message
        return int(body["entity"])

    def refused(self, who: MutationContext, kind: FrameKind, *args: Any) -> str:
        """Send a command that must be refused ``forbidden``; its message."""
        status, message, _ = self.ask(who, kind, *args)
        assert status == "forbidden", (status, message)
        return message

    def size(self, model: type[BaseModel], value: BaseModel) -> int:
        reg = self.registry.find(model)
        assert reg is not None
        return charged_size(reg, value)


# ---------------------------------------------------------------------------- ownership


def test_a_spawned_entity_remembers_its_owner() -> None:
    rig = Rig()
    c = rig.commands
    by_ann = rig.spawn(ctx(1, ANN))
    by_anon = rig.spawn(ctx(5))
    server = rig.world.spawn(Label(text="cell"))
    assert c.owner_of(by_ann) == Owner(name="ann") == Owner.of(ctx(2, ANN))
    assert c.owner_of(by_anon) == Owner(connection=5)
    assert c.owner_of(server) is None and c.owner_of(99_999) is None
    # an identity's connections share; anonymous connections never do
    assert c.owns(ctx(2, ANN), by_ann) and not c.owns(ctx(3, BOB), by_ann)
    assert c.owns(ctx(5), by_anon) and not c.owns(ctx(6), by_anon)
    assert not c.owns(ctx(1, ANN), server)
    assert str(Owner(name="ann")) == "identity 'ann'"
    assert str(Owner(connection=5)) == "anonymous connection 5"
    assert sorted(c.owned_by(Owner(name="ann"))) == [by_ann]


def test_by_default_a_client_despawns_only_what_it_spawned() -> None:
    rig = Rig()
    world = rig.world
    cell = world.spawn(Label(text="cell"))
    mine = rig.spawn(ctx(1, ANN), cell)
    below = rig.spawn(ctx(2, ANN), mine)  # ann's other connection: still ann's
    theirs = rig.spawn(ctx(3, BOB))
    anon = rig.spawn(ctx(5))

    # the server's entity: never
    assert "was not spawned by this client" in rig.refused(ctx(1, ANN), FrameKind.DESPAWN, cell)
    # another identity's, another anonymous connection's
    assert "was not spawned" in rig.refused(ctx(1, ANN), FrameKind.DESPAWN, theirs)
    assert "was not spawned" in rig.refused(ctx(6), FrameKind.DESPAWN, anon)
    # by default nobody spawns under another client's entity (it would pin it)...
    message = rig.refused(ctx(3, BOB), FrameKind.SPAWN, below, {"Tag": {}})
    assert "was spawned by another client" in message
    # ...but a spawn policy may allow it: then bob's child below ann's entity is not ann's
    # to take with it, so her despawn is refused
    rig.commands.allow_spawn(lambda world, who, parent, values: Authorized())
    bobs_child = rig.spawn(ctx(3, BOB), below)
    message = rig.refused(ctx(1, ANN), FrameKind.DESPAWN, mine)
    assert "entities below it that this client did not spawn" in message
    assert all(map(world.contains, (cell, mine, below, theirs, anon, bobs_child)))

    # the owner may (any of its connections; the anonymous one only itself)
    assert rig.ask(ctx(3, BOB), FrameKind.DESPAWN, bobs_child)[0] == "ok"
    assert rig.ask(ctx(2, ANN), FrameKind.DESPAWN, mine)[0] == "ok"
    assert not world.contains(mine) and not world.contains(below)
    assert rig.ask(ctx(5), FrameKind.DESPAWN, anon)[0] == "ok"
    assert world.contains(cell)
    assert rig.commands.holdings(Owner(name="ann")) == Holdings(0, 0)


def test_an_application_policy_replaces_the_ownership_rule() -> None:
    rig = Rig()
    cell = rig.world.spawn(Label(text="cell"))
    annes = rig.spawn(ctx(1, ANN))
    rig.commands.allow_despawn(allow)  # the application's word alone: server entities too
    assert rig.ask(ctx(3, BOB), FrameKind.DESPAWN, annes)[0] == "ok"
    assert rig.ask(ctx(3, BOB), FrameKind.DESPAWN, cell)[0] == "ok"

    # a policy that keeps ownership and adds an exception calls owners_only
    commands = rig.commands

    def owners_or_admins(world: World, who: MutationContext, entity: EntityId) -> Any:
        if who.identity.has_role("admin"):
            return Authorized()
        return commands.owners_only(world, who, entity)

    commands.allow_despawn(owners_or_admins)
    bobs = rig.spawn(ctx(3, BOB))
    assert "was not spawned" in rig.refused(ctx(1, ANN), FrameKind.DESPAWN, bobs)
    root = ctx(9, Identity.of("root", "admin"))
    assert rig.ask(root, FrameKind.DESPAWN, bobs)[0] == "ok"


# ---------------------------------------------------------------------------- limits


def test_the_per_owner_entity_limit() -> None:
    rig = Rig(max_spawned_entities_per_owner=3)
    for connection in (1, 2, 1):
        rig.spawn(ctx(connection, ANN))
    message = rig.refused(ctx(2, ANN), FrameKind.SPAWN, None, {"Tag": {}})
    assert "max_spawned_entities_per_owner=3" in message
    assert "already holds 3 spawned entities" in message
    # every anonymous connection is an owner of its own; bob has his own account
    for connection in (5, 6):
        for _ in range(3):
            rig.spawn(ctx(connection))
        assert "max_spawned_entities_per_owner=3" in rig.refused(
            ctx(connection), FrameKind.SPAWN, None, {"Tag": {}}
        )
    rig.spawn(ctx(3, BOB))
    assert rig.commands.holdings(Owner(name="ann")).entities == 3
    assert rig.commands.holdings().entities == 10
    assert len(rig.world.entities()) == 10


def test_the_per_owner_byte_limit_counts_spawns_and_growing_mutations() -> None:
    rig = Rig(max_spawned_bytes_per_owner=1_100)
    note = Note(text="x" * 400)
    size = rig.size(Note, note)
    assert 400 + 2 * OBJECT_COST < size < 420 + 2 * OBJECT_COST  # (the fields, the text)
    first = rig.spawn(ctx(5), Note=note.model_dump())
    second = rig.spawn(ctx(5), Note=note.model_dump())
    assert rig.commands.holdings(Owner(connection=5)) == Holdings(2, 2 * size)
    message = rig.refused(ctx(5), FrameKind.SPAWN, None, {"Note": note.model_dump()})
    assert "max_spawned_bytes_per_owner=1100" in message
    assert len(rig.world.entities()) == 2

    # a MUTATE that grows a spawned entity's component is charged to its owner...
    big = {"text": "y" * 700}
    message = rig.refused(ctx(5), FrameKind.MUTATE, "Note", first, big)
    assert "max_spawned_bytes_per_owner=1100" in message
    assert rig.world.get(first, Note) == note
    # ...whoever sends it (the entity's owner pays: the limit bounds what it holds)
    message = rig.refused(ctx(6), FrameKind.MUTATE, "Note", first, big)
    assert "max_spawned_bytes_per_owner=1100" in message
    # a new component on it counts too; shrinking gives bytes back
    assert rig.ask(ctx(5), FrameKind.MUTATE, "Note", second, {"text": ""})[0] == "ok"
    small = rig.size(Note, Note())
    assert rig.commands.holdings(Owner(connection=5)).bytes == size + small
    assert rig.ask(ctx(5), FrameKind.MUTATE, "Tag", second, {"n": 7})[0] == "ok"
    tag = rig.size(Tag, Tag(n=7))
    assert rig.commands.holdings(Owner(connection=5)).bytes == size + small + tag
    assert rig.ask(ctx(5), FrameKind.MUTATE, "Note", first, {"text": "z" * 500})[0] == "ok"
    grown = rig.size(Note, Note(text="z" * 500))
    assert rig.commands.holdings(Owner(connection=5)) == Holdings(2, grown + small + tag)
    # the server's own entities are not counted
    server = rig.world.spawn(Note())
    assert rig.ask(ctx(5), FrameKind.MUTATE, "Note", server, {"text": "w" * 900})[0] == "ok"
    assert rig.commands.holdings() == Holdings(2, grown + small + tag)


def test_the_server_wide_limits() -> None:
    rig = Rig(max_spawned_entities=4)
    for connection in range(1, 5):
        rig.spawn(ctx(connection))
    message = rig.refused(ctx(9), FrameKind.SPAWN, None, {"Tag": {}})
    assert "max_spawned_entities=4" in message
    rig.world.spawn(Tag())  # the server's own never count
    note = {"text": "x" * 400}
    tags, notes = 4 * rig.size(Tag, Tag()), 2 * rig.size(Note, Note(**note))
    limit = tags + notes + rig.size(Tag, Tag())  # room for two notes and one more tag
    rig.commands.settings = SyncSettings(max_spawned_bytes=limit)
    rig.spawn(ctx(10), Note=note)
    rig.spawn(ctx(11), Note=note)
    message = rig.refused(ctx(12), FrameKind.SPAWN, None, {"Note": note})
    assert f"max_spawned_bytes={limit}" in message
    # growth counts server-wide too
    entity = rig.spawn(ctx(12))
    message = rig.refused(ctx(12), FrameKind.MUTATE, "Note", entity, note)
    assert f"max_spawned_bytes={limit}" in message


def test_the_parent_depth_limit() -> None:
    rig = Rig(max_spawn_depth=3)
    top = rig.world.spawn(Label(text="cell"))  # depth 1, the server's: it counts
    second = rig.spawn(ctx(5), top)  # 2
    third = rig.spawn(ctx(5), second)  # 3
    message = rig.refused(ctx(5), FrameKind.SPAWN, third, {"Tag": {}})
    assert "max_spawn_depth=3" in message
    assert rig.world.children(third) == []
    rig.spawn(ctx(5), top)  # wide is fine
    # a long chain costs the walk up to the limit, not the whole chain
    chain = top
    for _ in range(1_000):
        chain = rig.world.spawn(Tag(), parent=chain)
    assert "max_spawn_depth=3" in rig.refused(ctx(5), FrameKind.SPAWN, chain, {"Tag": {}})
    rig.commands.settings = SyncSettings(max_spawn_depth=None)
    rig.spawn(ctx(5), chain)


def test_a_refusal_needs_the_limit_passed_and_a_hidden_parent_stays_hidden() -> None:
    rig = Rig(max_spawn_depth=1)
    # the depth rule is decided after the parent passed the gate: a missing parent is
    # not_found, never a depth refusal that would confirm it exists
    status, message, _ = rig.ask(ctx(5), FrameKind.SPAWN, 99_999, {"Tag": {}})
    assert status == "not_found" and "max_spawn_depth" not in message
    rig.spawn(ctx(5))  # a root is depth 1


# ---------------------------------------------------------------------------- the ledger


def test_quota_is_released_however_an_entity_goes() -> None:
    rig = Rig(max_spawned_entities_per_owner=3)
    world, commands = rig.world, rig.commands
    cell = world.spawn(Label(text="cell"))
    a = rig.spawn(ctx(5), cell, Note={"text": "a"})
    b = rig.spawn(ctx(5), a, Note={"text": "b"})
    rig.spawn(ctx(5), b)
    rig.refused(ctx(5), FrameKind.SPAWN, None, {"Tag": {}})
    # the server despawns the cell: all three go with it, and ann's account is empty
    world.despawn(cell)
    assert commands.holdings(Owner(connection=5)) == Holdings(0, 0)
    assert commands.holdings() == Holdings(0, 0)
    # the server despawns one directly
    d = rig.spawn(ctx(5), Note={"text": "d"})
    world.despawn(d)
    assert commands.holdings() == Holdings(0, 0)
    assert commands.owner_of(d) is None
    # the server removes a component (its bytes go), then all of them, then despawns it
    e = rig.spawn(ctx(5), Note={"text": "e" * 100}, Tag={"n": 1})
    world.remove(e, Note)
    assert commands.holdings() == Holdings(1, rig.size(Tag, Tag(n=1)))
    world.remove(e, Tag)
    assert commands.holdings() == Holdings(1, 0)
    world.despawn(e)
    assert commands.holdings() == Holdings(0, 0)
    # removed and put back by a client before the ledger looked: counted once
    f = rig.spawn(ctx(5), Note={"text": "f"}, Tag={})
    world.remove(f, Note)
    assert rig.ask(ctx(5), FrameKind.MUTATE, "Note", f, {"text": "ff"})[0] == "ok"
    assert commands.holdings() == Holdings(
        1, rig.size(Note, Note(text="ff")) + rig.size(Tag, Tag())
    )
    for _ in range(2):
        rig.spawn(ctx(5))
    assert commands.holdings(Owner(connection=5)).entities == 3


def test_an_anonymous_connection_that_leaves_keeps_its_count_until_the_server_cleans_up() -> None:
    rig = Rig(max_spawned_entities=4)
    commands = rig.commands
    left = [rig.spawn(ctx(5)) for _ in range(3)]
    commands.connection_closed(5)
    owner = Owner(connection=5)
    assert commands.holdings(owner).entities == 3  # still held, bounded server-wide
    assert sorted(commands.owned_by(owner)) == left
    rig.spawn(ctx(6))
    assert "max_spawned_entities=4" in rig.refused(ctx(7), FrameKind.SPAWN, None, {"Tag": {}})
    for entity in commands.owned_by(owner):  # what an application does on Disconnected
        rig.world.despawn(entity)
    assert commands.holdings(owner) == Holdings(0, 0)
    assert commands.holdings() == Holdings(1, rig.size(Tag, Tag()))
    rig.spawn(ctx(7))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["spawn", "mutate", "despawn", "server_despawn", "remove"]),
            st.integers(0, 3),  # who: anonymous 1, 2; ann, bob
            st.integers(0, 30),  # which entity (an index), or a size
            st.integers(0, 300),
        ),
        max_size=60,
    )
)
def test_the_ledger_never_drifts(ops: list[tuple[str, int, int, int]]) -> None:
    """Random spawns, mutations, despawns (client and server, with cascades) and removals:
    the ledger's holdings always equal what is alive, measured afresh."""
    rig = Rig(max_spawned_entities_per_owner=8, max_spawned_bytes_per_owner=3_000)
    world, commands = rig.world, rig.commands
    who = [ctx(1), ctx(2), ctx(3, ANN), ctx(4, BOB)]
    cell = world.spawn(Label(text="cell"))
    for op, w, pick, n in ops:
        alive = [e for e in world.entities() if e != cell]
        target = alive[pick % len(alive)] if alive else None
        if op == "spawn":
            parent = target if pick % 3 else (cell if pick % 2 else None)
            rig.ask(who[w], FrameKind.SPAWN, parent, {"Note": {"text": "x" * n}})
        elif op == "mutate" and target is not None:
            rig.ask(who[w], FrameKind.MUTATE, "Note", target, {"text": "y" * n})
        elif op == "despawn" and target is not None:
            rig.ask(who[w], FrameKind.DESPAWN, target)
        elif op == "server_despawn" and target is not None:
            world.despawn(target)
        elif op == "remove" and target is not None:
            world.remove(target, Note)
        # measured afresh: every client-spawned entity alive, and its components' sizes
        expected: dict[Owner, list[int]] = {}
        for entity in world.entities():
            owner = commands.owner_of(entity)
            if owner is not None:
                note = world.get(entity, Note)
                size = 0 if note is None else rig.size(Note, note)
                expected.setdefault(owner, [0, 0])
                expected[owner][0] += 1
                expected[owner][1] += size
        for owner_ctx in who:
            owner = Owner.of(owner_ctx)
            count, nbytes = expected.get(owner, [0, 0])
            assert commands.holdings(owner) == Holdings(count, nbytes), op
            assert count <= 8 and nbytes <= 3_000
        total = [sum(v[i] for v in expected.values()) for i in (0, 1)]
        assert commands.holdings() == Holdings(*total)


# ---------------------------------------------------------------------------- real sockets


class Flooder:
    """A bare msgpack WebSocket client that sends SPAWN frames as fast as it can and keeps
    the replies."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.replies: dict[int, list[Any]] = {}
        self.first_refused: float | None = None

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str) -> AsyncIterator[Flooder]:
        async with ws_connect(url, max_size=None) as ws:
            welcome = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5 * UNIT))
            assert welcome[0] == FrameKind.WELCOME
            client = cls(ws)
            task = asyncio.get_running_loop().create_task(client._read())
            try:
                yield client
            finally:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task

    async def _read(self) -> None:
        with suppress(ConnectionClosed):
            async for data in self.ws:
                frame = msgpack.unpackb(data, strict_map_key=False)
                if frame[0] == FrameKind.REPLY:
                    self.replies[frame[1]] = frame
                    if frame[2] == "forbidden" and self.first_refused is None:
                        self.first_refused = time.perf_counter()

    async def flood(self, n: int, components: dict[str, Any]) -> None:
        for req in range(1, n + 1):
            await self.ws.send(msgpack.packb([FrameKind.SPAWN, req, None, components]))


@asynccontextmanager
async def serving(sync: SyncSettings) -> AsyncIterator[tuple[SyncServer, str]]:
    # no frame rate limit: the attacker at full speed (the limit would only slow it)
    server = SyncServer(network=NetworkSettings(rate_limit_per_second=None), sync=sync)
    server.sync_component_builder(Note).with_entity_policy(allow).build()
    server.allow_spawn()
    async with server.serve("127.0.0.1", 0) as (host, port):
        yield server, f"ws://{host}:{port}/"


@asynccontextmanager
async def flooders(url: str) -> AsyncIterator[list[Flooder]]:
    """Four anonymous connections."""
    async with (
        Flooder.open(url) as a,
        Flooder.open(url) as b,
        Flooder.open(url) as c,
        Flooder.open(url) as d,
    ):
        yield [a, b, c, d]


async def flood(floods: list[Flooder], n: int, components: dict[str, Any]) -> float:
    """Each of ``floods`` sends ``n`` SPAWNs at once; returns once every SPAWN is
    answered, the seconds from the first frame to the last refusal's first."""
    started = time.perf_counter()
    await asyncio.gather(*(f.flood(n, components) for f in floods))
    await wait_until(lambda: all(len(f.replies) == n for f in floods), 20, "every answer")
    return max(f.first_refused or 0 for f in floods) - started


def answers(floods: list[Flooder]) -> tuple[list[str], set[str]]:
    """Every reply's status, and the refusals' messages."""
    replies = [reply for f in floods for reply in f.replies.values()]
    return [r[2] for r in replies], {r[3] for r in replies if r[2] != "ok"}


@pytest.mark.asyncio
async def test_a_spawn_flood_from_anonymous_connections_is_stopped_at_the_caps() -> None:
    # the defaults per owner; server-wide lowered to 2,500 entities to reach it here
    async with (
        serving(SyncSettings(max_spawned_entities=2_500)) as (server, url),
        flooders(url) as (a, b, c, d),
    ):
        # one connection: its own 1,000 entities, then refused
        stopped = await flood([a], 1_500, {"Note": {"text": "spam"}})
        statuses, refusals = answers([a])
        assert statuses.count("ok") == 1_000 and statuses.count("forbidden") == 500
        assert refusals == {
            "this client already holds 1000 spawned entities "
            "(SyncSettings.max_spawned_entities_per_owner=1000): despawn some first"
        }
        assert stopped < UNIT, f"the flood was first refused {stopped:.2f} s in"
        # three more at once: the server-wide cap holds, whoever asks
        stopped = await flood([b, c, d], 1_000, {"Note": {"text": "spam"}})
        statuses, refusals = answers([b, c, d])
        assert statuses.count("ok") == 1_500 and statuses.count("forbidden") == 1_500
        assert all("(SyncSettings.max_spawned_entities=2500)" in m for m in refusals)
        assert stopped < UNIT, f"the flood was first refused {stopped:.2f} s in"
        assert server.commands.holdings().entities == len(server.world.entities()) == 2_500

    # values near max_value_bytes (1 MiB): each connection stopped at 16 MiB
    async with serving(SyncSettings()) as (server, url), flooders(url) as floods:
        stopped = await flood(floods, 40, {"Note": {"text": "x" * 1_000_000}})
        held = server.commands.holdings()
        statuses, refusals = answers(floods)
    assert held.entities == statuses.count("ok") == 4 * 16
    assert held.bytes <= 4 * (16 << 20)
    assert all("(SyncSettings.max_spawned_bytes_per_owner=16777216)" in m for m in refusals)
    assert stopped < 5 * UNIT


@pytest.mark.asyncio
async def test_a_client_despawns_what_it_spawned_and_not_the_cell() -> None:
    async with serving(SyncSettings()) as (server, url):
        server.allow_despawn()
        cell = server.world.spawn(Note(text="cell"))
        registry = ClientTypeRegistry.builder().register(Note).build()
        async with SyncProvider(url, registry) as sync, SyncProvider(url, registry) as other:
            mine = await sync.spawn(Note(text="mine"), parent=cell, timeout=5 * UNIT)
            with pytest.raises(Forbidden, match="not spawned by this client"):
                await sync.despawn(cell, timeout=5 * UNIT)
            with pytest.raises(Forbidden, match="not spawned by this client"):
                await other.despawn(mine, timeout=5 * UNIT)
            await sync.despawn(mine, timeout=5 * UNIT)
            assert server.world.contains(cell) and not server.world.contains(mine)
            assert server.commands.holdings() == Holdings(0, 0)
