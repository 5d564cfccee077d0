"""Read access (``visible_to``) in the sync engine, without sockets: what each identity
receives, what it converges to, and that encode-once survives."""

from __future__ import annotations

import os
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import pl3xus_rx.sync._wire as wire_module
from client_sync.store import ReplicaChangeKind, Store
from pl3xus_rx import Identity
from pl3xus_rx.protocol import FrameKind
from pl3xus_rx.sync import ComponentBuilder, ComponentRegistry, SyncEngine, SyncSettings
from pl3xus_rx.world import EntityId, World


class Doc(BaseModel):
    site: str
    value: float


class Plan(BaseModel):
    text: str


class Open(BaseModel):
    n: int


SITES = ("a", "b", "c")
IDENTITIES = {
    1: Identity.of("ann", "operator"),
    2: Identity.of("ann", "operator"),  # a second tab of ann: the same view
    3: Identity.of("bob", "operator"),
    4: Identity.of("cat", "supervisor"),  # JSON
}


class Rig:
    """A world whose Docs are visible by site grants, Plans to supervisors only."""

    def __init__(
        self,
        deltas: bool = False,
        chunk: int = 20_000,
        type_rate: float | None = None,
        snapshot_bytes: int = 8 << 20,
    ) -> None:
        self.world = World()
        self.registry = ComponentRegistry()
        self.grants: dict[str, set[str]] = {"ann": {"a"}, "bob": {"b"}, "cat": set(SITES)}
        builder = ComponentBuilder(self.registry, Doc).visible_to(self.rule)
        if deltas:
            builder.field_deltas()
        if type_rate is not None:
            builder.max_update_rate_hz(type_rate)
        builder.build()
        ComponentBuilder(self.registry, Plan).visible_to("supervisor").build()
        self.registry.add(Open)
        settings = SyncSettings(
            max_update_rate_hz=100, max_snapshot_items=chunk, max_snapshot_bytes=snapshot_bytes
        )
        self.engine = SyncEngine(self.world, self.registry, settings)
        self.now = 0.0
        self.stores: dict[int, Store] = {}
        self.subs: dict[tuple[int, int], tuple[type[BaseModel], int | None]] = {}
        self.received: list[tuple[int, Any]] = []
        self.identities = dict(IDENTITIES)
        for cid, identity in IDENTITIES.items():
            self.engine.add_client(cid, binary=cid != 4, identity=identity)
            self.stores[cid] = Store(self.registry.wire_table())

    def rule(self, world: World, identity: Identity, entity: EntityId) -> bool:
        doc = world.get(entity, Doc)
        return doc is not None and doc.site in self.grants.get(identity.name, set())

    def sees(self, cid: int, model: type[BaseModel], entity: int) -> bool:
        identity = self.identities[cid]
        if model is Doc:
            return self.rule(self.world, identity, EntityId(entity))
        if model is Plan:
            return identity.has_role("supervisor")
        return True

    def subscribe(
        self, cid: int, sub: int, model: type[BaseModel], entity: int | None = None, **opts: Any
    ) -> None:
        self.stores[cid].add_subscription(sub, model.__name__, model, entity)
        frame = [FrameKind.SUBSCRIBE, sub, model.__name__, entity, opts]
        self.engine.handle_frame(cid, cid != 4, frame)
        self.subs[(cid, sub)] = (model, entity)

    def unsubscribe(self, cid: int, sub: int) -> None:
        self.engine.handle_frame(cid, cid != 4, [FrameKind.UNSUBSCRIBE, sub])
        self.stores[cid].remove_subscription(sub)
        del self.subs[(cid, sub)]

    def flush(self, dt: float = 1.0) -> None:
        self.now += dt
        for cid, data in self.engine.flush(self.now):
            frame = (
                msgpack.unpackb(data, strict_map_key=False)
                if isinstance(data, bytes)
                else __import__("json").loads(data)
            )
            store = self.stores[cid]
            for change in store.apply(frame):
                self.received.append((cid, change))
                if change.kind in (ReplicaChangeKind.INSERTED, ReplicaChangeKind.UPDATED):
                    model, _ = self.subs[(cid, change.subscription)]
                    # never a value the identity may not see, and always the current one
                    assert self.sees(cid, model, change.entity), (cid, change)
                    assert change.value == self.world.get(EntityId(change.entity), model)
            assert not store.rejected, store.rejected

    def expected(self, cid: int, sub: int) -> dict[int, BaseModel]:
        model, entity = self.subs[(cid, sub)]
        return {
            e: v
            for e, v in self.world.query(model)
            if (entity is None or e == entity) and self.sees(cid, model, e)
        }


def test_each_identity_gets_exactly_what_it_may_see() -> None:
    rig = Rig()
    a = rig.world.spawn(Doc(site="a", value=1), Plan(text="p"), Open(n=1))
    b = rig.world.spawn(Doc(site="b", value=2), Open(n=2))
    for cid in IDENTITIES:
        rig.subscribe(cid, 1, Doc)
        rig.subscribe(cid, 2, Plan)
        rig.subscribe(cid, 3, Open)
    rig.flush()
    assert set(rig.stores[1].view(1)) == {a}
    assert set(rig.stores[3].view(1)) == {b}
    assert set(rig.stores[4].view(1)) == {a, b}
    assert set(rig.stores[1].view(2)) == set() and rig.stores[1].complete(2)
    assert set(rig.stores[4].view(2)) == {a}
    assert set(rig.stores[3].view(3)) == {a, b}

    # the Doc moves to site b: a removal for ann, the value for bob
    rig.world.insert(a, Doc(site="b", value=3))
    rig.flush()
    assert set(rig.stores[1].view(1)) == set()
    assert set(rig.stores[2].view(1)) == set()
    assert rig.stores[3].view(1) == {a: Doc(site="b", value=3), b: Doc(site="b", value=2)}

    # ann is granted site b: after visibility_changed, both Docs arrive
    rig.grants["ann"].add("b")
    rig.engine.visibility_changed(Doc)
    rig.flush()
    assert set(rig.stores[1].view(1)) == {a, b}
    # and revoked for one entity only
    rig.grants["ann"].discard("b")
    rig.engine.visibility_changed(Doc, a)
    rig.flush()
    assert set(rig.stores[1].view(1)) == {b}  # b is stale until it is checked too
    rig.engine.visibility_changed()
    rig.flush()
    assert set(rig.stores[1].view(1)) == set()


def test_views_share_encodings_and_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig()
    docs = [rig.world.spawn(Doc(site=SITES[i % 3], value=i)) for i in range(30)]
    extra = {}
    for cid in range(10, 30):  # twenty more tabs of ann and bob
        identity = IDENTITIES[1] if cid % 2 else IDENTITIES[3]
        rig.engine.add_client(cid, binary=True, identity=identity)
        rig.identities[cid] = identity
        rig.stores[cid] = Store(rig.registry.wire_table())
        extra[cid] = identity
    for cid in [*IDENTITIES, *extra]:
        rig.subscribe(cid, 1, Doc)
    rig.flush()
    bodies: list[Any] = []
    real = wire_module.groups_msgpack

    def counting(groups: Any) -> Any:
        bodies.append(groups)
        return real(groups)

    monkeypatch.setattr(wire_module, "groups_msgpack", counting)
    before = rig.engine.statistics().item_encodings
    for i, e in enumerate(docs):
        rig.world.insert(e, Doc(site=SITES[i % 3], value=100 + i))
    rig.flush()
    # each changed item encoded once per encoding, if some view sees it: msgpack for ann's
    # site a and bob's site b (10 each, shared by 22 connections), JSON for cat (all 30)
    assert rig.engine.statistics().item_encodings - before == 20 + 30
    # one msgpack body per visibility class (ann's 11 tabs, bob's 11), not per connection
    assert len(bodies) == 2
    for cid, identity in extra.items():
        site = "a" if identity.name == "ann" else "b"
        assert {d.site for d in rig.stores[cid].view(1).values()} == {site}


ops = st.lists(
    st.one_of(
        st.tuples(st.just("spawn"), st.sampled_from(SITES), st.booleans()),
        st.tuples(st.just("move"), st.integers(0, 7), st.sampled_from(SITES)),
        st.tuples(st.just("value"), st.integers(0, 7), st.integers(0, 5)),
        st.tuples(st.just("remove"), st.integers(0, 7)),
        st.tuples(st.just("despawn"), st.integers(0, 7)),
        st.tuples(
            st.just("grant"),
            st.sampled_from(["ann", "bob"]),
            st.sampled_from(SITES),
            st.booleans(),
            st.one_of(st.none(), st.integers(0, 7)),
        ),
        st.tuples(
            st.just("subscribe"),
            st.sampled_from(list(IDENTITIES)),
            st.integers(0, 2),
            st.sampled_from([Doc, Plan]),
            st.one_of(st.none(), st.integers(0, 7)),
            st.sampled_from([None, 5.0]),
        ),
        st.tuples(st.just("unsubscribe"), st.sampled_from(list(IDENTITIES)), st.integers(0, 2)),
        st.tuples(st.just("flush"), st.sampled_from([0.001, 0.05, 0.3])),
        st.tuples(st.just("resync"), st.sampled_from(list(IDENTITIES))),
    ),
    max_size=60,
)


@settings(max_examples=int(os.environ.get("PL3XUS_PROPERTY_EXAMPLES", "150")), deadline=None)
@given(
    ops,
    st.booleans(),
    # snapshot parts of 1, 3 or every entity; or parts cut by bytes (40: a few items)
    st.sampled_from([(1, 8 << 20), (3, 8 << 20), (20_000, 8 << 20), (20_000, 40)]),
    st.sampled_from([None, 4.0]),
)
def test_no_client_ever_receives_what_it_may_not_see(
    program: list[Any], deltas: bool, parts: tuple[int, int], type_rate: float | None
) -> None:
    """Random identities' grants, entities and subscriptions: every value a client receives
    is one it may see at that moment, and each converges to exactly its visible part."""
    chunk, snapshot_bytes = parts
    rig = Rig(deltas=deltas, chunk=chunk, type_rate=type_rate, snapshot_bytes=snapshot_bytes)
    spawned: list[EntityId] = []

    def alive(i: int) -> EntityId | None:
        if i < len(spawned) and rig.world.contains(spawned[i]):
            return spawned[i]
        return None

    for op in program:
        kind = op[0]
        if kind == "spawn":
            comps: list[BaseModel] = [Doc(site=op[1], value=0)]
            if op[2]:
                comps.append(Plan(text=op[1]))
            spawned.append(rig.world.spawn(*comps))
        elif kind == "move" and (e := alive(op[1])) is not None:
            old = rig.world.get(e, Doc)
            rig.world.insert(e, Doc(site=op[2], value=old.value if old else 0))
        elif kind == "value" and (e := alive(op[1])) is not None:
            old = rig.world.get(e, Doc)
            rig.world.insert(e, Doc(site=old.site if old else "a", value=op[2]))
        elif kind == "remove" and (e := alive(op[1])) is not None:
            rig.world.remove(e, Doc)
        elif kind == "despawn" and (e := alive(op[1])) is not None:
            rig.world.despawn(e)
        elif kind == "grant":
            _, name, site, on, which = op
            (rig.grants[name].add if on else rig.grants[name].discard)(site)
            target = alive(which) if which is not None else None
            if which is None or target is not None:  # (else: told at the end)
                rig.engine.visibility_changed(Doc, target)
        elif kind == "subscribe":
            _, cid, sub, model, which, rate = op
            entity = spawned[which] if which is not None and which < len(spawned) else None
            options = {} if rate is None else {"max_rate_hz": rate}
            rig.subscribe(cid, sub, model, entity, **options)
        elif kind == "unsubscribe" and (op[1], op[2]) in rig.subs:
            rig.unsubscribe(op[1], op[2])
        elif kind == "flush":
            rig.flush(dt=op[1])
        elif kind == "resync":
            rig.engine.handle_frame(op[1], op[1] != 4, [FrameKind.RESYNC, None])
    # whatever was told piecemeal, the final grants now hold everywhere
    rig.engine.visibility_changed()
    for _ in range(3 + len(spawned) * 3):
        rig.flush(dt=1.0)
    for (cid, sub), _ in rig.subs.items():
        assert dict(rig.stores[cid].view(sub)) == rig.expected(cid, sub), (cid, sub)
        assert rig.stores[cid].complete(sub)


def test_a_snapshot_never_shows_what_a_held_back_change_hid() -> None:
    """The type's own rate cap holds its changes back; a snapshot taken meanwhile must not
    show an entity that one of those changes made invisible (or a part of a big one)."""
    rig = Rig(type_rate=4.0, chunk=1)
    a = rig.world.spawn(Doc(site="a", value=1))
    b = rig.world.spawn(Doc(site="a", value=2))
    rig.subscribe(1, 1, Doc)
    rig.flush(dt=1.0)
    rig.flush(dt=1.0)  # (in parts of one entity)
    assert set(rig.stores[1].view(1)) == {a, b}
    rig.world.insert(b, Doc(site="a", value=3))
    rig.flush(dt=1.0)  # the type flushes: the next no sooner than in 0.25 s
    rig.world.insert(a, Doc(site="b", value=1))  # held back by the 4 Hz cap
    rig.subscribe(2, 1, Doc)  # ann's second tab
    rig.flush(dt=0.01)
    rig.world.insert(b, Doc(site="c", value=2))
    for _ in range(3):
        rig.flush(dt=0.01)  # (the check on receipt is in Rig.flush)
    assert rig.stores[2].complete(1)
    assert a not in rig.stores[2].view(1)
    rig.flush(dt=1.0)  # b's move goes out at the type's rate
    assert set(rig.stores[2].view(1)) == set() == set(rig.stores[1].view(1))
