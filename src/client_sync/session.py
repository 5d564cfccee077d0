"""The client's protocol bookkeeping, without I/O: subscription and request ids, the frames
to send, and what each incoming frame means.

:class:`ClientSession` is to :class:`~client_sync.provider.SyncProvider` what the
``websockets`` protocol objects are to their asyncio front-end: it takes calls ("subscribe",
"a frame arrived", "the link dropped") and returns frames to send and typed events; the
provider moves the bytes, keeps the futures and drives the signals. Tested without sockets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from pl3xus_rx.exceptions import CommandRejected, FrameError, SequenceGap
from pl3xus_rx.protocol import ControlAction, FrameKind, Status, rejection_for
from pl3xus_rx.security import Identity

from .store import ReplicaChange, Store

__all__ = [
    "Applied",
    "ClientSession",
    "Invalidation",
    "NoticeEvent",
    "Reply",
    "ResyncNeeded",
    "SubscriptionSpec",
    "SyncArrived",
    "identity_in",
    "is_gap_or_bad_frame",
    "welcome_problem",
]

Frame = list[Any]


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    """What one server subscription covers.

    Attributes:
        name: The component's wire name.
        model: The component's model on this end.
        entity: One entity, or ``None`` for every entity.
        options: Subscription options (``max_rate_hz``, ``deadband``).
    """

    name: str
    model: type[BaseModel]
    entity: int | None
    options: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SyncArrived:
    """A SYNC frame arrived; apply it with :meth:`ClientSession.apply` (the provider does
    that off the socket reader)."""

    frame: Frame


@dataclass(frozen=True, slots=True)
class Beacon:
    """A BEACON (protocol v2): nothing new since SYNC ``seq``; the data is current as of
    ``as_of`` (server wall clock) and was ``age`` seconds old when sent."""

    seq: int
    as_of: float
    age: float


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to a command this session sent and still waits for."""

    req_id: int
    status: str
    message: str
    body: Mapping[str, Any]

    def error(self) -> CommandRejected | None:
        """The matching :class:`~pl3xus_rx.CommandRejected`, or ``None`` for ``ok``."""
        if self.status == Status.OK:
            return None
        return rejection_for(self.status, self.message, self.body.get("errors"))


@dataclass(frozen=True, slots=True)
class NoticeEvent:
    """A NOTICE: something the server tells this client unasked."""

    kind: str
    entity: int
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Invalidation:
    """An INVALIDATE: refetch the cached answers of query ``name`` (those whose parameters
    are in ``keys``, or all when ``keys`` is ``None``)."""

    name: str
    keys: list[Any] | None


@dataclass(frozen=True, slots=True)
class Applied:
    """A SYNC frame applied to the store: the changes, by subscription, and the values this
    end's models rejected (left out of the views)."""

    changes: list[ReplicaChange]
    rejected: list[FrameError]


@dataclass(frozen=True, slots=True)
class ResyncNeeded:
    """A SYNC frame could not be applied (a gap, a bad frame): send :attr:`frame` (a RESYNC
    of every subscription); the views are out of date until the snapshots are in."""

    error: Exception
    frame: Frame


Event = SyncArrived | Beacon | Reply | NoticeEvent | Invalidation | None


class ClientSession:
    """Subscriptions, commands in flight and the replica for one client, across connections.

    The ids it hands out are unique for its whole life, so a late answer from an earlier
    connection can never be taken for a new command's.
    """

    def __init__(self) -> None:
        self.store = Store([])
        """The replica the SYNC frames are applied to."""
        self.connected = False
        """Whether a link is up (set by :meth:`connected_with` and :meth:`disconnected`)."""
        self._subs: dict[int, SubscriptionSpec] = {}
        self._next_sub = 1
        self._next_req = 1
        self._in_flight: set[int] = set()
        self._awaiting: set[int] = set()  # subscriptions whose snapshot must complete
        self._heard: set[int] = set()  # subscriptions that had data on this connection

    # ------------------------------------------------------------------ the link

    def connected_with(self, components: list[list[Any]]) -> list[Frame]:
        """A link is up with this welcome component table: the SUBSCRIBE frames that renew
        every live subscription (their fresh snapshots reconcile the views)."""
        self.store.rebind(components)
        self.connected = True
        self._heard.clear()
        known = {s: spec for s, spec in self._subs.items() if self.store.knows(spec.name)}
        for sub_id in self._subs.keys() - known.keys():
            self.store.give_up(sub_id)  # this server does not sync it: nothing to wait for
        self._awaiting = set(known)
        return [self._subscribe_frame(sub_id, spec) for sub_id, spec in known.items()]

    def disconnected(self) -> list[int]:
        """The link dropped: the request ids that were waiting for an answer (they get none:
        a command is never re-sent)."""
        self.connected = False
        lost, self._in_flight = sorted(self._in_flight), set()
        return lost

    @property
    def synced(self) -> bool:
        """Connected, and every awaited snapshot complete."""
        if self._awaiting:
            store = self.store
            self._awaiting = {
                s for s in self._awaiting if s in self._subs and not store.complete(s)
            }
        return self.connected and not self._awaiting

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, spec: SubscriptionSpec) -> tuple[int, Frame | None]:
        """Open a subscription: its new id and the SUBSCRIBE frame (``None`` when the last
        welcome did not list the component: nothing is asked, nothing is awaited, and a
        later welcome that lists it renews it)."""
        sub_id = self._next_sub
        self._next_sub += 1
        self.store.add_subscription(sub_id, spec.name, spec.model, spec.entity)
        self._subs[sub_id] = spec
        if self.connected and not self.store.knows(spec.name):
            return sub_id, None
        self._awaiting.add(sub_id)
        return sub_id, self._subscribe_frame(sub_id, spec)

    def refused(self, sub_id: int) -> bool:
        """The server refused subscription ``sub_id`` (an ERROR naming it): it is not
        awaited any more (nothing will come for it). An ERROR naming a subscription that
        has had data on this connection is no refusal of it, and changes nothing (returns
        ``False``): a snapshot under way is never cut short."""
        if sub_id not in self._subs or sub_id in self._heard:
            return False
        self._awaiting.discard(sub_id)
        self.store.give_up(sub_id)
        return True

    def unsubscribe(self, sub_id: int) -> Frame:
        """Close a subscription: the UNSUBSCRIBE frame."""
        self._subs.pop(sub_id, None)
        self._awaiting.discard(sub_id)
        self.store.remove_subscription(sub_id)
        return [FrameKind.UNSUBSCRIBE, sub_id]

    def knows(self, name: str) -> bool:
        """Whether the server's last welcome listed component ``name``."""
        return self.store.knows(name)

    def resync(self) -> Frame:
        """Ask for fresh snapshots of every subscription: the RESYNC frame."""
        return [FrameKind.RESYNC, None]

    @staticmethod
    def _subscribe_frame(sub_id: int, spec: SubscriptionSpec) -> Frame:
        return [FrameKind.SUBSCRIBE, sub_id, spec.name, spec.entity, dict(spec.options)]

    # ------------------------------------------------------------------ commands

    def _command(self, kind: FrameKind, *rest: Any) -> tuple[int, Frame]:
        req_id = self._next_req
        self._next_req += 1
        self._in_flight.add(req_id)
        return req_id, [kind, req_id, *rest]

    def forget(self, req_id: int) -> None:
        """Stop waiting for the answer to ``req_id`` (timed out or cancelled): a late
        answer is then ignored."""
        self._in_flight.discard(req_id)

    def mutate(self, name: str, entity: int, payload: Any) -> tuple[int, Frame]:
        """A MUTATE: its request id and frame."""
        return self._command(FrameKind.MUTATE, name, entity, payload)

    def control(self, action: ControlAction, entity: int) -> tuple[int, Frame]:
        """A CONTROL (take or release): its request id and frame."""
        return self._command(FrameKind.CONTROL, action.value, entity)

    def request(self, name: str, entity: int | None, payload: Any) -> tuple[int, Frame]:
        """A REQUEST: its request id and frame."""
        return self._command(FrameKind.REQUEST, name, entity, payload)

    def query(self, name: str, params: Any) -> tuple[int, Frame]:
        """A QUERY: its request id and frame."""
        return self._command(FrameKind.QUERY, name, params)

    def spawn(self, parent: int | None, components: dict[str, Any]) -> tuple[int, Frame]:
        """A SPAWN (``components``: wire name -> JSON-form value): its request id and frame."""
        return self._command(FrameKind.SPAWN, parent, components)

    def despawn(self, entity: int) -> tuple[int, Frame]:
        """A DESPAWN: its request id and frame."""
        return self._command(FrameKind.DESPAWN, entity)

    def refresh(self, credential: str) -> tuple[int, Frame]:
        """A REFRESH (a new credential for this connection): its request id and frame."""
        return self._command(FrameKind.REFRESH, credential)

    @staticmethod
    def one_way(name: str, entity: int | None, payload: Any) -> Frame:
        """A SEND (no answer on success; a rejection comes as a notice)."""
        return [FrameKind.SEND, name, entity, payload]

    # ------------------------------------------------------------------ incoming

    def receive(self, frame: Frame) -> Event:
        """What an incoming frame of the sync or command layer means. A REPLY to a command
        no longer waited for gives ``None``.

        Raises:
            FrameError: a malformed frame, or a kind servers do not send.
        """
        kind = frame[0]
        if kind == FrameKind.SYNC:
            return SyncArrived(frame)
        if kind == FrameKind.REPLY:
            if (
                len(frame) != 5
                or type(frame[1]) is not int
                or not isinstance(frame[2], str)
                or not isinstance(frame[4], dict)
            ):
                raise FrameError("a REPLY frame must be [8, req_id, status, message, body]")
            if frame[1] not in self._in_flight:
                return None
            self._in_flight.discard(frame[1])
            return Reply(frame[1], frame[2], str(frame[3]), frame[4])
        if kind == FrameKind.NOTICE:
            if len(frame) < 2:
                raise FrameError("a NOTICE frame must be [10, kind, body]")
            detail = frame[2] if len(frame) > 2 and isinstance(frame[2], dict) else {}
            entity = detail.get("entity")
            return NoticeEvent(
                str(frame[1]),
                entity if type(entity) is int else 0,
                MappingProxyType(detail),
            )
        if kind == FrameKind.INVALIDATE:
            if len(frame) < 2 or not isinstance(frame[1], str):
                raise FrameError("an INVALIDATE frame must be [13, query_name, keys | null]")
            keys = frame[2] if len(frame) > 2 else None
            return Invalidation(frame[1], keys if isinstance(keys, list) else None)
        if kind == FrameKind.BEACON:
            if (
                len(frame) != 4
                or type(frame[1]) is not int
                or not all(isinstance(v, int | float) for v in frame[2:])
            ):
                raise FrameError("a BEACON frame must be [18, seq, as_of, age]")
            return Beacon(frame[1], float(frame[2]), float(frame[3]))
        raise FrameError(f"frame kind {kind} is not sent by servers")

    def acknowledge(self) -> Frame:
        """The ACK of every SYNC applied so far (protocol v2)."""
        return [FrameKind.ACK, self.store.seq]

    def apply(self, arrived: SyncArrived) -> Applied | ResyncNeeded:
        """Apply a SYNC frame to the store. Any failure (a gap, a bad frame, a bug) asks for
        fresh snapshots rather than drifting silently."""
        try:
            changes = self.store.apply(arrived.frame)
            self._heard.update(group[0] for group in arrived.frame[2])
        except Exception as exc:
            self.store.expect_snapshots()
            self._awaiting = set(self._subs)  # out of date until the snapshots are in
            return ResyncNeeded(exc, self.resync())
        rejected: list[FrameError] = []
        if self.store.rejected:  # a fresh snapshot would carry them again: report only
            rejected, self.store.rejected = self.store.rejected, []
        return Applied(changes, rejected)


def welcome_problem(welcome: Mapping[str, Any]) -> str | None:
    """What is wrong with a WELCOME body's tables, for this client (``None``: nothing). A
    client must refuse such a welcome whole rather than trip over it half-way (a broken or
    older gateway must not stop its clients for good)."""
    components = welcome.get("components", [])
    if not isinstance(components, list):
        return "its component table is not a list (is it a SyncServer?)"
    for row in components:
        if not (
            isinstance(row, list)
            and len(row) >= 4
            and isinstance(row[1], str)
            and isinstance(row[3], list)
            and all(isinstance(field, str) for field in row[3])
        ):
            return "a component row is not [type_id, name, schema_hash, [field, ...]]"
    for key, length in (("requests", 3), ("queries", 3), ("one_way", 1)):
        table = welcome.get(key) or []
        if not isinstance(table, list) or not all(
            isinstance(row, list) and len(row) >= length and isinstance(row[0], str)
            for row in table
        ):
            return f"its {key} table is not a list of [name, ...] rows"
    return None


def identity_in(welcome: Mapping[str, Any]) -> Identity | None:
    """Who a WELCOME body says this client is (``None`` if it does not say)."""
    raw = welcome.get("identity")
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        return None
    roles = raw.get("roles")
    return Identity(
        raw["name"],
        frozenset(r for r in roles if isinstance(r, str))
        if isinstance(roles, list)
        else frozenset(),
        anonymous=raw.get("anonymous") is True,
    )


def is_gap_or_bad_frame(exc: Exception) -> bool:
    """Whether a :class:`ResyncNeeded` came from the peer (a gap or a malformed frame)
    rather than from a bug on this end."""
    return isinstance(exc, SequenceGap | FrameError)
