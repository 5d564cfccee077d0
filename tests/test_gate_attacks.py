"""Red-team cases against the one gate (docs/security.md, "One gate"), found by an attacker
with a valid, low-privilege identity, and kept.

1. A holder that lost sight of an entity it controls must not act on the entity's visible
   descendants through that control: the gate ends such holds on the target's chain before
   any policy reads them (``Gate._blind``), even when no flush ran since (the entity was
   hidden by a change of a type nobody subscribes to).
2. The ``EntityControl`` view must not carry an entity that became hidden through a change of
   a type nobody subscribes to: while control is watched through a view every synced type is
   tracked, and a control snapshot is filtered by the live rules.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
from conftest import UNIT, wait_until
from pydantic import BaseModel
from test_gate_e2e import RawClient, reply_of

from pl3xus_rx import Identity, SyncServer, bearer_tokens
from pl3xus_rx.commands import Commands, Hold, Send
from pl3xus_rx.protocol import FrameKind, NoticeKind
from pl3xus_rx.sync import (
    ComponentBuilder,
    ComponentRegistry,
    EntityControl,
    MessageBuilder,
    MutationContext,
    SyncEngine,
    SyncSettings,
)
from pl3xus_rx.sync._access import sees_entity
from pl3xus_rx.world import World

T = 5 * UNIT


class Speed(BaseModel):
    """Seen by everyone; written by whoever controls the entity (or an ancestor)."""

    value: float = 0


class Secret(BaseModel):
    """Admin-only: an entity holding only this is hidden from operators."""

    code: str = ""


class Beep(BaseModel):
    """A targeted one-way message that needs control (default entity policy)."""

    hz: int = 0


ANN = Identity.of("ann", "operator")
BOB = Identity.of("bob", "admin")


# ---------------------------------------------------------------------- hole 1


def test_a_blind_holder_no_longer_acts_under_the_hidden_entity_sans_io() -> None:
    # (1, sans-I/O) ann holds P; the server makes P admin-only (its public component
    # goes, a Secret comes). ann no longer sees P, yet her MUTATE and SENDs on P's visible
    # child C are authorized by her (stale) control of P.
    world = World()
    registry = ComponentRegistry()
    registry.add(EntityControl)
    ComponentBuilder(registry, Speed).with_default_entity_policy().build()
    ComponentBuilder(registry, Secret).visible_to("admin").build()
    commands = Commands(world, registry, SyncSettings())
    beeps: list[int] = []
    MessageBuilder(commands, Beep).targeted().with_default_entity_policy().register(
        lambda w, c, e, m: beeps.append(m.hz)
    )
    parent = world.spawn(Speed())
    child = world.spawn(Speed(), parent=parent)
    ctx = MutationContext(1, ANN)
    (took,) = commands.handle(ctx, [FrameKind.CONTROL, 1, "take", parent], 0.0)
    assert isinstance(took, Hold) and took.frame[2] == "ok"

    world.remove(parent, Speed)
    world.insert(parent, Secret(code="x"))
    assert not sees_entity(world, registry, ANN, parent)
    assert sees_entity(world, registry, ANN, child)

    effects = commands.handle(ctx, [FrameKind.MUTATE, 2, "Speed", child, {"value": 9}], 1.0)
    for hz in range(3):
        commands.handle(ctx, [FrameKind.SEND, "Beep", child, {"hz": hz}], 2.0)
    # nobody controls what it cannot see: ann controls nothing she sees, so both are refused
    frames = [e.frame for e in effects if isinstance(e, Send)]
    released = [
        FrameKind.NOTICE,
        NoticeKind.CONTROL_RELEASED,
        {"entity": parent, "reason": "not_visible"},
    ]
    assert frames[0] == released  # she is told first, then refused
    assert frames[1][0] == FrameKind.REPLY and frames[1][2] == "forbidden", frames
    assert world.get(child, Speed) == Speed(value=0)
    assert beeps == []


@pytest.mark.asyncio
async def test_a_blind_holder_no_longer_acts_under_the_hidden_entity_e2e() -> None:
    # (1, over real sockets) nobody subscribes to Speed or Secret, so hiding P schedules
    # no flush, and nothing ends ann's control of P. Her SENDs to P's visible child are all
    # accepted (no message_rejected), and so is her next MUTATE.
    server = SyncServer(authenticate=bearer_tokens({"ann-token": ANN}))
    server.sync_component_builder(Speed).with_default_entity_policy().build()
    server.sync_component_builder(Secret).visible_to("admin").build()
    beeps: list[int] = []
    server.message(Beep).targeted().with_default_entity_policy().register(
        lambda w, c, e, m: beeps.append(m.hz)
    )
    world = server.world
    parent = world.spawn(Speed())
    child = world.spawn(Speed(), parent=parent)
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        RawClient.open(f"ws://{host}:{port}/", "ann-token") as ann,
    ):
        assert reply_of(await asyncio.wait_for(ann.take(parent), T))[0] == "ok"
        world.remove(parent, Speed)
        world.insert(parent, Secret(code="x"))  # P is admin-only from now on
        assert not server.sees(ANN, parent) and server.sees(ANN, child)
        await asyncio.sleep(0.2 * UNIT)
        for hz in range(5):
            await ann.send([FrameKind.SEND, "Beep", child, {"hz": hz}])
        await wait_until(
            lambda: beeps or len(ann.notices("message_rejected")) == 5,
            what="the SENDs to be handled",
        )
        await asyncio.sleep(0.2 * UNIT)
        mutate = [FrameKind.MUTATE, ann.next_id(), "Speed", child, {"value": 7}]
        status = reply_of(await asyncio.wait_for(ann.command(mutate), T))[0]
        assert beeps == [], f"SENDs accepted under control ann cannot see: {beeps}"
        assert status == "forbidden"
        assert world.get(child, Speed) == Speed(value=0)


# ---------------------------------------------------------------------- hole 2


def _sync_frames(engine: SyncEngine, now: float, connection: int) -> list[list[Any]]:
    return [
        msgpack.unpackb(data, strict_map_key=False)
        for cid, data in engine.flush(now)
        if cid == connection
    ]


def _named(frames: list[list[Any]]) -> set[int]:
    """Every entity a SYNC frame's groups upsert."""
    return {item[0] for f in frames if f[0] == FrameKind.SYNC for g in f[2] for item in g[2]}


def test_a_snapshot_of_entity_control_never_carries_a_hidden_entity_sans_io() -> None:
    # (2, sans-I/O) E is public (Speed) and held by bob; ann watches EntityControl only.
    # The server makes E admin-only. Nobody subscribes to Speed or Secret, so ann's
    # EntityControl view keeps E: her RESYNC, and a brand-new subscription of a second ann
    # connection, get E's id with bob's connection id and name.
    world = World()
    registry = ComponentRegistry()
    registry.add(EntityControl)
    ComponentBuilder(registry, Speed).build()
    ComponentBuilder(registry, Secret).visible_to("admin").build()
    engine = SyncEngine(world, registry, SyncSettings(max_update_rate_hz=1000))
    commands = Commands(world, registry, SyncSettings())
    engine.add_client(1, identity=ANN)
    engine.add_client(2, identity=BOB)
    engine.add_client(3, identity=ANN)
    held = world.spawn(Speed(value=1))
    engine.handle_frame(1, True, [FrameKind.SUBSCRIBE, 1, "EntityControl", None, {}])
    for effect in commands.handle(
        MutationContext(2, BOB), [FrameKind.CONTROL, 1, "take", held], 0.0
    ):
        if isinstance(effect, Hold):
            engine.defer(effect.connection, effect.frame, component=effect.component)
    assert _named(_sync_frames(engine, 1.0, 1)) == {held}  # visible: fine

    world.remove(held, Speed)
    world.insert(held, Secret(code="s"))  # E is admin-only from now on
    assert not sees_entity(world, registry, ANN, held)
    _sync_frames(engine, 2.0, 1)

    engine.handle_frame(1, True, [FrameKind.RESYNC, None])
    resync = _sync_frames(engine, 3.0, 1)
    engine.handle_frame(3, True, [FrameKind.SUBSCRIBE, 1, "EntityControl", None, {}])
    fresh = _sync_frames(engine, 4.0, 3)
    assert held not in _named(resync), f"RESYNC carried hidden entity {held}: {resync}"
    assert held not in _named(fresh), f"a new subscription got hidden entity {held}: {fresh}"


@pytest.mark.asyncio
async def test_a_snapshot_of_entity_control_never_carries_a_hidden_entity_e2e() -> None:
    # (2, over real sockets) ann's first connection watches EntityControl while E is
    # visible; E becomes admin-only; ann's second connection subscribes to EntityControl and
    # receives E's control: its id, bob's connection id and bob's name.
    server = SyncServer(authenticate=bearer_tokens({"ann-token": ANN, "bob-token": BOB}))
    server.sync_component_builder(Speed).build()
    server.sync_component_builder(Secret).visible_to("admin").build()
    world = server.world
    entity = world.spawn(Speed(value=1))
    async with server.serve("127.0.0.1", 0) as (host, port):
        url = f"ws://{host}:{port}/"
        async with RawClient.open(url, "ann-token") as ann, RawClient.open(url, "bob-token") as bob:
            await asyncio.wait_for(ann.subscribe(1, "EntityControl"), T)
            assert reply_of(await asyncio.wait_for(bob.take(entity), T))[0] == "ok"
            await wait_until(lambda: entity in ann.mentioned(1), what="ann sees bob's control")
            world.remove(entity, Speed)
            world.insert(entity, Secret(code="s"))  # E is admin-only from now on
            assert not server.sees(ANN, entity)
            await asyncio.sleep(0.2 * UNIT)
            async with RawClient.open(url, "ann-token") as again:
                await asyncio.wait_for(again.subscribe(1, "EntityControl"), T)
                leaked = [v for e, v in again.values(1) if e == entity]
                assert leaked == [], f"hidden entity {entity}'s control reached ann: {leaked}"
