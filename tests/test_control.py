"""ControlBook: exclusive control as decisions, without a World, a clock or sockets."""

from __future__ import annotations

import pytest

from pl3xus_rx.commands import ControlBook, Displaced, Expired, Granted, Moved, Refused
from pl3xus_rx.world import EntityId

CELL, ROBOT, OTHER = EntityId(1), EntityId(2), EntityId(3)  # ROBOT is CELL's child


def test_take_is_refused_while_someone_holds_the_entity_or_its_relatives() -> None:
    book = ControlBook(timeout=None)
    assert book.take(1, CELL, [ROBOT], now=0.0) == Granted(CELL, 1)
    refused = book.take(2, ROBOT, [CELL], now=1.0)
    assert isinstance(refused, Refused)
    assert (refused.holder, refused.contested) == (1, CELL)
    assert "controlled by connection 1" in refused.reason
    assert book.take(1, ROBOT, [CELL], now=1.0) == Granted(ROBOT, 1)  # the holder may
    assert book.take(2, OTHER, [], now=1.0) == Granted(OTHER, 2)
    assert sorted(book.held_by(1)) == [CELL, ROBOT] and book.holder(OTHER) == 2


def test_only_the_holder_releases_and_a_closed_connection_lets_go() -> None:
    book = ControlBook(timeout=None)
    book.take(1, CELL, [], now=0.0)
    book.take(1, OTHER, [], now=0.0)
    refused = book.release(2, CELL)
    assert isinstance(refused, Refused) and refused.holder is None
    assert book.release(1, CELL) == Granted(CELL, None) and book.holder(CELL) is None
    assert book.connection_closed(1) == ([OTHER], []) and len(book) == 0


def test_control_lapses_without_activity_and_activity_keeps_it() -> None:
    book = ControlBook(timeout=10.0)
    book.take(1, CELL, [], now=0.0)
    book.take(2, OTHER, [], now=5.0)
    assert book.expire(9.0) == ([], pytest.approx(10.0))
    book.touch(1, [ROBOT, CELL], now=8.0)  # activity on the child, CELL in its chain
    book.touch(2, [CELL], now=9.0)  # not the holder of CELL: no effect
    lapsed, due = book.expire(15.0)
    assert lapsed == [Expired(OTHER, 2, (2,))] and due == pytest.approx(18.0)
    assert book.expire(18.0) == ([Expired(CELL, 1, (1,))], None)


def test_entities_that_are_gone_are_forgotten() -> None:
    book = ControlBook(timeout=None)
    book.take(1, CELL, [], now=0.0)
    book.take(1, OTHER, [], now=0.0)
    assert book.expire(1.0, alive=lambda e: e != OTHER) == ([], None)
    assert book.held_by(1) == [CELL]


def test_an_identity_shares_control_across_its_connections() -> None:
    book = ControlBook(timeout=10.0)
    assert book.take(1, CELL, [ROBOT], now=0.0, party="ann") == Granted(CELL, 1, "ann")
    # ann's second tab takes the robot under the cell: the same party, granted
    assert book.take(2, ROBOT, [CELL], now=1.0, party="ann") == Granted(ROBOT, 2, "ann")
    assert book.take(2, CELL, [ROBOT], now=1.0, party="ann") == Granted(CELL, 2, "ann")
    assert book.sharers(CELL) == (1, 2)
    # bob, and an anonymous client, are refused; all of ann's tabs are to be told
    refused = book.take(3, CELL, [ROBOT], now=1.0, party="bob")
    assert isinstance(refused, Refused) and refused.sharers == (1, 2)
    assert "controlled by 'ann'" in refused.reason
    assert isinstance(book.take(4, CELL, [], now=1.0), Refused)
    # bob's refused takes keep nothing alive; ann's first tab's activity does
    book.touch(3, [CELL], now=9.0, party="bob")
    book.touch(1, [ROBOT, CELL], now=8.0, party="ann")
    assert book.expire(10.5)[0] == []
    # (acting on the robot made tab 1 one of its sharers too)
    assert book.sharers(ROBOT) == (1, 2)
    # a tab closes: the other holds it now; the last one closes: released
    assert book.connection_closed(2) == ([], [Moved(CELL, 1, "ann"), Moved(ROBOT, 1, "ann")])
    assert book.holder(CELL) == 1
    assert book.connection_closed(1) == ([CELL, ROBOT], [])
    assert len(book) == 0


def test_a_takeover_releases_the_others_and_says_whom() -> None:
    book = ControlBook(timeout=None)
    book.take(1, CELL, [ROBOT], now=0.0, party="ann")
    book.take(5, OTHER, [], now=0.0)
    granted = book.take(3, ROBOT, [CELL], now=1.0, party="sue", override=True)
    assert granted == Granted(ROBOT, 3, "sue", (Displaced(CELL, (1,)),))
    assert book.holder(CELL) is None and book.holder(ROBOT) == 3
    assert book.held_by(1) == [] and book.holder(OTHER) == 5
    # anyone of the same party may release it, for all of them
    assert book.release(9, ROBOT, "sue") == Granted(ROBOT, None)
