"""What the state file's users see: its settings, and reports of loads and saves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, Field

from .._settings import CheckedSettings

__all__ = ["Migration", "StateLoaded", "StateSaved", "StateSettings", "StateStatistics"]


class StateSettings(CheckedSettings):
    """How a server keeps its state file (``SyncServer(state=PATH, state_settings=...)``).

    Attributes:
        save_interval: Seconds between two saves while serving (a save is skipped when
            nothing it holds changed). A crash (power cut, ``kill -9``) loses at most the
            changes of this long, plus the save under way; a shutdown loses nothing (it
            saves last). Each save takes a snapshot on the event loop (about 15 ms per
            100,000 entities of 3 components) and encodes and writes it in a thread.
    """

    save_interval: float = Field(default=5.0, gt=0)


class Migration(Protocol):
    """``fn(saved) -> value``: turns one value saved in an older shape of its type into
    the current shape (``SyncServer.migrate_state(T, fn)``). ``saved`` holds the saved
    fields by name, as the wire carries them (numbers, strings, lists, maps, ``None``);
    return a map of the current fields (it is validated) or a model instance."""

    def __call__(self, saved: dict[str, Any], /) -> dict[str, Any] | BaseModel:
        """Convert one saved value."""
        ...


@dataclass(frozen=True, slots=True)
class StateLoaded:
    """What ``SyncServer.load_state()`` restored.

    Attributes:
        path: The state file.
        written_at: When the file was written (Unix time).
        writer: The library version that wrote it.
        entities: Entities restored (with their ids and parents).
        values: Component values restored.
        owners: Client-spawned entities whose owner was restored (an identity's, or
            :data:`~pl3xus_rx.commands.RESTORED_ANONYMOUS`).
        migrated: Type name -> values restored through a migration.
        dropped: Type name -> saved values dropped (``drop_state``).
        not_persisted: Type name -> saved values not loaded because the type is now
            ``persist(False)``.
        bytes: The file's size.
        seconds: How long the load took (reading, checking, validating, restoring).
    """

    path: str
    written_at: float
    writer: str
    entities: int
    values: int
    owners: int
    migrated: Mapping[str, int] = field(default_factory=dict)
    dropped: Mapping[str, int] = field(default_factory=dict)
    not_persisted: Mapping[str, int] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class StateSaved:
    """One save of the state file.

    Attributes:
        path: The state file.
        written_at: The time of the snapshot it holds (Unix time).
        entities: Entities saved.
        values: Component values saved.
        left_out: Type name -> values that could not be encoded (logged; the rest was
            saved).
        bytes: The file's size.
        snapshot_seconds: Time spent on the event loop (the snapshot).
        seconds: The whole save, snapshot to the folder's fsync.
    """

    path: str
    written_at: float
    entities: int
    values: int
    left_out: Mapping[str, int]
    bytes: int
    snapshot_seconds: float
    seconds: float


@dataclass(frozen=True, slots=True)
class StateStatistics:
    """How the state file has been kept (``SyncServer.state_statistics()``).

    Attributes:
        path: The state file.
        loaded: What the last load restored (``None``: nothing, a first start, or not
            loaded yet).
        saves: Saves written.
        skipped: Saves skipped because nothing saved had changed.
        failures: Saves that failed (each logged).
        failing: Saves failed in a row, up to now (0: the last one worked).
        last: The last save written.
        last_error: Why the last failed save failed (``None`` once one works again).
    """

    path: str
    loaded: StateLoaded | None
    saves: int
    skipped: int
    failures: int
    failing: int
    last: StateSaved | None
    last_error: str | None
