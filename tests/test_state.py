"""Warm restarts (issue 28): the World saved to a state file and restored at start; what a
damaged, foreign, newer or outdated file says; saves that fail; gateways refuse it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import enum
import errno
import logging
import os
import random
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from conftest import UNIT, wait_until
from pydantic import BaseModel, Field, field_validator

from pl3xus_rx import (
    ANONYMOUS,
    EntityControl,
    Identity,
    StateConflict,
    StateRestoreFailed,
    StateSchemaChanged,
    StateSettings,
    StateUnreadable,
    StateWriteFailed,
    SyncServer,
    World,
)
from pl3xus_rx.commands import RESTORED_ANONYMOUS, Owner
from pl3xus_rx.state import FORMAT_VERSION, MAGIC
from pl3xus_rx.state import _file as state_file
from pl3xus_rx.state._format import TRAILER, decode_state, shape_of
from pl3xus_rx.sync import MutationContext
from pl3xus_rx.testing import MemoryTransport

pytestmark = pytest.mark.asyncio


class Position(BaseModel):
    x: float
    y: float


class Speed(BaseModel):
    """A robot's speed set point."""

    value: float = Field(0.5, ge=0, le=1)


class Reading(BaseModel):
    value: float


class Mode(enum.Enum):
    AUTO = "auto"
    MANUAL = "manual"


class Inner(BaseModel):
    label: str
    tags: list[str] = []


class Recipe(BaseModel):
    """Not JSON-native: a datetime, an enum, a nested model, a list, a dict, a big int."""

    name: str
    created: datetime.datetime
    mode: Mode
    inner: Inner
    steps: list[int]
    extra: dict[str, float]
    serial: int


class Secret(BaseModel):
    """Never synced: server-side only."""

    key: str


def make(path: Path, *, interval: float = 60.0, reading: bool = True) -> SyncServer:
    server = SyncServer(
        state=path,
        state_settings=StateSettings(save_interval=interval),
        transport=MemoryTransport(),
    )
    server.sync_component(Position)
    server.sync_component_builder(Speed).with_default_entity_policy().build()
    server.sync_component(Recipe)
    if reading:
        server.sync_component_builder(Reading).persist(False).build()
    return server


def recipe(n: int) -> Recipe:
    return Recipe(
        name=f"recipe {n}",
        created=datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        mode=Mode.MANUAL,
        inner=Inner(label="é ✓", tags=["a", "b"]),
        steps=[1, 2, n],
        extra={"k": 1.5},
        serial=2**70 + n,
    )


def ctx(connection: int, name: str | None) -> MutationContext:
    identity = Identity.of(name) if name is not None else ANONYMOUS
    return MutationContext(connection, identity)


async def saved_world(path: Path) -> dict[str, Any]:
    """A server's World with a bit of everything, saved to ``path``."""
    server = make(path)
    assert server.load_state() is None
    world = server.world
    cell = world.spawn(Position(x=0, y=0))
    robot = world.spawn(Position(x=1.5, y=2), Speed(value=0.25), Reading(value=3), parent=cell)
    book = world.spawn(recipe(7), parent=cell)
    bare = world.spawn(parent=robot)  # no component at all: kept (a grouping node)
    live = world.spawn(Reading(value=9))  # only transient components: not saved
    hidden = world.spawn(Secret(key="k"))  # only an unsynced type: not saved
    holder = world.spawn(Reading(value=1), parent=cell)
    below = world.spawn(Position(x=5, y=5), parent=holder)  # keeps ``holder``
    gone = world.spawn(Position(x=0, y=1))
    world.despawn(gone)
    world.insert(robot, EntityControl(holder=3, by="someone"))
    ledger = server.commands._core.ledger
    ledger.record(robot, Owner(name="alice"), {})
    ledger.record(below, Owner(connection=12), {})
    await server.save_state()
    return {
        "cell": cell,
        "robot": robot,
        "book": book,
        "bare": bare,
        "live": live,
        "hidden": hidden,
        "holder": holder,
        "below": below,
        "next": world.next_id,
    }


# ---------------------------------------------------------------------- round trips


async def test_the_world_comes_back_with_its_ids_hierarchy_values_and_owners(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cell.state"
    ids = await saved_world(path)
    server = make(path)
    loaded = server.load_state()
    assert loaded is not None
    world = server.world
    assert world.entities() == [
        ids[k] for k in ("cell", "robot", "book", "bare", "holder", "below")
    ]  # spawn order, the transient-only ones left out
    assert loaded.entities == 6 and loaded.values == 5 and loaded.owners == 2
    assert world.parent(ids["robot"]) == ids["cell"]
    assert world.children(ids["cell"]) == [ids["robot"], ids["book"], ids["holder"]]
    assert world.parent(ids["bare"]) == ids["robot"]
    assert world.get(ids["robot"], Position) == Position(x=1.5, y=2)
    assert world.get(ids["robot"], Speed) == Speed(value=0.25)
    assert world.get(ids["robot"], Reading) is None  # persist(False)
    assert world.get(ids["robot"], EntityControl) is None  # never persisted
    assert world.get(ids["book"], Recipe) == recipe(7)
    assert list(world.component_types(ids["holder"])) == []  # kept for what is below it
    # ids are never reused: not the despawned one, not the ones left out
    assert world.next_id == ids["next"]
    assert world.spawn() == ids["next"]
    # owners: an identity is durable, an anonymous connection is not
    commands = server.commands
    assert commands.owner_of(ids["robot"]) == Owner(name="alice")
    assert commands.owner_of(ids["below"]) == RESTORED_ANONYMOUS
    assert str(RESTORED_ANONYMOUS) == "anonymous clients before a restart"
    assert commands.holdings().entities == 2
    assert commands.holdings(Owner(name="alice")).bytes > 0  # Speed is client-writable
    assert commands.owns(ctx(1, "alice"), ids["robot"])
    assert not commands.owns(ctx(12, None), ids["below"])  # connection 12 is someone new


async def test_loading_emits_changes_and_restores_are_stable(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    await saved_world(path)
    first = path.read_bytes()
    server = make(path)
    seen: list[Any] = []
    server.world.changes(Position).subscribe(seen.append)
    server.load_state()
    assert len(seen) == 3  # subscribers see what a load inserts
    await server.save_state()
    again = path.read_bytes()
    # the same World, saved again: the same bytes, but the time it was written
    assert len(again) == len(first)
    assert decode_state(again, "x").entities == decode_state(first, "x").entities


async def test_serve_loads_saves_at_an_interval_skips_when_unchanged_and_saves_last(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.state"
    server = make(path, interval=0.05)
    async with server.serve("app", 1):
        assert server.state_statistics().loaded is None  # serve() loaded: nothing yet
        robot = server.world.spawn(Position(x=1, y=1), Speed())
        await wait_until(lambda: server.state_statistics().saves >= 1, what="a save")
        skipped = server.state_statistics().skipped
        await wait_until(lambda: server.state_statistics().skipped > skipped + 1, what="skips")
        assert server.state_statistics().saves == 1  # nothing changed: nothing written
        server.world.insert(robot, Reading(value=5))  # a transient change: still nothing
        await asyncio.sleep(0.15 * UNIT)
        assert server.state_statistics().saves == 1
        server.world.insert(robot, Speed(value=0.75))  # the last change, before the shutdown
    again = make(path)
    again.load_state()
    assert again.world.get(robot, Speed) == Speed(value=0.75)
    stats = server.state_statistics()
    assert stats.failures == 0 and stats.last is not None and stats.last.values == 2


async def test_unsynced_types_are_said_not_to_be_saved_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = make(tmp_path / "s.state")
    server.load_state()
    server.world.spawn(Secret(key="k"), Position(x=1, y=1))
    with caplog.at_level(logging.INFO, logger="pl3xus_rx.state"):
        await server.save_state()
        await server.save_state()
    told = [r for r in caplog.records if "Secret are not saved" in r.getMessage()]
    assert len(told) == 1 and "the server does not sync that type" in told[0].getMessage()


async def test_serve_refuses_a_world_spawned_before_the_load(tmp_path: Path) -> None:
    server = make(tmp_path / "s.state")
    server.world.spawn(Position(x=0, y=0))
    with pytest.raises(StateConflict, match=r"Call server.load_state\(\) after registering"):
        async with server.serve("app", 1):
            pass
    assert not server.net.addresses  # never listened


async def test_state_calls_at_the_wrong_time_say_so(tmp_path: Path) -> None:
    plain = SyncServer()
    with pytest.raises(StateConflict, match="SyncServer\\(state=PATH\\)"):
        plain.load_state()
    with pytest.raises(StateConflict):
        await plain.save_state()
    server = make(tmp_path / "s.state")
    server.load_state()
    with pytest.raises(StateConflict, match="loaded already"):
        server.load_state()


async def test_two_servers_may_not_share_a_state_file(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    first = make(path)
    async with first.serve("app", 1):
        second = make(path)
        with pytest.raises(StateConflict, match="another server of this process"):
            second.load_state()
    make(path).load_state()  # free again once the first stopped


async def test_a_gateway_server_refuses_a_state_file(tmp_path: Path) -> None:
    server = make(tmp_path / "s.state")
    with pytest.raises(StateConflict, match=r"only the authority|never persists"):
        server.forward_commands(lambda connection, frame: None)
    server.forward_commands(None)  # (nothing to forward: fine)
    SyncServer().forward_commands(lambda connection, frame: None)  # no state: fine


async def test_entity_control_never_persists_and_the_builder_opts_out() -> None:
    server = SyncServer()
    assert server.registry.get(EntityControl).persist is False
    assert server.sync_component(Position).persist is True
    reg = server.sync_component_builder(Reading).persist(False).build()
    assert reg.persist is False


async def test_unencodable_values_are_left_out_and_the_rest_saved(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.state"
    server = make(path)
    server.load_state()
    good = server.world.spawn(recipe(1))
    bad = server.world.spawn(recipe(2))
    server.world.insert(bad, recipe(2).model_copy(update={"name": "\ud800"}))  # lone surrogate
    with caplog.at_level(logging.ERROR):
        saved = await server.save_state()
    assert saved.left_out == {"Recipe": 1} and saved.values == 1
    assert f"Recipe of entity {bad} cannot be encoded" in caplog.text
    again = make(path)
    again.load_state()
    assert again.world.get(good, Recipe) == recipe(1)
    assert again.world.contains(bad) and again.world.get(bad, Recipe) is None


# ---------------------------------------------------------------------- schema changes


async def test_shapes_ignore_docstrings_titles_and_field_order() -> None:
    class A(BaseModel):
        """One doc."""

        x: int = Field(title="X", description="the x")
        y: str

    class B(BaseModel):
        """Another doc."""

        y: str
        x: int

    class C(BaseModel):
        x: float
        y: str

    assert shape_of(A, "T").hash == shape_of(B, "T").hash
    assert shape_of(A, "T").hash != shape_of(C, "T").hash


def _renamed(model: type[BaseModel], name: str) -> type[BaseModel]:
    model.__name__ = model.__qualname__ = name
    return model


def changed_server(path: Path, speed: type[BaseModel]) -> SyncServer:
    server = SyncServer(state=path, transport=MemoryTransport())
    server.sync_component(Position)
    server.sync_component_builder(speed).name("Speed").with_default_entity_policy().build()
    server.sync_component(Recipe)
    server.sync_component_builder(Reading).persist(False).build()
    return server


class SpeedWithUnit(BaseModel):
    value: float = Field(0.5, ge=0, le=1)
    unit: str = "fraction"


class SpeedRequired(BaseModel):
    value: float
    ramp: float


class SpeedRetyped(BaseModel):
    value: int


async def test_a_changed_type_is_named_with_its_fields_and_the_server_refuses(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.state"
    ids = await saved_world(path)
    server = changed_server(path, SpeedWithUnit)
    with pytest.raises(StateSchemaChanged) as caught:
        server.load_state()
    text = str(caught.value)
    assert "Speed: added unit (default 'fraction')" in text
    assert "saved fields (value), now (value, unit)" in text
    assert "server.migrate_state('Speed')" in text and "server.drop_state('Speed')" in text
    assert caught.value.changes.keys() == {"Speed"}
    assert server.world.entities() == []  # nothing loaded
    # the way out for a new field with a default: load the saved fields as they are
    server = changed_server(path, SpeedWithUnit)
    server.migrate_state("Speed")
    loaded = server.load_state()
    assert loaded is not None and loaded.migrated == {"Speed": 1}
    assert server.world.get(ids["robot"], SpeedWithUnit) == SpeedWithUnit(value=0.25)
    # and serving saves the new shape at once: the next start needs no migration
    async with server.serve("app", 1):
        pass
    plain = changed_server(path, SpeedWithUnit)
    assert plain.load_state() is not None


async def test_retyped_and_required_fields_are_named(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    await saved_world(path)
    with pytest.raises(StateSchemaChanged) as caught:
        changed_server(path, SpeedRetyped).load_state()
    assert "changed value: " in str(caught.value)
    assert '"type":"number"' in str(caught.value) and '"type":"integer"' in str(caught.value)
    with pytest.raises(StateSchemaChanged, match="added ramp \\(required, no default\\)"):
        changed_server(path, SpeedRequired).load_state()
    # as it is, a required field cannot load: the validation names the entity and field
    server = changed_server(path, SpeedRequired)
    server.migrate_state(SpeedRequired)
    with pytest.raises(StateRestoreFailed, match="of entity 2 does not validate after its"):
        server.load_state()
    assert server.world.entities() == []


async def test_a_migration_converts_each_saved_value(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    ids = await saved_world(path)
    server = changed_server(path, SpeedRequired)
    calls: list[dict[str, Any]] = []

    def migrate(saved: dict[str, Any]) -> dict[str, Any]:
        calls.append(saved)
        return {"value": saved["value"], "ramp": 2.0}

    server.migrate_state("Speed", migrate)
    server.load_state()
    assert calls == [{"value": 0.25}]
    assert server.world.get(ids["robot"], SpeedRequired) == SpeedRequired(value=0.25, ramp=2)
    # a migration that raises, or returns nonsense, is named
    for bad, words in ((lambda s: 1 / 0, "raised on entity"), (lambda s: 7, "returned int")):
        server = changed_server(path, SpeedRequired)
        server.migrate_state("Speed", bad)
        with pytest.raises(StateRestoreFailed, match=words):
            server.load_state()


async def test_drop_forgets_a_changed_or_vanished_type_and_keeps_the_entities(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.state"
    ids = await saved_world(path)
    # Recipe is no longer synced at all
    server = SyncServer(state=path, transport=MemoryTransport())
    server.sync_component(Position)
    server.sync_component_builder(Speed).with_default_entity_policy().build()
    with pytest.raises(StateSchemaChanged, match="Recipe: no longer synced") as caught:
        server.load_state()
    assert "can only be dropped: server.drop_state('Recipe')" in str(caught.value)
    server.drop_state("Recipe")
    loaded = server.load_state()
    assert loaded is not None and loaded.dropped == {"Recipe": 1}
    assert server.world.contains(ids["book"])
    # a changed type dropped; an unchanged one under drop_state loads as usual
    server = changed_server(path, SpeedRetyped)
    server.drop_state("Speed")
    server.drop_state(Position)
    loaded = server.load_state()
    assert loaded is not None and loaded.dropped == {"Speed": 1}
    assert server.world.get(ids["robot"], Position) == Position(x=1.5, y=2)


async def test_a_type_now_opted_out_is_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    ids = await saved_world(path)
    server = SyncServer(state=path, transport=MemoryTransport())
    server.sync_component(Position)
    server.sync_component_builder(Speed).persist(False).build()
    server.sync_component(Recipe)
    loaded = server.load_state()
    assert loaded is not None and loaded.not_persisted == {"Speed": 1}
    assert server.world.get(ids["robot"], Speed) is None


async def test_another_applications_file_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    await saved_world(path)

    class Oven(BaseModel):
        celsius: float

    other = SyncServer(state=path)
    other.sync_component(Oven)
    with pytest.raises(StateSchemaChanged, match="another application's state file"):
        other.load_state()


async def test_a_value_over_the_size_limit_now_is_refused_and_nothing_is_loaded(
    tmp_path: Path,
) -> None:
    from pl3xus_rx import SyncSettings

    class Note(BaseModel):
        text: str

    path = tmp_path / "s.state"
    big = SyncServer(state=path, sync=SyncSettings(max_value_bytes=1 << 20))
    big.sync_component(Note)
    big.load_state()
    big.world.spawn(Note(text="small"))
    large = big.world.spawn(Note(text="x" * 100_000))
    await big.save_state()
    small = SyncServer(state=path, sync=SyncSettings(max_value_bytes=64 * 1024))
    small.sync_component(Note)
    with pytest.raises(StateRestoreFailed, match=f"the saved Note of entity {large} was refused"):
        small.load_state()
    assert small.world.entities() == []


async def test_a_value_its_validators_now_refuse_is_named(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    ids = await saved_world(path)

    class Strict(BaseModel):
        x: float
        y: float

        @field_validator("x")
        @classmethod
        def positive(cls, v: float) -> float:
            if v > 1:
                raise ValueError("x must stay at most 1")
            return v

    server = SyncServer(state=path)
    server.sync_component_builder(Strict).name("Position").build()
    server.sync_component_builder(Speed).build()
    server.sync_component(Recipe)
    with pytest.raises(StateRestoreFailed) as caught:
        server.load_state()
    assert f"Position of entity {ids['robot']} does not validate as Strict: x:" in str(caught.value)
    assert "x must stay at most 1" in str(caught.value)
    assert server.world.entities() == []


# ---------------------------------------------------------------------- damaged files


async def test_damaged_and_foreign_files_are_refused_with_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    await saved_world(path)
    good = path.read_bytes()
    cases = {
        b"": "it is empty",
        b"\x00" * 100: "is not a pl3xus_rx state file",
        b'{"json": "config"}\n': "is not a pl3xus_rx state file",
        good[:11]: "is not a pl3xus_rx state file",
        good[:200]: "is cut short",
        good[:-1]: "is cut short",
        good + b"more": "is cut short",
        good[:40] + bytes([good[40] ^ 0x10]) + good[41:]: "checksum does not match",
        MAGIC + struct.pack(">H", FORMAT_VERSION + 1) + good[12:]: "by a newer pl3xus_rx",
        MAGIC + struct.pack(">H", 0) + good[12:]: "never existed",
    }
    for data, words in cases.items():
        path.write_bytes(data)
        server = make(path)
        with pytest.raises(StateUnreadable, match=words):
            server.load_state()
        assert server.world.entities() == []
        assert path.read_bytes() == data  # left alone
    # a folder where the file should be
    folder = tmp_path / "dir.state"
    folder.mkdir()
    with pytest.raises(StateUnreadable, match="is a folder"):
        make(folder).load_state()


def _rewrap(body: bytes) -> bytes:
    """A file whose body is ``body``, with a correct trailer (a crafted file)."""
    head = MAGIC + struct.pack(">H", FORMAT_VERSION)
    data = head + body
    return data + TRAILER.pack(b"PL3XEND\n", len(data), zlib.crc32(data))


async def test_crafted_bodies_with_good_checksums_are_refused_as_malformed(tmp_path: Path) -> None:
    import msgpack

    header = {"written_at": 1.0, "writer": "x", "next_id": 10, "types": []}
    one = msgpack.packb(["E", [3], [None]])
    bodies = {
        msgpack.packb([1, 2]): "the header is not a map",
        msgpack.packb({**header, "next_id": "x"}): "no next_id",
        msgpack.packb({**header, "types": [{"name": "T"}]}): "type T has no hash",
        msgpack.packb(header) + one + msgpack.packb(["Z"]): "unknown kind 'Z'",
        msgpack.packb(header) + msgpack.packb(["E", [3, 3], [None, None]]): "listed twice",
        msgpack.packb(header) + msgpack.packb(["E", [3, 4], [4, 3]]): "its own ancestor",
        msgpack.packb(header) + msgpack.packb(["E", [30], [None]]): "not below next_id",
        msgpack.packb(header) + msgpack.packb(["E", [3], [9]]): "a parent the file does not",
        msgpack.packb(header) + msgpack.packb(["E", [3], [None, 1]]): "parents do not match",
        msgpack.packb(header) + one + msgpack.packb(["O", [4], ["x"]]): "an owner names an",
        msgpack.packb(header) + one + msgpack.packb(["C", 0]): "value section 2 has 2 parts",
        msgpack.packb(header) + one + msgpack.packb(["C", 0, [3], [[]]]): "no such type",
        msgpack.packb(header) + b"\xc1": "malformed",
        msgpack.packb(header) + msgpack.packb(["E", [-5], [None]]): "not entity ids",
        msgpack.packb({**header, "next_id": 2**64 - 1}): "no next_id",
        msgpack.packb(header) + one + b"\xdd\x05\xf5\xe1\x00": "not a whole document",
    }
    for body, words in bodies.items():
        with pytest.raises(StateUnreadable, match=words):
            decode_state(_rewrap(body), "f")


async def test_random_damage_always_ends_in_state_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    await saved_world(path)
    good = path.read_bytes()
    rng = random.Random(28)
    for _ in range(300):
        data = bytearray(good)
        how = rng.randrange(3)
        if how == 0:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif how == 1:
            data = data[: rng.randrange(len(data))]
        else:
            i = rng.randrange(len(data))
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        with pytest.raises(StateUnreadable):
            decode_state(bytes(data), "f")


# ---------------------------------------------------------------------- failing saves


async def test_a_full_disk_fails_the_save_keeps_the_old_file_and_shows_in_healthz(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.state"
    server = make(path)
    server.load_state()
    robot = server.world.spawn(Position(x=1, y=1))
    await server.save_state()
    before = path.read_bytes()
    real_write = os.write

    def full(fd: int, data: Any) -> int:
        if len(data) > 20:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(state_file.os, "write", full)
    server.world.insert(robot, Position(x=2, y=2))
    with caplog.at_level(logging.ERROR), pytest.raises(StateWriteFailed) as caught:
        await server.save_state()
    text = str(caught.value)
    assert "write" in text and "No space left on device (ENOSPC)" in text
    assert f"{path} is left as it was" in text
    assert caught.value.errno is None or caught.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and not path.with_name("s.state.tmp").exists()
    assert "No space left" in caplog.text
    stats = server.state_statistics()
    assert stats.failures == 1 and stats.failing == 1 and "ENOSPC" in (stats.last_error or "")
    health = server._state.health()  # type: ignore[union-attr]
    assert not health.ok and health.admit and "ENOSPC" in health.detail["reason"]
    monkeypatch.undo()
    await server.save_state()
    assert server.state_statistics().failing == 0 and server._state.health().ok  # type: ignore[union-attr]
    again = make(path)
    again.load_state()
    assert again.world.get(robot, Position) == Position(x=2, y=2)


async def test_a_read_only_or_missing_folder_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(StateWriteFailed, match="does not exist"):
        make(tmp_path / "nowhere" / "s.state").load_state()
    path = tmp_path / "s.state"
    server = make(path)
    real_open = os.open

    def read_only(name: Any, flags: int, *args: Any) -> int:
        if str(name).endswith(".tmp") and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(name, flags, *args)

    monkeypatch.setattr(state_file.os, "open", read_only)
    with pytest.raises(StateWriteFailed, match="Read-only file system \\(EROFS\\)"):
        async with server.serve("app", 1):
            pass
    assert not server.net.addresses


async def test_the_world_counts_changes_keeps_ids_and_snapshots_cheaply() -> None:
    world = World()
    a = world.spawn(Position(x=0, y=0))
    b = world.spawn(Position(x=1, y=1), parent=a)
    c = world.spawn(Speed(value=0.1), parent=b)
    structure, positions = world.change_count(), world.change_count(Position)
    world.insert(a, Position(x=0, y=0))  # equal: no change
    assert world.change_count(Position) == positions
    world.insert(a, Position(x=2, y=0))
    world.remove(b, Position)
    assert world.change_count(Position) == positions + 2
    assert world.change_count() == structure and world.change_count(Reading) == 0
    snap = world.snapshot()
    with pytest.raises(RuntimeError, match="release"):
        world.snapshot()
    # the World goes on: every kind of change after the snapshot
    world.insert(a, Position(x=3, y=0))
    world.insert(b, Position(x=9, y=9))
    world.remove(c, Speed)
    world.insert(c, Speed(value=0.9))
    d = world.spawn(Position(x=4, y=4), parent=a)
    world.adopt(c, a)
    world.despawn(b)
    assert world.change_count() > structure
    # the snapshot still reads the World as it was
    chunks = list(snap.entity_chunks(2))
    assert chunks == [[a, c], [b]] and snap.next_id == 4  # (b: despawned since, comes last)
    assert [e for ids in snap.id_chunks(Position, 10) for e in ids] == [a]
    assert [e for ids in snap.id_chunks(Speed, 10) for e in ids] == [c]
    assert list(snap.id_chunks(Reading, 10)) == []
    assert world.entry_value(Position, snap.entry(Position, a)) == Position(x=2, y=0)
    assert not snap.has(Position, b) and not snap.has(Position, d)
    assert world.entry_value(Speed, snap.entries(Speed, [c])[0]) == Speed(value=0.1)
    assert snap.parent(b) == a and snap.parent(c) == b and snap.parent(a) is None
    world.release(snap)
    assert world.entry_value(Position, snap.entry(Position, a)) == Position(x=3, y=0)
    world.snapshot()  # (one at a time: released, so another may be taken)
    world.reserve_ids(100)
    world.reserve_ids(50)  # (never back)
    assert world.next_id == 100 and world.spawn() == 100
    world.adopt(500)
    assert world.next_id == 501


async def test_a_snapshot_read_in_a_thread_while_the_world_changes_sees_one_instant() -> None:
    """The save's thread reads the World while the loop changes it: with the interpreter
    switching threads as often as it can, what it reads is exactly the World at the
    snapshot."""
    import sys
    import threading

    rng = random.Random(5)
    world = World()
    ids = [world.spawn(Position(x=i, y=0)) for i in range(3000)]
    for e in ids[::3]:
        world.insert(e, Speed(value=0.5))
    for e in ids[1::7]:
        world.adopt(e, ids[0])
    expected_positions = {e: world.get(e, Position) for e in world.entities()}
    expected_speeds = {e: v for e, v in world.query(Speed)}
    expected_parents = {e: world.parent(e) for e in world.entities()}
    snap = world.snapshot()
    seen: dict[str, Any] = {}

    def read() -> None:
        entities = [e for chunk in snap.entity_chunks(64) for e in chunk]
        positions = {}
        for chunk in snap.id_chunks(Position, 64):
            for e, entry in zip(chunk, snap.entries(Position, chunk), strict=True):
                positions[e] = world.entry_value(Position, entry)
        speeds = {}
        for chunk in snap.id_chunks(Speed, 64):
            for e, entry in zip(chunk, snap.entries(Speed, chunk), strict=True):
                speeds[e] = world.entry_value(Speed, entry)
        seen.update(
            entities=entities,
            positions=positions,
            speeds=speeds,
            parents={e: snap.parent(e) for e in entities},
        )

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        reader = threading.Thread(target=read)
        reader.start()
        live = list(ids)
        changes = 0
        while reader.is_alive():
            e = rng.choice(live)
            what = rng.randrange(6)
            if what == 0:
                world.insert(e, Position(x=rng.random(), y=1))
            elif what == 1:
                world.insert(e, Speed(value=rng.random()))
            elif what == 2:
                world.remove(e, Speed)
            elif what == 3:
                live.append(world.spawn(Position(x=-1, y=-1), Speed(value=0)))
            elif what == 4 and e != ids[0] and len(live) > 100:
                world.despawn(e)
                live = [x for x in live if world.contains(x)]
            else:
                with contextlib.suppress(ValueError):  # (a parent below it)
                    world.adopt(e, rng.choice([x for x in live[:50] if x != e]))
            changes += 1
        reader.join()
    finally:
        sys.setswitchinterval(previous)
        world.release(snap)
    assert changes > 100  # (the World did change while the thread read)
    assert sorted(seen["entities"]) == sorted(expected_positions)
    assert seen["positions"] == expected_positions
    assert seen["speeds"] == expected_speeds
    assert seen["parents"] == expected_parents


async def test_a_save_refused_by_the_lock_leaves_the_next_save_working(tmp_path: Path) -> None:
    """A save outside serve() while another process holds the lock: refused, and nothing
    stays held (the snapshot is released: the next save works once the lock is free)."""
    path = tmp_path / "s.state"
    server = make(path)
    server.load_state()
    server.world.spawn(Position(x=1, y=2))
    holder = state_file.StateLock(str(path))  # (as another server would hold it)
    try:
        with pytest.raises(StateConflict):
            await asyncio.wait_for(server.save_state(), 5 * UNIT)
    finally:
        holder.release()
    saved = await asyncio.wait_for(server.save_state(), 5 * UNIT)
    assert saved.entities == 1
    server.world.snapshot()  # (none is held any more)


async def test_planted_symlinks_beside_the_state_file_are_never_written_through(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.state"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.symlink(victim, str(path) + ".tmp")  # (someone who may write in the folder)
    server = make(path)
    server.load_state()
    server.world.spawn(Position(x=1, y=2))
    await asyncio.wait_for(server.save_state(), 5 * UNIT)
    assert victim.read_text() == "precious"
    assert not path.is_symlink() and os.stat(path).st_mode & 0o777 == 0o600
    os.symlink(victim, str(path) + ".lock.new")
    os.replace(str(path) + ".lock.new", str(path) + ".lock")  # (the lock file, too)
    with pytest.raises(StateWriteFailed):
        await asyncio.wait_for(make(path).save_state(), 5 * UNIT)
    assert victim.read_text() == "precious"
