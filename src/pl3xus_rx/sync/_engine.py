"""The sync engine: which subscription gets what in each flush. No I/O.

The engine listens to the World, keeps what changed since the last flush (only the latest
value per entity and component, but never losing a removal), and on :meth:`SyncEngine.flush`
returns at most one frame per connection. Each changed item is encoded once per flush and
encoding, and the bytes are shared by every connection that sees it. Its rooms: the checks
of a SUBSCRIBE and the records (``_subs``), visibility views (``_views``), group building
(``_groups``), frames (``_wire``), replies held for their flush (``_replies``) and the
``flushed()`` taps (``_taps``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import reactivex
from pydantic import BaseModel

from .._rx import SafeSubject
from ..exceptions import SubscriptionError
from ..protocol import (
    AckFrame,
    EntityControl,
    FrameKind,
    SubscribeFrame,
    SubscriptionFrame,
    UnsubscribeFrame,
    parse_subscription,
)
from ..security import ANONYMOUS, Identity
from ..world import (
    FINAL,
    UPSERTED,
    ChangeTracker,
    EntityId,
    World,
    merge_change,
)
from ._encoding import ItemEncoder
from ._groups import change_group, snapshot_part
from ._registry import ComponentRegistration, ComponentRegistry
from ._replies import HeldReplies
from ._settings import MIN_VALUE_BYTES, SyncSettings
from ._size import Limit, max_encoded_size, size_check
from ._subs import Client as _Client
from ._subs import Subscription as _Sub
from ._subs import SubscriptionInfo, View, check_subscribe
from ._taps import FlushedChanges, FlushHook, Taps
from ._v2 import Windows
from ._views import Views
from ._wire import Group, send_frames

__all__ = ["SyncEngine", "SyncStatistics"]

_ACK = int(FrameKind.ACK)

logger = logging.getLogger(__name__)


C = TypeVar("C", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class SyncStatistics:
    """Counters of the sync engine.

    Attributes:
        flushes: Flushes that produced at least one frame.
        frames: SYNC frames produced.
        frame_bytes: Their bytes.
        item_encodings: Items encoded (per encoding); independent of subscriber count.
        items_sent: Upsert items placed in frames (counting every connection).
        subscriptions: Live subscriptions.
        deadband_suppressed: Updates not sent because they moved less than a deadband.
        snapshots: Snapshots completed (first subscriptions, resyncs, reconnects).
        snapshots_under_way: Snapshots started and not complete (big ones go in parts).
        unencodable: Items left out because their value could not be encoded (each logged
            once per entity and type).
        merged: Changes held for connections behind their acknowledgement window (each
            entity and subscription once per flush; later ones merge into it).
        catch_ups: Times a connection came back within its window (its held changes then
            go out in one frame).
        beacons: BEACON frames sent to idle protocol-v2 connections.
        behind: Connections behind their acknowledgement window now.
        acknowledging: Protocol-v2 connections that acknowledge (their window applies).
    """

    flushes: int
    frames: int
    frame_bytes: int
    item_encodings: int
    items_sent: int
    subscriptions: int
    deadband_suppressed: int
    snapshots: int
    snapshots_under_way: int
    unencodable: int
    merged: int = 0
    catch_ups: int = 0
    beacons: int = 0
    behind: int = 0
    acknowledging: int = 0


# A pending change is a small int (the World's ChangeTracker codes): see _groups.
_UPSERT, _FINAL = UPSERTED, FINAL


class SyncEngine:
    """Subscriptions and flushes for one World. Sans-I/O: it returns frames to send.

    Args:
        world: The World to mirror.
        registry: The synced component types.
        settings: Flush rate and limits.
        wake: Called (with no arguments) when a change or a subscription needs a flush.
    """

    def __init__(
        self,
        world: World,
        registry: ComponentRegistry,
        settings: SyncSettings,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.world = world
        self.registry = registry
        self._encoder = ItemEncoder(world)
        self._value_limit = Limit(settings.max_value_bytes)
        self.settings = settings
        self._wake = wake or (lambda: None)
        self._clients: dict[int, _Client] = {}
        self._subs_by_type: dict[int, set[_Sub]] = {}
        # types whose changes are wanted (subscribers, a flushed() tap, or every type while
        # control is watched through a view) -> what changed since their last flush
        self._trackers: dict[int, ChangeTracker] = {}
        self._type_due: dict[int, float] = {}
        self._held_subs: set[_Sub] = set()
        # subscriptions with the caller's own writes still to send past their rate cap or
        # deadband (read your writes)
        self._forced_subs: set[_Sub] = set()
        self._snapshot_subs: set[_Sub] = set()
        # what each visibility class sees of each restricted type
        self._vis = Views(world, registry, self._track_for_control, self._wake)
        self._views = self._vis.by_type  # (the same dicts, for the flush's hot loop)
        self._recheck = self._vis.recheck
        self.on_subscription: Callable[[int, str, int | None, bool], None] | None = None
        """Told ``(connection, type_name, entity, opened)`` when a subscription opens or
        closes (the server's instruments; ``None``: nobody listens, nothing is called)."""
        # field-delta types: the values every up-to-date subscriber holds, by entity
        self._baseline: dict[int, dict[EntityId, list[Any]]] = {}
        self._last_flush = -math.inf
        # replies held until the flush that carries the change they answer for (_replies)
        self._replies = HeldReplies()
        # tapped types (flushed()): type id -> the subject its observers share
        self._taps = Taps(world, self._track, self._let_go)
        self._tapped = self._taps.by_type
        # flush hooks (recorders, histories): type id -> the hooks of that type
        self._hooks: dict[int, list[FlushHook]] = {}
        self._acked_behind = False  # a client behind its window acknowledged since the flush
        self._counters = {
            "flushes": 0,
            "frames": 0,
            "frame_bytes": 0,
            "items_sent": 0,
            "deadband_suppressed": 0,
            "snapshots": 0,
            "merged": 0,
            "catch_ups": 0,
            "beacons": 0,
        }
        # protocol-v2 connections: acknowledgement windows, beacons
        self._windows = Windows(self._counters)

        for reg in registry:
            self._guard(reg)
        registry.listeners.append(self._guard)

    @property
    def settings(self) -> SyncSettings:
        """The settings in force (assignable: the next flush and store use them)."""
        return self._settings

    @settings.setter
    def settings(self, settings: SyncSettings) -> None:
        self._settings = settings
        self._encoder.max_value_bytes = settings.max_value_bytes
        self._value_limit.bytes = settings.max_value_bytes

    def _guard(self, reg: ComponentRegistration[Any]) -> None:
        if self._keeps_tracking(reg.type_id):
            self._track(reg)
        # Values that could outgrow max_value_bytes are measured where they are stored.
        if max_encoded_size(reg.model) > MIN_VALUE_BYTES:
            self._encoder.maybe_big.add(reg.type_id)
            self.world.set_check(reg.model, size_check(reg, self._value_limit))

    def _pending(self, type_id: int) -> dict[EntityId, int]:
        tracker = self._trackers.get(type_id)
        return tracker.pending if tracker is not None else {}

    # ------------------------------------------------------------------ clients

    def add_client(
        self,
        connection: int,
        *,
        binary: bool = True,
        identity: Identity = ANONYMOUS,
        version: int = 1,
    ) -> None:
        """Start tracking a connection (msgpack if ``binary``, else JSON), whose client is
        ``identity`` (what it may see of restricted types), speaking protocol ``version``
        (2: SYNC frames say how old their data is; BEACONs; acknowledgements)."""
        if connection not in self._clients:
            client = _Client(connection, binary, identity)
            if version >= 2:
                self._windows.add(client)
            self._clients[connection] = client

    def remove_client(self, connection: int) -> None:
        """Forget a connection, its subscriptions and the replies waiting for it."""
        self._replies.forget(connection)
        client = self._clients.pop(connection, None)
        if client is not None:
            self._windows.remove(client)
            for sub in list(client.subs.values()):
                self._drop(sub)

    def _drop(self, sub: _Sub) -> None:
        if sub.client.subs.pop(sub.id, None) is not None and self.on_subscription is not None:
            self.on_subscription(sub.client.id, sub.reg.name, None, False)
        subs = self._subs_by_type.get(sub.reg.type_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs_by_type[sub.reg.type_id]
                self._let_go(sub.reg.type_id)
                self._encoder.forget_type(sub.reg.type_id)
                self._baseline.pop(sub.reg.type_id, None)
        self._held_subs.discard(sub)
        self._forced_subs.discard(sub)
        self._snapshot_subs.discard(sub)
        view = sub.view
        if view is not None and self._vis.left(view, sub):
            # nobody watches control through a view: the types kept for it are let go
            for type_id in list(self._trackers):
                self._let_go(type_id)

    def _keeps_tracking(self, type_id: int) -> bool:
        """Whether the changes of ``type_id`` are still wanted: it has subscribers, a tap,
        or control is watched through a view (every type's changes move an entity's
        visibility, and so its control's)."""
        if type_id in self._subs_by_type or type_id in self._tapped or type_id in self._hooks:
            return True
        return self._vis.watching_control()

    def _track(self, reg: ComponentRegistration[Any]) -> None:
        if reg.type_id not in self._trackers:
            self._trackers[reg.type_id] = self.world.track(reg.model, self._wake)

    def _let_go(self, type_id: int) -> None:
        if not self._keeps_tracking(type_id):
            self._untrack(type_id)

    def _untrack(self, type_id: int) -> None:
        tracker = self._trackers.pop(type_id, None)
        if tracker is not None:
            tracker.close()

    def _track_for_control(self) -> None:
        """Control is watched through a view: track every synced type, so that an entity
        that gains or loses a component has its control rechecked in the same flush."""
        for reg in self.registry:
            self._track(reg)

    def visibility_changed(
        self, component: type[BaseModel] | None = None, entity: EntityId | None = None
    ) -> None:
        """Evaluate visibility rules again at the next flush: of ``component`` (default:
        every restricted type), for ``entity`` (default: every entity). Clients get the
        entities that became visible and removals of those that stopped being visible."""
        self._vis.changed(component, entity)

    def handle_frame(self, connection: int, binary: bool, frame: list[Any]) -> None:
        """Apply a client's SUBSCRIBE / UNSUBSCRIBE / RESYNC frame (parsed by
        :func:`~pl3xus_rx.protocol.parse_subscription`, then :meth:`handle`).

        Raises:
            ProtocolError: a malformed frame or a subscription that cannot be served (the
                error names the subscription, the type and what was wrong).
        """
        if frame[0] == _ACK:  # (the most frequent of them: a v2 client's, per frame batch)
            client = self._clients.get(connection)
            seq = frame[1] if len(frame) == 2 else None
            if client is not None and type(seq) is int and seq >= 0:
                self._windows.ack(client, seq)
                if client.behind:
                    self._acked_behind = True
                    self._wake()  # (the next flush judges whether it has caught up)
                return
        self.handle(connection, binary, parse_subscription(frame))

    def handle(self, connection: int, binary: bool, frame: SubscriptionFrame) -> None:
        """Apply a parsed subscription frame from ``connection``.

        Raises:
            SubscriptionError: a subscription that cannot be served (named).
        """
        self.add_client(connection, binary=binary)
        client = self._clients[connection]
        if isinstance(frame, AckFrame):
            self._windows.ack(client, frame.seq)
            if client.behind:
                self._wake()  # (the next flush judges whether it has caught up)
        elif isinstance(frame, SubscribeFrame):
            self._subscribe(client, frame.sub_id, frame.type_name, frame.entity, frame.options)
        elif isinstance(frame, UnsubscribeFrame):
            sub = client.subs.get(frame.sub_id)
            if sub is not None:
                self._drop(sub)
        else:
            targets = (
                list(client.subs.values())
                if frame.sub_id is None
                else [s for s in (client.subs.get(frame.sub_id),) if s is not None]
            )
            if frame.sub_id is not None and not targets:
                raise SubscriptionError(
                    f"RESYNC of unknown subscription {frame.sub_id}", subscription=frame.sub_id
                )
            for sub in targets:
                self._want_snapshot(sub)
            self._wake()

    def _subscribe(
        self, client: _Client, sub_id: int, type_name: str, entity: Any, options: Any
    ) -> None:
        reg, entity_id, rate, deadband = check_subscribe(
            self.registry, sub_id, type_name, entity, options
        )
        if sub_id not in client.subs and (
            len(client.subs) >= self.settings.max_subscriptions_per_connection
        ):
            limit = self.settings.max_subscriptions_per_connection
            raise SubscriptionError(
                f"too many subscriptions (max_subscriptions_per_connection={limit})",
                subscription=sub_id,
                type_name=type_name,
                limit=limit,
            )
        old = client.subs.get(sub_id)
        if old is not None:
            self._drop(old)
        sub = _Sub(
            sub_id,
            client,
            reg,
            entity_id,
            rate,
            deadband,
        )
        sub.view = self._vis.view_for(reg, client.identity)
        if sub.view is not None:
            sub.view.subs.add(sub)
        client.subs[sub_id] = sub
        self._subs_by_type.setdefault(reg.type_id, set()).add(sub)
        if self.on_subscription is not None:
            self.on_subscription(client.id, reg.name, sub.entity, True)
        self._track(reg)  # (unwatched types need no tracking)
        self._want_snapshot(sub)
        self._wake()

    def _want_snapshot(self, sub: _Sub) -> None:
        sub.needs_snapshot = True
        sub.snapshot_rest = None  # (re)starts from the beginning
        sub.snapshot_pending = set()
        sub.held.clear()
        sub.forced.clear()  # the snapshot carries the current values
        self._forced_subs.discard(sub)
        sub.last_sent.clear()
        self._held_subs.discard(sub)
        self._snapshot_subs.add(sub)

    # ------------------------------------------------------------------ flushing

    def _type_interval(self, reg: ComponentRegistration[Any]) -> float:
        rate = self.settings.max_update_rate_hz
        if reg.max_update_rate_hz is not None:
            rate = min(rate, reg.max_update_rate_hz)
        return 1.0 / rate

    def next_flush_delay(self, now: float) -> float | None:
        """Seconds until a flush has something to do (0 if now), or ``None`` if nothing is
        pending."""
        due: list[float] = []
        global_next = self._last_flush + 1.0 / self.settings.max_update_rate_hz
        if any(not sub.client.behind for sub in self._snapshot_subs):
            due.append(global_next)
        for type_id, tracker in self._trackers.items():
            if tracker.pending:
                due.append(max(global_next, self._type_due.get(type_id, -math.inf)))
        for sub in self._held_subs:
            if not sub.client.behind:
                due.append(max(global_next, sub.next_due))
        if self._replies.new or self._recheck or self._acked_behind:
            # (a waiting reply's blocker schedules its own flush; a behind client that
            # acknowledged may have caught up: the next flush judges it and catches it up)
            due.append(global_next)
        if not due:
            return None
        return max(0.0, min(due) - now)

    def flush(self, now: float) -> list[tuple[int, bytes | str]]:
        """Collect what is due and return ``(connection, frame)`` pairs, one per connection
        (then the replies that were waiting for this flush).

        Args:
            now: The current time in seconds (any monotonic clock; the caller's).
        """
        frames: list[tuple[int, bytes | str]] = []
        self.flush_into(now, lambda connection, data: frames.append((connection, data)))
        return frames

    def flush_into(
        self,
        now: float,
        send: Callable[[int, Any], object],
        stamp: tuple[float, float] | None = None,
        *,
        chunks: bool = False,
    ) -> None:
        """:meth:`flush`, handing each frame to ``send(connection, frame)`` as soon as it is
        assembled, so that only one per-connection frame is alive at a time (a hundred big
        frames alive at once cost the allocator more than building them). ``stamp`` is
        ``(as_of, age)`` for protocol-v2 frames: the wall-clock time the World's data is
        current as of, and how old it already is (default: ``now``, 0).

        ``send`` gets ``bytes`` (msgpack) or ``str`` (JSON); with ``chunks``, msgpack frames
        come as tuples of bytes (:data:`~pl3xus_rx.protocol.WireData`: the body that plain
        subscribers share is then handed over, not copied into each connection's frame)."""
        if now < self._last_flush + 1.0 / self.settings.max_update_rate_hz - 1e-9:
            return
        self._acked_behind = False
        if self._windows.acking:
            self._windows.judge(now, self.settings)
        cache = self._encoder
        cache.begin_flush()
        # client -> groups being built
        out: dict[_Client, list[Group]] = {}

        # Restricted types that send anything else this flush (a snapshot part, held or
        # forced changes) have their changes (and visibility) brought up to date first, so
        # that nothing goes out that the identity may no longer see.
        urgent = self._urgent_views(now) if self._views else set()
        flushed: list[tuple[SafeSubject[FlushedChanges[Any]], FlushedChanges[Any]]] = []
        hooked: set[FlushHook] = set()

        # 1. changes of every type whose own interval has elapsed. EntityControl goes last:
        # its visibility follows its entity's, which the other types' changes move.
        control = self.registry.find(EntityControl)
        control_id = control.type_id if control is not None else -1
        control_views = control_id in self._views
        trackers = list(self._trackers.items())
        if control_views:
            trackers.sort(key=lambda item: item[0] == control_id)
        for type_id, tracker in trackers:
            if control_views and type_id == control_id:
                self._vis.recheck_control(control_id)
            recheck = type_id in self._recheck
            if not tracker.pending and not recheck:
                continue
            reg = self.registry.by_id(type_id)
            assert reg is not None
            if (
                now < self._type_due.get(type_id, -math.inf) - 1e-9
                and not recheck
                and type_id not in urgent
            ):
                continue
            pending = tracker.drain()
            cache.forget_gone(type_id, pending)
            if control_views and type_id != control_id and pending:
                self._vis.moved.update(pending)
            self._type_due[type_id] = now + self._type_interval(reg)
            baseline = (
                self._baseline.setdefault(type_id, {})
                if reg.field_deltas and type_id in self._subs_by_type
                else None
            )
            by_view: dict[View, dict[EntityId, int]] = {}
            views = self._views.get(type_id)
            if views:
                marked = self._recheck.pop(type_id, ()) if recheck else ()
                for view in views.values():
                    again = marked
                    if marked is None:
                        again = set(self.world.peek(reg.model)) | view.visible
                    by_view[view] = self._vis.changes(view, pending, again)
            shared = cache.shared
            items_shared = 0
            for sub in self._subs_by_type.get(type_id, ()):
                if sub.needs_snapshot and sub.snapshot_rest is None:
                    continue  # its snapshot below reflects these changes already
                source = pending if sub.view is None else by_view[sub.view]
                changes = (
                    source
                    if sub.entity is None
                    else ({sub.entity: source[sub.entity]} if sub.entity in source else {})
                )
                if sub.snapshot_rest is not None:  # a snapshot under way covers the rest
                    later = sub.snapshot_pending
                    changes = {e: c for e, c in changes.items() if e not in later}
                if not changes:
                    continue
                if sub.client.behind:
                    self._hold_behind(sub, changes, cache, out)
                    continue
                if sub.max_rate_hz is not None:
                    self._hold(sub, changes)
                    continue
                deltas = baseline is not None and sub.deadband is None and not sub.full_next
                sub.full_next = False
                if changes is not source or sub.deadband is not None:
                    self._emit_changes(sub, changes, cache, out, baseline if deltas else None)
                    continue
                # A plain subscriber: every one of this type (and view) gets the same group,
                # built once, and the same tuple of it per subscription id, so that the
                # frame assembly sees one object for all of them and encodes it once.
                client = sub.client
                key = (type_id, client.binary, deltas, id(sub.view))
                made = shared.get(key)
                if made is None:
                    made = shared[key] = (
                        change_group(
                            sub,
                            changes,
                            self.world.peek(reg.model),
                            cache,
                            baseline if deltas else None,
                            client.binary,
                            self._counters,
                        ),
                        {},
                    )
                group: Group | None = made[1].get(sub.id)
                if group is None:
                    count, joined, removals, despawns = made[0]
                    if not (count or removals or despawns):
                        continue
                    group = made[1][sub.id] = (sub.id, 0, count, joined, removals, despawns)
                items_shared += group[2]
                groups = out.get(client)
                if groups is None:
                    out[client] = [group]
                else:
                    groups.append(group)
            self._counters["items_sent"] += items_shared
            if baseline is not None:
                self._advance_baseline(reg, baseline, pending, cache)
            tap = self._tapped.get(type_id)
            if tap is not None and pending:
                flushed.append((tap, self._taps.batch(reg, pending)))
            hooks = self._hooks.get(type_id)
            if hooks is not None and pending:
                for hook in hooks:
                    self._call_hook(hook.changes, reg, pending)
                    hooked.add(hook)

        # 2. rate-limited subscriptions that are due
        for sub in list(self._held_subs):
            if now >= sub.next_due - 1e-9 and not sub.needs_snapshot and not sub.client.behind:
                held, sub.held = sub.held, {}
                self._held_subs.discard(sub)
                self._emit_changes(sub, held, cache, out)
                sub.next_due = now + 1.0 / (sub.max_rate_hz or math.inf)

        # 2b. the caller's own writes that a deadband held back, or that went out (or were
        # suppressed) before the command finished: sent past the deadband
        for sub in list(self._forced_subs):
            self._emit_forced(sub, cache, out)

        # 3. snapshots: at most max_snapshot_items entities per connection per flush (a big
        # snapshot, or many at once, go out in parts over several flushes)
        budgets: dict[_Client, tuple[int, int]] = {}
        for sub in list(self._snapshot_subs):
            if sub.client.behind:
                continue  # it goes on once the client has caught up
            budget, bytes_left = budgets.get(
                sub.client, (self.settings.max_snapshot_items, self.settings.max_snapshot_bytes)
            )
            if budget <= 0 or bytes_left <= 0:
                continue  # this connection's frame is full: next flush
            sent, done, size = self._emit_snapshot(sub, cache, out, budget, bytes_left)
            budgets[sub.client] = (budget - max(sent, 1), bytes_left - max(size, 1))
            if done:
                self._counters["snapshots"] += 1
                self._snapshot_subs.discard(sub)
                sub.needs_snapshot = False
                if sub.max_rate_hz is not None:
                    sub.next_due = now + 1.0 / sub.max_rate_hz

        self._last_flush = now
        sent, nbytes = send_frames(out, send, now, stamp or (now, 0.0), chunks=chunks)
        if sent:
            self._counters["flushes"] += 1
            self._counters["frames"] += sent
            self._counters["frame_bytes"] += nbytes
        # Taps see each type's batch once its frames are out (their code may change the World:
        # that goes into the next flush).
        for tap, batch in flushed:
            tap.on_next(batch)
        if hooked:
            as_of = stamp[0] if stamp is not None else time.time()
            for hook in hooked:
                self._call_hook(hook.flushed, as_of)
        # Replies wait until the changes they caused have been sent (Meteor's "updated").
        self._replies.release(send, self._clients, self._pending)

    # ------------------------------------------------------------------ protocol v2

    def beacons(self, now: float, stamp: tuple[float, float]) -> list[tuple[int, bytes | str]]:
        """BEACON frames for the idle v2 connections, ``(connection, frame)``; call it at
        least every quarter ``as_of_interval`` (``stamp``: ``(as_of, age)`` as for a
        flush)."""
        return self._windows.beacons(now, stamp, self.settings.as_of_interval)

    def overdue(self, now: float) -> list[int]:
        """Connections behind their window for more than ``max_behind_seconds``."""
        return self._windows.overdue(now, self.settings.max_behind_seconds)

    @property
    def speaks_v2(self) -> bool:
        """Whether any connection speaks protocol v2 (BEACONs are due)."""
        return bool(self._windows.v2)

    def next_flush_allowed(self) -> float:
        """The earliest time (on the flush clock) the rate cap allows the next flush."""
        return self._last_flush + 1.0 / self.settings.max_update_rate_hz

    def release_deferred(self, send: Callable[[int, bytes | str], None]) -> None:
        """Send every reply still waiting, whatever it waits for (the server is shutting
        down: an answer that comes early beats none)."""
        self._replies.release_all(send, self._clients)

    def _urgent_views(self, now: float) -> set[int]:
        """Restricted types with a subscription that gets something other than changes in
        this flush (a snapshot part, held or forced changes)."""
        urgent: set[int] = set()
        for sub in self._snapshot_subs:
            if sub.view is not None:
                urgent.add(sub.reg.type_id)
        for sub in self._forced_subs:
            if sub.view is not None:
                urgent.add(sub.reg.type_id)
        for sub in self._held_subs:
            if sub.view is not None and now >= sub.next_due - 1e-9:
                urgent.add(sub.reg.type_id)
        return urgent

    def _emit_forced(self, sub: _Sub, cache: ItemEncoder, out: dict[_Client, list[Any]]) -> None:
        """Send ``sub``'s forced entities that no pending change will carry (the rest go out
        with their change, past the deadband), and those its rate cap holds back."""
        if sub.view is not None:  # what the identity may not see is not sent, forced or not
            sub.forced.intersection_update(sub.view.visible)
        pending = self._pending(sub.reg.type_id)
        due = {e: sub.held.get(e, _UPSERT) for e in sub.forced if e not in pending}
        if not due:
            if not sub.forced:
                self._forced_subs.discard(sub)
            return
        if sub.needs_snapshot:
            if sub.snapshot_rest is None:
                return  # the snapshot, not begun yet, will carry them
            # entities its parts already carried go as live changes; the rest come with
            # their part (which discards them from ``forced``)
            due = {e: c for e, c in due.items() if e not in sub.snapshot_pending}
            if not due:
                return
        for entity in due:
            sub.held.pop(entity, None)  # goes now, past the subscription's rate cap
        if not sub.held:
            self._held_subs.discard(sub)
        self._emit_changes(sub, due, cache, out)
        sub.forced.difference_update(due)
        if not sub.forced:
            self._forced_subs.discard(sub)

    def _hold_behind(
        self,
        sub: _Sub,
        changes: dict[EntityId, int],
        cache: ItemEncoder,
        out: dict[_Client, list[Any]],
    ) -> None:
        """A subscription of a connection behind its window: its changes merge, except
        the ones its own commands' replies wait for (read your writes, past the window)."""
        awaited = self._replies.awaited(sub.client.id, sub.reg.type_id)
        if awaited:
            due = {}
            for entity in awaited.intersection(changes):
                change = changes[entity]
                held = sub.held.pop(entity, None)
                due[entity] = change if held is None else merge_change(held, change)
            if due:
                self._emit_changes(sub, due, cache, out)
                changes = {e: c for e, c in changes.items() if e not in due}
        if changes:
            self._counters["merged"] += len(changes)
            self._hold(sub, changes)

    def _hold(self, sub: _Sub, changes: dict[EntityId, int]) -> None:
        for entity, change in changes.items():
            held = sub.held.get(entity)
            sub.held[entity] = change if held is None else merge_change(held, change)
        self._held_subs.add(sub)

    def _advance_baseline(
        self,
        reg: ComponentRegistration[Any],
        baseline: dict[EntityId, list[Any]],
        pending: dict[EntityId, int],
        cache: ItemEncoder,
    ) -> None:
        stored = self.world.peek(reg.model)
        for entity, change in pending.items():
            value = stored.get(entity)
            if change & _FINAL == _UPSERT and value is not None:
                baseline[entity] = cache.values_of(reg, entity, value)
            else:
                baseline.pop(entity, None)

    def _emit_changes(
        self,
        sub: _Sub,
        changes: dict[EntityId, int],
        cache: ItemEncoder,
        out: dict[_Client, list[Any]],
        baseline: dict[EntityId, list[Any]] | None = None,
    ) -> None:
        binary = sub.client.binary
        counters = self._counters
        count, joined, removals, despawns = change_group(
            sub, changes, self.world.peek(sub.reg.model), cache, baseline, binary, counters
        )
        if count or removals or despawns:
            counters["items_sent"] += count
            out.setdefault(sub.client, []).append((sub.id, 0, count, joined, removals, despawns))

    def _emit_snapshot(
        self,
        sub: _Sub,
        cache: ItemEncoder,
        out: dict[_Client, list[Any]],
        limit: int,
        byte_limit: int,
    ) -> tuple[int, bool, int]:
        """Add the next snapshot group of ``sub`` to ``out`` (:func:`snapshot_part`);
        returns how many items it holds, whether it completes the snapshot, and their
        bytes."""
        reg = sub.reg
        flags, count, joined, size, entries, done = snapshot_part(
            sub, self.world.peek(reg.model), cache, limit, byte_limit, self._vis.still_seen
        )
        if reg.field_deltas:
            baseline = self._baseline.setdefault(reg.type_id, {})
            pending = self._pending(reg.type_id)
            for entity, value in entries:
                if entity in pending:
                    sub.full_next = True  # the others still hold an older value of it
                else:
                    baseline[entity] = cache.values_of(reg, entity, value)
        self._counters["items_sent"] += count
        out.setdefault(sub.client, []).append((sub.id, flags, count, joined, [], []))
        return count, done, size

    def defer(
        self,
        connection: int,
        frame: list[Any],
        *,
        component: type[BaseModel] | None = None,
        entity: EntityId | None = None,
        current: bool = False,
    ) -> None:
        """Send ``frame`` to ``connection`` after the next flush, and not before every
        subscription of ``connection`` that covers ``component`` on ``entity`` has been sent
        its current value: a pending change and a snapshot under way are waited for; the
        connection's own write passes its subscriptions' rate caps and deadbands, so that a
        reply never waits on a rate the client chose (an unbounded wait, and an unbounded
        list of waiting replies). ``current``: not before everything the connection
        subscribes to is current (it is within its acknowledgement window and no change is
        still to send it): the answer to a change of the whole World."""
        if current:
            self._replies.hold_until_current(connection, frame)
            self._wake()
            return
        reg = self.registry.find(component) if component is not None else None
        client = self._clients.get(connection)
        self._replies.hold(connection, frame, reg, entity, client, self._forced_subs)
        self._wake()

    # ------------------------------------------------------------------ hooks

    @property
    def encoder(self) -> ItemEncoder:
        """The item encoder (a flush hook that records reuses the items it made)."""
        return self._encoder

    def hook(self, hook: FlushHook, components: Iterable[type[BaseModel]]) -> Callable[[], None]:
        """Call ``hook`` in every flush with the changes of ``components`` (synced types),
        tracked from now on even while no client subscribes; returns what unhooks it.

        Raises:
            NotRegistered: one of ``components`` is not a synced component.
        """
        regs = [self.registry.get(model) for model in components]
        for reg in regs:
            hooks = self._hooks.setdefault(reg.type_id, [])
            if hook not in hooks:
                hooks.append(hook)
            self._track(reg)

        def unhook() -> None:
            for reg in regs:
                hooks = self._hooks.get(reg.type_id)
                if hooks is not None and hook in hooks:
                    hooks.remove(hook)
                    if not hooks:
                        del self._hooks[reg.type_id]
                        self._let_go(reg.type_id)

        return unhook

    @staticmethod
    def _call_hook(method: Callable[..., None], *args: Any) -> None:
        try:
            method(*args)
        except Exception:
            logger.exception("a flush hook failed (%s)", method)

    # ------------------------------------------------------------------ introspection

    def flushed(self, model: type[C]) -> reactivex.Observable[FlushedChanges[C]]:
        """An Observable of what each flush sends of the synced type ``model``
        (:class:`FlushedChanges`: conflated upserts, removals and despawns), to tap, record
        or forward exactly what its subscribers receive. Observing it tracks the type's
        changes even while no client subscribes.

        Raises:
            NotRegistered: ``model`` is not a synced component.
        """
        return self._taps.observable(self.registry.get(model))

    def subscriptions_of(self, connection: int) -> list[SubscriptionInfo]:
        """The live subscriptions of ``connection`` (none for an unknown one)."""
        client = self._clients.get(connection)
        if client is None:
            return []
        return [sub.info() for sub in client.subs.values()]

    def sent(self) -> tuple[int, int]:
        """SYNC frames and their bytes produced so far (cheaper than :meth:`statistics`)."""
        counters = self._counters
        return counters["frames"], counters["frame_bytes"]

    def statistics(self) -> SyncStatistics:
        """A snapshot of the counters."""
        return SyncStatistics(
            subscriptions=sum(len(c.subs) for c in self._clients.values()),
            snapshots_under_way=sum(s.snapshot_rest is not None for s in self._snapshot_subs),
            item_encodings=self._encoder.encodings,
            unencodable=self._encoder.unencodable,
            behind=self._windows.behind,
            acknowledging=len(self._windows.acking),
            **self._counters,
        )

    def window_lag(self, now: float) -> float:
        """The age of the oldest unacknowledged SYNC frame over every connection that
        acknowledges (0 if none is in flight): how far the slowest of them lags."""
        return self._windows.lag(now)
