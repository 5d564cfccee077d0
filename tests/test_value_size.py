"""Synced values too big for any client are refused where they are stored (ValueTooLarge),
and one that got past is left out of the sync, never sent as a frame a client must refuse."""

from __future__ import annotations

import logging
import math
from typing import Literal

import pytest
from conftest import wait_until
from pydantic import BaseModel, Field

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import SettingsError, SyncServer, SyncSettings, ValueTooLarge
from pl3xus_rx.sync._size import max_encoded_size

KIB = 1024


class Reading(BaseModel):
    value: float
    ok: bool
    mode: Literal["auto", "manual"]
    tag: str = Field(max_length=16)
    angles: tuple[float, float, float]


class Note(BaseModel):
    text: str
    author: str = ""


class Blob(BaseModel):
    rows: list[list[float]]
    extra: dict[str, int] = {}


class Tree(BaseModel):
    children: list[Tree] = Field(default_factory=list, max_length=2)


def test_schema_bounds() -> None:
    assert max_encoded_size(Reading) < 200  # numbers, a choice, a short string, a tuple
    assert max_encoded_size(Note) == math.inf  # a string without max_length
    assert max_encoded_size(Blob) == math.inf
    assert max_encoded_size(Tree) == math.inf  # recursive


def test_a_too_big_value_is_refused_where_it_is_stored() -> None:
    server = SyncServer(sync=SyncSettings(max_value_bytes=64 * KIB))
    server.sync_component(Note)
    server.sync_component(Reading)
    world = server.world
    note = world.spawn(Note(text="short"))
    with pytest.raises(ValueTooLarge) as raised:
        world.insert(note, Note(text="x" * 70_000))
    message = str(raised.value)
    assert "Note" in message and "70,0" in message and "max_value_bytes (65,536)" in message
    assert world.get(note, Note) == Note(text="short")  # nothing changed
    # multi-byte characters count as their UTF-8 bytes
    world.insert(note, Note(text="é" * 30_000))  # 60,000 bytes: fits
    with pytest.raises(ValueTooLarge):
        world.insert(note, Note(text="é" * 33_000))
    # spawn makes no half entity; modify leaves the old value
    before = len(world.entities())
    with pytest.raises(ValueTooLarge):
        world.spawn(
            Reading(value=1, ok=True, mode="auto", tag="a", angles=(0, 0, 0)),
            Note(text="y" * 70_000),
        )
    assert len(world.entities()) == before
    with pytest.raises(ValueTooLarge), world.modify(note, Note) as draft:
        draft.author = "z" * 70_000
    assert world.get(note, Note).author == ""  # type: ignore[union-attr]
    # a type whose schema bounds it is never measured
    assert world._kinds[Reading].check is None  # type: ignore[attr-defined]
    # the limit can be raised at run time
    server.update_settings(max_value_bytes=256 * KIB)
    world.insert(note, Note(text="x" * 70_000))
    assert len(world.get(note, Note).text) == 70_000  # type: ignore[union-attr]
    with pytest.raises(SettingsError, match="max_value_bytes"):
        SyncSettings(max_value_bytes=1000)


def test_a_nested_value_is_measured_exactly() -> None:
    server = SyncServer(sync=SyncSettings(max_value_bytes=64 * KIB))
    server.sync_component(Blob)
    blob = server.world.spawn(Blob(rows=[[1.0] * 10] * 10))
    with pytest.raises(ValueTooLarge, match="Blob"):
        server.world.insert(blob, Blob(rows=[[1.5] * 100] * 100))  # 100 x 100 x 9 bytes


@pytest.mark.asyncio
async def test_a_value_that_got_past_is_left_out_and_the_client_stays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = SyncServer(sync=SyncSettings(max_value_bytes=64 * KIB))
    # stored before its type was synced: no check saw it
    big = server.world.spawn(Note(text="x" * 100_000))
    small = server.world.spawn(Note(text="hello"))
    server.sync_component(Note)
    registry = ClientTypeRegistry.builder().register(Note).build()
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", registry) as sync,
    ):
        notes = sync.components(Note)
        notes.subscribe(lambda _: None)
        with caplog.at_level(logging.ERROR):
            await sync.wait_synced(10)
        assert dict(notes.get()) == {small: Note(text="hello")}
        assert server.engine.statistics().unencodable >= 1
        assert any(
            "Note of entity" in r.getMessage() and "max_value_bytes" in r.getMessage()
            for r in caplog.records
        )
        # fixed: it arrives; the connection never dropped
        server.world.insert(big, Note(text="fits now"))
        await wait_until(lambda: big in notes.get())
        assert sync.connection.get().state.value == "open"


def test_dates_and_uuids_are_bounded_and_odd_values_are_measured() -> None:
    import datetime
    import uuid

    class Stamp(BaseModel):
        at: datetime.datetime
        id: uuid.UUID
        day: datetime.date

    from pathlib import Path

    from pydantic import AnyUrl

    class Link(BaseModel):  # "string" in the schema, objects without a len() in Python
        url: AnyUrl
        path: Path

    assert max_encoded_size(Stamp) < 300
    server = SyncServer(sync=SyncSettings(max_value_bytes=64 * KIB))
    server.sync_component(Link)
    link = server.world.spawn(Link(url=AnyUrl("https://example.com/"), path=Path("/tmp")))
    with pytest.raises(ValueTooLarge, match="Link"):  # measured by encoding instead
        server.world.insert(
            link, Link(url=AnyUrl("https://example.com/"), path=Path("/" + "p" * 70_000))
        )
    assert server.world.get(link, Link).path == Path("/tmp")  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_snapshot_parts_are_bounded_in_bytes_so_a_small_client_limit_holds() -> None:
    from pl3xus_rx import NetworkSettings

    server = SyncServer(sync=SyncSettings(max_snapshot_bytes=64 * KIB))
    server.sync_component(Note)
    notes = {server.world.spawn(Note(text=f"{i:04d}" + "n" * 10_000)) for i in range(300)}
    registry = ClientTypeRegistry.builder().register(Note).build()
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        # 3 MB of notes; this client refuses any message over 128 KiB (close 1009): with
        # parts bounded by items alone it would reconnect and be refused again, forever
        SyncProvider(
            f"ws://{host}:{port}/",
            registry,
            network=NetworkSettings(max_message_size=128 * KIB),
        ) as sync,
    ):
        signal = sync.components(Note)
        signal.subscribe(lambda _: None)
        await sync.wait_synced(30)
        assert set(signal.get()) == notes
        assert sync.connection.get().state.value == "open"
        assert server.net.statistics().frames_sent >= 40  # ~3 MB in parts of 64 KiB
        assert server.engine.statistics().snapshots == 1
