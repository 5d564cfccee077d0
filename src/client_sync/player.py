"""A recording played in Python, without a server: the read side of a SyncProvider, driven
from a file.

:class:`RecordingPlayer` feeds a client :class:`~client_sync.store.Store` with what each
record means, as SYNC frames would: a KEYFRAME (or a seek) reconciles every view like a
complete snapshot (what it lacks is removed), a BATCH applies like one frame of change
groups. Values are validated against the registry's models as the provider's are; a value
that does not validate is left out, counted (:attr:`RecordingPlayer.rejected_values`) and
named in the log. The signals (:meth:`~RecordingPlayer.components`,
:meth:`~RecordingPlayer.entity_component`...) are the provider's kind, so a dashboard
written against a provider's read API runs on a recording in a unit test, stepping the
time by hand.

No sockets: it imports ``pl3xus_rx.protocol`` only (and reads the file by offset).
"""

from __future__ import annotations

import logging
import operator
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar, cast

from pydantic import BaseModel

from pl3xus_rx.exceptions import FrameError
from pl3xus_rx.protocol import (
    EntityControl,
    FrameKind,
    Recording,
    RecordKind,
    SyncFlag,
)
from pl3xus_rx.record_source import FileSource
from pl3xus_rx.security import Identity

from .registry import ClientTypeRegistry
from .signal import Signal, WritableSignal
from .states import ConnectionState, ConnectionStatus
from .store import Store

__all__ = ["RecordingPlayer", "open_recording"]

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

_EMPTY: Mapping[int, Any] = MappingProxyType({})
_PLAYED = frozenset((RecordKind.BATCH, RecordKind.KEYFRAME))
_SNAPSHOT = int(SyncFlag.SNAPSHOT | SyncFlag.COMPLETE)


def open_recording(path: str | os.PathLike[str], registry: ClientTypeRegistry) -> RecordingPlayer:
    """Open a recording file for playing with ``registry``'s models (read by offset, never
    whole); it shows the recording's first instant.

    Raises:
        RecordingUnreadable: not a recording, or a newer format.
        RecordingError: the file cannot be opened.
    """
    return RecordingPlayer(FileSource.read_file(path), registry)


class RecordingPlayer:
    """Plays ``recording`` into typed signals, the read API of a
    :class:`~client_sync.SyncProvider`: :meth:`components`, :meth:`entity_component`,
    :meth:`components_where`, :meth:`control`, :attr:`connection`, :attr:`stale`,
    :attr:`as_of`, :meth:`age` — plus :meth:`seek`, :meth:`advance` and :meth:`step`.

    The recorded types the registry has (by wire name) are played; the others are left
    out. A type whose schema hash differs is played by field name (logged once).
    A client recording has no hierarchy; neither does a player (no parents).

    Args:
        recording: What to play (``pl3xus_rx.protocol.Recording``).
        registry: This end's component types.
    """

    def __init__(self, recording: Recording, registry: ClientTypeRegistry) -> None:
        self.recording = recording
        self.registry = registry
        header = recording.header
        self._store = Store(
            [[i, t.name, t.hash, list(t.fields)] for i, t in enumerate(header.types)]
        )
        self._subs: dict[int, str] = {}  # sub id (type index + 1) -> wire name
        self._signals: dict[str, WritableSignal[Mapping[int, Any]]] = {}
        self._derived: dict[Hashable, Signal[Any]] = {}
        self.missing: list[str] = []
        """Recorded types this registry does not have (not played)."""
        self.differing: list[str] = []
        """Recorded types whose schema hash differs from this registry's (played by field
        name; values that do not validate are left out)."""
        hashes = registry.hashes
        for index, recorded in enumerate(header.types):
            model = registry.model_of(recorded.name)
            if model is None and recorded.name == "EntityControl":
                model = EntityControl
            if model is None:
                self.missing.append(recorded.name)
                continue
            if hashes.get(recorded.name, recorded.hash) != recorded.hash:
                self.differing.append(recorded.name)
            self._store.add_subscription(index + 1, recorded.name, model)
            self._subs[index + 1] = recorded.name
        if self.differing:
            logger.warning(
                "%s: %s changed shape since recorded: played by field name",
                recording.name,
                self.differing,
            )
        self._next = 0  # the first record not applied
        self._logged: set[str] = set()
        self.rejected_values = 0
        """Recorded values left out because this end's models reject them."""
        self.bad_records = 0
        """Records left out because they are not of their kind's shape."""
        self.identity: Identity | None = (
            Identity(header.identity) if header.identity is not None else None
        )
        """The identity a client recording was made as (``None``: a server recording)."""
        self.connection_id: int | None = None
        """Always ``None``: a recording is no connection."""
        self.connection: Signal[ConnectionStatus] = Signal(ConnectionStatus(ConnectionState.OPEN))
        """Always open (for dashboards that show the link's state)."""
        self.stale: Signal[bool] = Signal(False)
        """Always False: what a player shows is exactly what was recorded at
        :attr:`position`."""
        self.position = recording.start
        """The recording time shown (wall-clock seconds, the authority's flush time)."""
        self.seek(recording.start)

    # ------------------------------------------------------------------ time

    @property
    def start(self) -> float:
        """The first instant that can be shown (the first keyframe's time)."""
        return self.recording.start

    @property
    def end(self) -> float:
        """The last recorded instant."""
        return self.recording.end

    @property
    def as_of(self) -> float:
        """The recording time shown (as :attr:`SyncProvider.as_of`: the server's wall clock
        the data is current as of)."""
        return self.position

    def age(self) -> float:
        """Always 0: the data shown is exactly as of :attr:`position`."""
        return 0.0

    def seek(self, time: float) -> None:
        """Show the recorded state at ``time`` (clamped to the recording): each view is
        reconciled like a complete snapshot, so the signals emit only what differs."""
        time = min(max(time, self.start), self.end)
        state, self._next = self.recording.state_at(time)
        self.position = time  # (first: observers read it when the signals emit)
        self._snapshot(state.values)

    def advance(self, time: float) -> int:
        """Play forward to ``time`` (clamped to the end): every record after the position
        and at or before ``time``, in order (an earlier ``time`` seeks). Returns how many
        records were applied."""
        time = min(time, self.end)
        if time < self.position:
            self.seek(time)
            return 0
        recording = self.recording
        stop = recording.after(time)
        applied = 0
        for index in range(self._next, stop):
            self.position = max(self.position, recording.times[index])
            applied += self._record(index)
        self._next = max(self._next, stop)
        self.position = max(self.position, time)
        return applied

    def step(self) -> bool:
        """Play the next record (a BATCH or a KEYFRAME) and move to its time. Returns
        ``False`` at the end (nothing left)."""
        recording = self.recording
        while self._next < len(recording):
            index = self._next
            self._next += 1
            if recording.kinds[index] in _PLAYED:
                self.position = max(self.position, recording.times[index])
                self._record(index)
                return True
        self.position = self.end
        return False

    # ------------------------------------------------------------------ the read API

    def components(self, model: type[T]) -> Signal[Mapping[int, T]]:
        """Every entity's ``model`` component at the position (one emission per record that
        changes it). Empty if the recording has no such type.

        Raises:
            NotRegistered: ``model`` is not in the registry.
        """
        name = "EntityControl" if model is EntityControl else self.registry.name_of(model)
        return cast(Signal[Mapping[int, T]], self._signal(name))

    def entity_component(self, model: type[T], entity: int) -> Signal[T | None]:
        """One entity's ``model`` component, or ``None`` while it has none."""
        key = ("entity", model, entity)
        signal = self._derived.get(key)
        if signal is None:
            signal = self._derived[key] = self.components(model).map(lambda m: m.get(entity))
        return cast(Signal[T | None], signal)

    def components_where(
        self, model: type[T], predicate: Callable[[T], bool]
    ) -> Signal[Mapping[int, T]]:
        """The entities whose ``model`` component satisfies ``predicate``."""

        def select(m: Mapping[int, T]) -> Mapping[int, T]:
            return MappingProxyType({e: v for e, v in m.items() if predicate(v)})

        return self.components(model).map(select)

    def control(self, entity: int) -> Signal[int | None]:
        """Who controlled ``entity`` (the holder's connection id) at the position."""
        key = ("control", entity)
        signal = self._derived.get(key)
        if signal is None:
            base = self.entity_component(EntityControl, entity)
            signal = self._derived[key] = base.map(lambda c: c.holder if c else None)
        return cast(Signal[int | None], signal)

    # ------------------------------------------------------------------ feeding the store

    def _record(self, index: int) -> int:
        """Apply record ``index`` if it is a BATCH or a KEYFRAME (1), else 0."""
        kind = self.recording.kinds[index]
        if kind not in _PLAYED:
            return 0
        body = self.recording.body(index)
        try:
            if kind == RecordKind.KEYFRAME:
                _entities, _parents, types = body
                self._snapshot({i: dict(items) for i, items in types})
            else:
                _born, types = body
                groups = []
                for type_index, items, removed, despawned in types:
                    sub_id = type_index + 1
                    if sub_id in self._subs:
                        groups.append([sub_id, 0, items, removed, despawned])
                self._apply(groups)
        except (TypeError, ValueError, FrameError) as exc:
            self.bad_records += 1
            logger.warning(
                "%s: record %d (a %s) is left out: %s",
                self.recording.name,
                index,
                RecordKind(kind).name,
                exc,
            )
        return 1

    def _snapshot(self, values: Mapping[int, Mapping[int, Sequence[Any]]]) -> None:
        groups = []
        for sub_id in self._subs:
            table = values.get(sub_id - 1, {})
            # (state_at gives tuples; the store reads what the wire gives: lists)
            groups.append([sub_id, _SNAPSHOT, [[e, list(f)] for e, f in table.items()], [], []])
        self._apply(groups)

    def _apply(self, groups: list[list[Any]]) -> None:
        store = self._store
        try:
            changes = store.apply([FrameKind.SYNC, store.seq + 1, groups])
        finally:
            rejected, store.rejected = store.rejected, []
            self._rejected(rejected)
        touched = {change.subscription for change in changes}
        for sub_id in touched:
            name = self._subs[sub_id]
            self._signal(name).set(MappingProxyType(dict(store.view(sub_id))))

    def _signal(self, name: str) -> WritableSignal[Mapping[int, Any]]:
        signal = self._signals.get(name)
        if signal is None:
            signal = self._signals[name] = WritableSignal(_EMPTY, equals=operator.is_)
        return signal

    def _rejected(self, errors: list[FrameError]) -> None:
        for error in errors:
            self.rejected_values += 1
            name = error.type_name or "?"
            if name not in self._logged:  # (once per type: a recording may hold thousands)
                self._logged.add(name)
                logger.warning(
                    "%s: a recorded value is left out (logged once per type): %s",
                    self.recording.name,
                    error,
                )
