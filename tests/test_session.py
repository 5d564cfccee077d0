"""ClientSession: the client's protocol bookkeeping, without sockets."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from client_sync.session import (
    Applied,
    ClientSession,
    Invalidation,
    NoticeEvent,
    Reply,
    ResyncNeeded,
    SubscriptionSpec,
    SyncArrived,
)
from pl3xus_rx.exceptions import FrameError, InvalidValue, SequenceGap
from pl3xus_rx.protocol import ControlAction, FrameKind, NoticeKind, SyncFlag, schema_hash


class Position(BaseModel):
    x: float
    y: float


TABLE = [[1, "Position", schema_hash(Position), ["x", "y"]]]
SNAPSHOT_DONE = int(SyncFlag.SNAPSHOT | SyncFlag.COMPLETE)


def connected() -> ClientSession:
    session = ClientSession()
    assert session.connected_with(TABLE) == []
    return session


def test_subscriptions_get_fresh_ids_and_are_renewed_on_reconnect() -> None:
    session = connected()
    a, frame_a = session.subscribe(SubscriptionSpec("Position", Position, None))
    b, frame_b = session.subscribe(SubscriptionSpec("Position", Position, 7, {"max_rate_hz": 2}))
    assert a != b
    assert frame_a == [FrameKind.SUBSCRIBE, a, "Position", None, {}]
    assert frame_b == [FrameKind.SUBSCRIBE, b, "Position", 7, {"max_rate_hz": 2}]
    assert session.unsubscribe(a) == [FrameKind.UNSUBSCRIBE, a]
    session.disconnected()
    assert not session.synced
    assert session.connected_with(TABLE) == [frame_b]  # only the live one, same id


def test_synced_once_every_awaited_snapshot_is_complete() -> None:
    session = connected()
    assert session.synced  # nothing to wait for
    sub, _ = session.subscribe(SubscriptionSpec("Position", Position, None))
    assert not session.synced
    frame = [FrameKind.SYNC, 1, [[sub, int(SyncFlag.SNAPSHOT), [[1, [1.0, 2.0]]], [], []]]]
    assert isinstance(session.apply(SyncArrived(frame)), Applied)
    assert not session.synced  # a part, not complete
    frame = [FrameKind.SYNC, 2, [[sub, SNAPSHOT_DONE | int(SyncFlag.CONTINUED), [], [], []]]]
    result = session.apply(SyncArrived(frame))
    assert isinstance(result, Applied) and session.synced
    assert dict(session.store.view(sub)) == {1: Position(x=1, y=2)}


def test_a_gap_asks_for_fresh_snapshots_and_unsyncs() -> None:
    session = connected()
    sub, _ = session.subscribe(SubscriptionSpec("Position", Position, None))
    session.apply(SyncArrived([FrameKind.SYNC, 1, [[sub, SNAPSHOT_DONE, [], [], []]]]))
    assert session.synced
    result = session.apply(SyncArrived([FrameKind.SYNC, 5, []]))
    assert isinstance(result, ResyncNeeded) and isinstance(result.error, SequenceGap)
    assert result.frame == [FrameKind.RESYNC, None]
    assert not session.synced


def test_commands_get_unique_ids_and_only_awaited_replies_come_back() -> None:
    session = connected()
    m, frame = session.mutate("Position", 3, {"x": 1, "y": 2})
    assert frame == [FrameKind.MUTATE, m, "Position", 3, {"x": 1, "y": 2}]
    c, frame = session.control(ControlAction.TAKE, 3)
    assert frame == [FrameKind.CONTROL, c, "take", 3]
    r, frame = session.request("Jog", None, {})
    q, frame = session.query("Tree", {})
    assert frame == [FrameKind.QUERY, q, "Tree", {}]
    assert len({m, c, r, q}) == 4
    reply = session.receive([FrameKind.REPLY, m, "ok", "", {}])
    assert reply == Reply(m, "ok", "", {}) and reply.error() is None
    assert session.receive([FrameKind.REPLY, m, "ok", "", {}]) is None  # answered already
    session.forget(r)
    assert session.receive([FrameKind.REPLY, r, "ok", "", {}]) is None  # timed out: late
    bad = session.receive(
        [FrameKind.REPLY, c, "validation_error", "no", {"errors": [{"loc": "x"}]}]
    )
    assert isinstance(bad, Reply)
    error = bad.error()
    assert isinstance(error, InvalidValue) and error.errors == [{"loc": "x"}]
    assert session.disconnected() == [q]  # what was still in flight


def test_notices_invalidations_and_bad_frames() -> None:
    session = connected()
    notice = session.receive(
        [FrameKind.NOTICE, NoticeKind.CONTROL_REQUESTED, {"entity": 4, "by": 2}]
    )
    assert isinstance(notice, NoticeEvent)
    assert (notice.kind, notice.entity, notice.detail["by"]) == ("control_requested", 4, 2)
    inv = session.receive([FrameKind.INVALIDATE, "Tree", None])
    assert inv == Invalidation("Tree", None)
    assert session.receive([FrameKind.SYNC, 1, []]) == SyncArrived([FrameKind.SYNC, 1, []])
    with pytest.raises(FrameError, match="REPLY"):
        session.receive([FrameKind.REPLY, 1, "ok"])
    with pytest.raises(FrameError, match="not sent by servers"):
        session.receive([FrameKind.MUTATE, 1, "Position", 1, {}])
    assert session.one_way("Hello", None, {}) == [FrameKind.SEND, "Hello", None, {}]


def test_an_error_naming_a_subscription_with_data_cuts_no_snapshot_short() -> None:
    """A server ERROR naming a subscription is a refusal only before any data for it on this
    connection: one naming a live subscription mid-snapshot changes nothing, and the
    snapshot still reconciles (what it lacks is removed)."""
    session = connected()
    sub, _ = session.subscribe(SubscriptionSpec("Position", Position, None))
    rows = [[e, [float(e), 0.0]] for e in (1, 2, 3)]
    session.apply(SyncArrived([FrameKind.SYNC, 1, [[sub, SNAPSHOT_DONE, rows, [], []]]]))
    assert set(session.store.view(sub)) == {1, 2, 3}
    session.resync()
    session.store.expect_snapshots()
    part = [[sub, int(SyncFlag.SNAPSHOT), [[1, [1.0, 0.0]]], [], []]]
    session.apply(SyncArrived([FrameKind.SYNC, 2, part]))
    assert session.refused(sub) is False  # it had data: not a refusal of it
    done = [[sub, SNAPSHOT_DONE | int(SyncFlag.CONTINUED), [], [], []]]
    session.apply(SyncArrived([FrameKind.SYNC, 3, done]))
    assert set(session.store.view(sub)) == {1}  # 2 and 3 were not in the new snapshot
    # before any data, an ERROR naming it is its refusal: nothing is awaited any more
    other, _ = session.subscribe(SubscriptionSpec("Position", Position, 9))
    assert not session.synced
    assert session.refused(other) is True and session.synced
    assert session.refused(12345) is False  # not ours
