"""ControlBook: exclusive control as decisions, without a World, a clock or sockets."""

from __future__ import annotations

import pytest

from pl3xus_rx.sync import ControlBook, Expired, Granted, Refused
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
    assert book.connection_closed(1) == [OTHER] and len(book) == 0


def test_control_lapses_without_activity_and_activity_keeps_it() -> None:
    book = ControlBook(timeout=10.0)
    book.take(1, CELL, [], now=0.0)
    book.take(2, OTHER, [], now=5.0)
    assert book.expire(9.0) == ([], pytest.approx(10.0))
    book.touch(1, [ROBOT, CELL], now=8.0)  # activity on the child, CELL in its chain
    book.touch(2, [CELL], now=9.0)  # not the holder of CELL: no effect
    lapsed, due = book.expire(15.0)
    assert lapsed == [Expired(OTHER, 2)] and due == pytest.approx(18.0)
    assert book.expire(18.0) == ([Expired(CELL, 1)], None)


def test_entities_that_are_gone_are_forgotten() -> None:
    book = ControlBook(timeout=None)
    book.take(1, CELL, [], now=0.0)
    book.take(1, OTHER, [], now=0.0)
    assert book.expire(1.0, alive=lambda e: e != OTHER) == ([], None)
    assert book.held_by(1) == [CELL]
