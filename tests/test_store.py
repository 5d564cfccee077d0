"""The client replica without sockets: snapshots, updates, removals, reconciliation."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from client_sync import ReplicaChange, ReplicaChangeKind, SequenceGap, Store
from pl3xus_rx import FrameError

K = ReplicaChangeKind


class Position(BaseModel):
    x: float
    y: float


TABLE = [[0, "Position", "hash", ["x", "y"]]]


def store() -> Store:
    s = Store(TABLE)
    s.add_subscription(1, "Position", Position)
    return s


def test_snapshot_then_updates_removals_despawns() -> None:
    s = store()
    changes = s.apply([5, 1, [[1, 3, [[1, [0, 0]], [2, [1, 1]]], [], []]]])
    assert [(c.kind, c.entity) for c in changes] == [(K.INSERTED, 1), (K.INSERTED, 2)]
    assert s.complete(1)
    changes = s.apply([5, 2, [[1, 0, [[1, [5, 5]], [3, [3, 3]]], [2], []]]])
    assert [(c.kind, c.entity) for c in changes] == [
        (K.REMOVED, 2),
        (K.UPDATED, 1),
        (K.INSERTED, 3),
    ]
    changes = s.apply([5, 3, [[1, 0, [], [], [3]]]])
    assert [(c.kind, c.entity) for c in changes] == [(K.DESPAWNED, 3)]
    assert dict(s.view(1)) == {1: Position(x=5, y=5)}


def test_a_fresh_snapshot_reconciles() -> None:
    s = store()
    s.apply([5, 1, [[1, 3, [[1, [0, 0]], [2, [1, 1]]], [], []]]])
    s.reset_sequence()  # a new connection
    changes = s.apply([5, 1, [[1, 3, [[2, [1, 1]], [4, [4, 4]]], [], []]]])
    # 1 is gone (removed), 2 unchanged (no event), 4 is new
    assert [(c.kind, c.entity) for c in changes] == [(K.REMOVED, 1), (K.INSERTED, 4)]
    assert set(s.view(1)) == {2, 4}


def test_a_snapshot_in_several_groups_reconciles_when_complete() -> None:
    s = store()
    s.apply([5, 1, [[1, 3, [[1, [0, 0]], [2, [0, 0]], [3, [0, 0]]], [], []]]])
    # A fresh snapshot (after a RESYNC) arrives in three groups, with live changes between.
    changes = s.apply([5, 2, [[1, 1, [[1, [1, 1]]], [], []]]])  # begins: no CONTINUED bit
    assert [(c.kind, c.entity) for c in changes] == [(K.UPDATED, 1)]
    assert not s.complete(1) and set(s.view(1)) == {1, 2, 3}  # nothing removed yet
    s.apply([5, 3, [[1, 0, [[4, [4, 4]]], [1], []]]])  # live: 4 is new, 1 is removed
    s.apply([5, 4, [[1, 1 | 4, [[2, [0, 0]]], [], []]]])  # continued (2 unchanged: no event)
    assert not s.complete(1)
    changes = s.apply([5, 5, [[1, 1 | 2 | 4, [[5, [5, 5]]], [], []]]])  # the last group
    # 3 was held before and mentioned neither by the snapshot nor live: gone
    assert [(c.kind, c.entity) for c in changes] == [(K.REMOVED, 3), (K.INSERTED, 5)]
    assert s.complete(1) and set(s.view(1)) == {2, 4, 5}
    # the rest of a snapshot that was restarted never completes the new one early
    s.apply([5, 6, [[1, 1, [[2, [0, 0]]], [], []]]])  # a new snapshot begins
    s.add_subscription(1, "Position", Position)  # ... and the client re-subscribes meanwhile
    s.apply([5, 7, [[1, 1 | 2 | 4, [[9, [9, 9]]], [], []]]])  # end of the old one
    assert not s.complete(1) and set(s.view(1)) == {9}


def test_field_deltas_merge_into_the_current_value() -> None:
    s = store()
    s.apply([5, 1, [[1, 3, [[1, [0, 0]]], [], []]]])
    s.apply([5, 2, [[1, 0, [[1, {1: 9.5}]], [], []]]])
    s.apply([5, 3, [[1, 0, [[1, {"0": 2.0}]], [], []]]])  # JSON keys
    assert s.view(1)[1] == Position(x=2, y=9.5)
    assert s.apply([5, 4, [[1, 0, [[7, {0: 1.0}]], [], []]]]) == []  # left out, reported
    assert "field delta for entity 7" in str(s.rejected[-1])
    assert "does not hold" in str(s.rejected[-1])
    assert s.apply([5, 5, [[1, 0, [[1, {9: 1.0}], [1, {"x": 1.0}]], [], []]]]) == [
        ReplicaChange(1, K.REMOVED, 1, Position(x=2, y=9.5))  # a bad delta: left out
    ]
    assert "bad field delta" in str(s.rejected[-1]) and len(s.rejected) == 3


def test_gaps_bad_frames_and_rejected_values() -> None:
    s = store()
    s.apply([5, 1, [[1, 3, [[1, [0, 0]]], [], []]]])
    with pytest.raises(SequenceGap, match="from 1 to 3"):
        s.apply([5, 3, [[1, 0, [[1, [0, 0]]], [], []]]])
    # A value this end rejects is left out (its older value removed), the rest applies: a
    # fresh snapshot would carry the same value, so asking for one would only loop.
    changes = s.apply([5, 4, [[1, 0, [[1, ["not a number", 0]], [2, [2, 2]]], [], []]]])
    assert [(c.kind, c.entity) for c in changes] == [(K.REMOVED, 1), (K.INSERTED, 2)]
    assert "Position of entity 1" in str(s.rejected[-1])
    s.apply([5, 5, [[1, 0, [[2, [1.0]]], [], []]]])
    assert "expected 2 field values" in str(s.rejected[-1]) and len(s.rejected) == 2
    assert dict(s.view(1)) == {}
    # garbage is not a value: it raises (the caller asks for fresh snapshots)
    with pytest.raises(FrameError, match="SYNC frame"):
        s.apply([5, 6])
    with pytest.raises(FrameError, match="upsert must be"):
        s.apply([5, 6, [[1, 0, [[1]], [], []]]])
    with pytest.raises(FrameError, match="SYNC group"):
        s.apply([5, 6, [[1, 0, [], []]]])
    with pytest.raises(FrameError, match="entity ids"):
        s.apply([5, 6, [[1, 0, [], ["x"], []]]])


def test_groups_of_unknown_subscriptions_are_ignored() -> None:
    s = store()
    assert s.apply([5, 1, [[99, 3, [[1, [0, 0]]], [], []]]]) == []
