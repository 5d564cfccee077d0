"""Control survives a move, in the command layer (no sockets): an authenticated party
whose connection left for a move (a drain) keeps its holds, orphaned, for
``control_move_grace``; others' takes are refused meanwhile ("who is reconnecting"); the
party's first connection that appears holds them again; past the grace they are released.
Anonymous holders lose control at once."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from pl3xus_rx import ANONYMOUS, EntityControl, Identity, SyncSettings
from pl3xus_rx.commands import (
    Commands,
    ControlBook,
    Expired,
    Granted,
    Hold,
    Moved,
    Refused,
    Send,
)
from pl3xus_rx.protocol import FrameKind, Status
from pl3xus_rx.sync import ComponentRegistry, MutationContext
from pl3xus_rx.world import EntityId, World

E1, E2, E3 = EntityId(1), EntityId(2), EntityId(3)
ANN = Identity.of("ann", "operator")
BOB = Identity.of("bob", "operator")


class Speed(BaseModel):
    value: float


# ---------------------------------------------------------------------- the control book


def test_a_party_that_leaves_for_a_move_keeps_its_control_until_the_deadline() -> None:
    book = ControlBook(timeout=None)
    assert isinstance(book.take(1, E1, (), 0.0, party="ann"), Granted)
    assert book.connection_closed(1, keep_until=10.0) == ([], [])
    assert book.orphaned() == {E1: 10.0} and book.holder(E1) == 1
    refused = book.take(2, E1, (), 1.0, party="bob")
    assert isinstance(refused, Refused)
    assert refused.reason == "entity 1 is controlled by 'ann', who is reconnecting"
    assert refused.sharers == ()  # (nobody to tell that someone asked)
    assert book.expire(5.0) == ([], 10.0)
    assert book.expire(10.0) == ([Expired(E1, 1, (), abandoned=True)], None)
    assert book.holder(E1) is None and book.orphaned() == {}


def test_the_first_connection_of_the_party_holds_its_orphans_again() -> None:
    book = ControlBook(timeout=300.0)
    book.take(1, E1, (), 0.0, party="ann")
    book.take(1, E2, (), 0.0, party="ann")
    book.take(5, E3, (), 0.0, party="bob")
    book.connection_closed(1, keep_until=10.0)
    assert book.orphaned("ann") == {E1: 10.0, E2: 10.0} and book.orphaned("bob") == {}
    assert book.adopt(9, "carl", 3.0) == []
    assert book.adopt(7, "ann", 3.0) == [Moved(E1, 7, "ann"), Moved(E2, 7, "ann")]
    assert book.orphaned() == {}
    assert book.sharers(E1) == (7,) and book.holder(E2) == 7 and book.holder(E3) == 5
    # its activity clock restarted with it
    assert book.expire(300.0) == ([Expired(E3, 5, (5,))], 303.0)
    assert book.held() == [E1, E2]


def test_anonymous_holders_and_holds_shared_with_a_live_tab_are_not_orphaned() -> None:
    book = ControlBook(timeout=None)
    book.take(1, E1, (), 0.0)  # anonymous: no party
    assert book.connection_closed(1, keep_until=10.0) == ([E1], [])
    book.take(2, E2, (), 0.0, party="ann")
    assert book.touch(3, (E2,), 1.0, party="ann")  # ann's other tab acts on it
    assert book.connection_closed(2, keep_until=10.0) == ([], [Moved(E2, 3, "ann")])
    assert book.orphaned() == {}


def test_a_take_or_activity_of_the_party_ends_the_orphanhood() -> None:
    book = ControlBook(timeout=None)
    book.take(1, E1, (), 0.0, party="ann")
    book.take(1, E2, (), 0.0, party="ann")
    book.connection_closed(1, keep_until=10.0)
    assert isinstance(book.take(4, E1, (), 1.0, party="ann"), Granted)
    assert book.touch(4, (E2,), 1.0, party="ann")
    assert book.orphaned() == {} and book.holder(E1) == book.holder(E2) == 4
    assert book.expire(100.0) == ([], None)


def test_inactivity_ends_an_orphaned_hold_too_and_nobody_is_told() -> None:
    book = ControlBook(timeout=5.0)
    book.take(1, E1, (), 0.0, party="ann")
    book.connection_closed(1, keep_until=100.0)
    assert book.expire(6.0) == ([Expired(E1, 1, (), abandoned=True)], None)


# ---------------------------------------------------------------------- the command layer


def rig(grace: float = 10.0) -> tuple[Commands, World, EntityId]:
    world = World()
    registry = ComponentRegistry()
    registry.add(EntityControl)
    registry.add(Speed)
    commands = Commands(world, registry, SyncSettings(control_move_grace=grace))
    return commands, world, world.spawn(Speed(value=1))


def take(commands: Commands, conn: int, who: Identity, entity: EntityId, now: float) -> Any:
    effects = commands.handle(
        MutationContext(conn, who), [FrameKind.CONTROL, 1, "take", entity], now
    )
    frames = [e.frame for e in effects if isinstance(e, Send | Hold)]
    (reply,) = [f for f in frames if f[0] == FrameKind.REPLY]
    return reply


def test_commands_keep_a_moving_partys_control_and_hand_it_to_its_next_connection() -> None:
    commands, world, robot = rig()
    commands.connection_opened(1, ANN, 0.0)
    assert take(commands, 1, ANN, robot, 0.0)[2] == Status.OK
    commands.connection_closed(1, moving=True, now=1.0)
    assert world.get(robot, EntityControl) == EntityControl(holder=1, by="ann")
    refused = take(commands, 2, BOB, robot, 2.0)
    assert refused[2] == Status.FORBIDDEN and "who is reconnecting" in refused[3]
    assert commands.connection_opened(3, ANN, 3.0) == []  # (no notice: EntityControl says it)
    assert world.get(robot, EntityControl) == EntityControl(holder=3, by="ann")
    assert commands.holder(robot) == 3
    # an ordinary close releases as before
    commands.connection_closed(3)
    assert world.get(robot, EntityControl) == EntityControl()


def test_commands_release_an_orphaned_hold_past_the_grace() -> None:
    commands, world, robot = rig(grace=5.0)
    commands.connection_opened(1, ANN, 0.0)
    take(commands, 1, ANN, robot, 0.0)
    commands.connection_closed(1, moving=True, now=1.0)
    effects, due = commands.tick(2.0)
    assert effects == [] and due == 6.0
    effects, due = commands.tick(6.0)
    assert effects == [] and due is None  # (released; nobody to tell)
    assert world.get(robot, EntityControl) == EntityControl()
    commands.connection_opened(2, ANN, 7.0)
    assert world.get(robot, EntityControl) == EntityControl()


def test_commands_give_the_orphans_to_a_connection_of_the_party_already_back() -> None:
    commands, world, robot = rig()
    commands.connection_opened(1, ANN, 0.0)
    take(commands, 1, ANN, robot, 0.0)
    commands.connection_opened(2, ANN, 1.0)  # on the new server before the old one said bye
    commands.connection_closed(1, moving=True, now=1.5)
    assert world.get(robot, EntityControl) == EntityControl(holder=2, by="ann")
    assert commands.control.orphaned() == {}


def test_anonymous_or_no_grace_means_released_at_once() -> None:
    commands, world, robot = rig()
    commands.connection_opened(1, ANONYMOUS, 0.0)
    take(commands, 1, ANONYMOUS, robot, 0.0)
    commands.connection_closed(1, moving=True, now=1.0)
    assert world.get(robot, EntityControl) == EntityControl()
    commands, world, robot = rig(grace=0.0)
    take(commands, 1, ANN, robot, 0.0)
    commands.connection_closed(1, moving=True, now=1.0)
    assert world.get(robot, EntityControl) == EntityControl()
    with pytest.raises(ValueError, match="now="):
        commands.connection_closed(1, moving=True)
