"""The recording format: a session as records of flushes, with keyframes. No I/O.

A recording file (docs/recording.md has the reference) is:

- a 10-byte prefix: the magic ``b"PL3XREC\\n"`` and the format version (uint16, big endian);
- records, each a 17-byte head and a msgpack body. The head is the body's length (uint32),
  its CRC-32 (uint32), the record's kind (one byte, :class:`RecordKind`) and its time (a
  float64: the authority's flush time, wall-clock seconds), all big endian.

The first record is the HEADER (a map: what recorded it, the types with their fields and
schema hashes). KEYFRAME records hold the whole recorded state; BATCH records what one flush
changed; an END record closes a file that was closed cleanly. An item is what the sync
protocol sends for a value, ``[entity, [field values...]]`` in the order the header lists
the type's fields, so a value takes about as many bytes in the file as on the wire.

Only appending writes a file, so a writer killed mid-record leaves a torn tail: the reader
keeps every whole record before it (each head says how long its body is and what its CRC
is) and drops the rest. The index (times and offsets of the records, keyframes apart) is
rebuilt from the heads when a file is opened; no separate index file can go stale.
"""

from __future__ import annotations

import bisect
import gc
import struct
import zlib
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final, Protocol

import msgpack

from ..exceptions import RecordingUnreadable
from ._codec import msgpack_encode

__all__ = [
    "RECORDING_MAGIC",
    "RECORDING_VERSION",
    "Recording",
    "RecordingHeader",
    "RecordKind",
    "RecordedState",
    "RecordedType",
    "encode_record",
    "recording_prefix",
    "RecordSource",
    "MAX_TYPES",
]

RECORDING_MAGIC: Final = b"PL3XREC\n"
"""The first bytes of every recording."""
RECORDING_VERSION: Final = 1
"""The format this version writes (and the newest it reads)."""

MAX_TYPES: Final = 10_000
"""The most types a recording's header may list."""

_PREFIX = struct.Struct(">8sH")
_HEAD = struct.Struct(">IIBd")
_MAX_BODY = 1 << 28  # a head claiming more is garbage, not a record (256 MiB)
_CHUNK = 1 << 22  # bytes read at once while indexing


class RecordKind(IntEnum):
    """What a record holds (its head's kind byte)."""

    HEADER = ord("H")
    """A map: ``version``, ``source`` (``"server"`` or ``"client"``), ``started`` (wall
    time), ``types`` (``[[name, [field, ...], hash], ...]``), ``hierarchy`` (whether parents
    are recorded), and ``origin`` / ``identity`` / ``app`` where known."""
    KEYFRAME = ord("K")
    """``[entities, parents, [[type index, items], ...]]``: the whole recorded state."""
    BATCH = ord("B")
    """``[[[entity, parent], ...], [[type index, items, removed, despawned], ...]]``: what a
    flush changed (the parents of entities first seen in it, then each type's changes)."""
    END = ord("E")
    """An empty body: the file was closed cleanly at this time."""


def recording_prefix() -> bytes:
    """The 10 bytes every recording starts with."""
    return _PREFIX.pack(RECORDING_MAGIC, RECORDING_VERSION)


def encode_record(kind: RecordKind, time: float, body: bytes) -> bytes:
    """One record: its head, then ``body`` (msgpack)."""
    return _HEAD.pack(len(body), zlib.crc32(body), kind, time) + body


@dataclass(frozen=True, slots=True)
class RecordedType:
    """A recorded component type.

    Attributes:
        name: Its wire name.
        fields: Its field names, in the order the items hold their values.
        hash: Its schema hash, as the WELCOME gives it.
    """

    name: str
    fields: tuple[str, ...]
    hash: str


@dataclass(frozen=True, slots=True)
class RecordingHeader:
    """What a recording says about itself (its HEADER record).

    Attributes:
        source: ``"server"`` (everything the server held, with parents) or ``"client"``
            (what one identity was sent; no hierarchy).
        started: When recording began (wall-clock seconds).
        types: The recorded types; items name them by index into this.
        hierarchy: Whether entities' parents are recorded.
        origin: The server's URL (a client recording) or address, if known.
        identity: The identity a client recording was made as, if known.
        app: The ``MODULE:FUNCTION`` that registers the types, if known.
    """

    source: str
    started: float
    types: tuple[RecordedType, ...]
    hierarchy: bool = True
    origin: str | None = None
    identity: str | None = None
    app: str | None = None

    def encode(self) -> bytes:
        """The HEADER record."""
        body = msgpack_encode(
            {
                "version": RECORDING_VERSION,
                "source": self.source,
                "started": self.started,
                "types": [[t.name, list(t.fields), t.hash] for t in self.types],
                "hierarchy": self.hierarchy,
                "origin": self.origin,
                "identity": self.identity,
                "app": self.app,
            }
        )
        return encode_record(RecordKind.HEADER, self.started, body)

    @staticmethod
    def decode(body: Any) -> RecordingHeader:
        """A decoded HEADER body as a header.

        Raises:
            ValueError: it is not one.
        """
        if not isinstance(body, dict):
            raise ValueError("the header is not a map")
        if not isinstance(body.get("types"), list) or len(body["types"]) > MAX_TYPES:
            raise ValueError(f"the header's types are not a list of at most {MAX_TYPES:,}")
        try:
            types = tuple(
                RecordedType(str(name), tuple(str(f) for f in fields), str(digest))
                for name, fields, digest in body["types"]
            )
            return RecordingHeader(
                source=str(body["source"]),
                started=float(body["started"]),
                types=types,
                hierarchy=bool(body.get("hierarchy", True)),
                origin=_text(body.get("origin")),
                identity=_text(body.get("identity")),
                app=_text(body.get("app")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"an unreadable header: {exc!r}") from None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(slots=True)
class RecordedState:
    """The recorded state at one instant, as plain data.

    Attributes:
        time: The instant (the time of the last record applied).
        parents: Every entity recorded as existing -> its parent (``None``: a root, or
            no hierarchy recorded).
        values: Type index -> entity -> its field values (in the header's field order).
    """

    time: float
    parents: dict[int, int | None] = field(default_factory=dict)
    values: dict[int, dict[int, list[Any]]] = field(default_factory=dict)

    def apply(self, kind: RecordKind, body: Any) -> None:
        """Bring the state forward by one KEYFRAME or BATCH record (decoded).

        Raises:
            ValueError: the body does not have its kind's shape.
        """
        try:
            if kind == RecordKind.KEYFRAME:
                entities, parents, types = body
                self.parents = dict(zip(entities, parents, strict=True))
                self.values = {}
                for index, items in types:
                    self.values[index] = {entity: fields for entity, fields in items}
            elif kind == RecordKind.BATCH:
                born, types = body
                for entity, parent in born:
                    self.parents[entity] = parent
                for index, items, removed, despawned in types:
                    table = self.values.setdefault(index, {})
                    for entity, fields in items:
                        table[entity] = fields
                        if entity not in self.parents:
                            self.parents[entity] = None
                    for entity in removed:
                        table.pop(entity, None)
                    for entity in despawned:
                        table.pop(entity, None)
                        self.parents.pop(entity, None)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a {kind.name} record of the wrong shape: {exc!r}") from None


class RecordSource(Protocol):
    """Where a :class:`Recording` reads its bytes (``pl3xus_rx.record_source.FileSource``
    reads a file by offset; a buffer is wrapped as one)."""

    def size(self) -> int:
        """How many bytes there are now."""
        ...

    def read(self, at: int, n: int) -> bytes | memoryview:
        """``n`` bytes at offset ``at`` (raising :class:`RecordingUnreadable` when fewer
        are there)."""
        ...


class _Buffer:
    """A recording held in memory (bytes, or any buffer), as a source."""

    def __init__(self, data: Any) -> None:
        self.data = memoryview(data)

    def size(self) -> int:
        return len(self.data)

    def read(self, at: int, n: int) -> memoryview:
        return self.data[at : at + n]


class Recording:
    """A recording read from a buffer (``bytes``) or a :class:`RecordSource`: its header and
    an index of its records, for seeking and for playing forward.

    A torn tail (the writer stopped mid-record) is dropped: :attr:`torn` says how many
    bytes. A record whose CRC differs ends the readable part there too.

    Args:
        data: The file's bytes (kept, not copied), or a :class:`RecordSource`.
        name: What to call it in errors (its path).

    Raises:
        RecordingUnreadable: not a recording, a newer format, or no readable header.
    """

    def __init__(self, data: bytes | memoryview | RecordSource, name: str = "recording") -> None:
        self.name = name
        self._source: RecordSource = (
            _Buffer(data) if isinstance(data, bytes | bytearray | memoryview) else data
        )
        size = self._source.size()
        if size < _PREFIX.size:
            raise RecordingUnreadable(f"{name}: too short to be a recording", path=name)
        magic, version = _PREFIX.unpack_from(self._source.read(0, _PREFIX.size), 0)
        if magic != RECORDING_MAGIC:
            raise RecordingUnreadable(f"{name}: not a pl3xus_rx recording", path=name)
        if version > RECORDING_VERSION:
            raise RecordingUnreadable(
                f"{name}: recording format {version}, newer than this version reads "
                f"({RECORDING_VERSION}); upgrade pl3xus-rx",
                path=name,
            )
        self.times = array("d")
        """Each record's time, in file order (HEADER and END included)."""
        self.offsets = array("q")
        """Each record's offset (of its head)."""
        self._lengths = array("q")
        self.kinds = bytearray()
        """Each record's kind byte."""
        self.keyframes: list[int] = []
        """Indexes (into :attr:`times`) of the KEYFRAME records."""
        self._key_times = array("d")
        self.closed = False
        """Whether the file ends with an END record (it was closed cleanly)."""
        self.torn = 0
        """Bytes dropped at the end: a record cut short, or from a damaged one on."""
        self.damaged: str | None = None
        """Why the readable part ends before the file does, when a whole record is there
        but is not readable (its CRC differs, its kind is unknown, its length is absurd):
        with the offset. ``None``: the file ends with whole records, or a record cut short
        (a writer stopped mid-record)."""
        self.skipped: set[int] = set()
        """Indexes of BATCH records left out of a :meth:`state_at` (they do not decode, or
        do not have a batch's shape)."""
        self._scanned = _PREFIX.size
        self.scan()
        if not self.kinds or self.kinds[0] != RecordKind.HEADER:
            raise RecordingUnreadable(f"{name}: no readable header record", path=name)
        try:
            self.header = RecordingHeader.decode(self.body(0))
        except ValueError as exc:
            raise RecordingUnreadable(f"{name}: {exc}", path=name) from None

    def scan(self, data: bytes | memoryview | Any | None = None) -> int:
        """Index the records written since the last scan (a file still being written; give
        ``data``, the bytes now, for a recording read from a buffer); returns how many
        were added."""
        if data is not None:
            self._source = _Buffer(data)
        source = self._source
        end = source.size()
        at, added = self._scanned, 0
        chunk_at, chunk = at, source.read(at, min(_CHUNK, end - at))
        self.damaged = None
        while at + _HEAD.size <= end:
            if at + _HEAD.size > chunk_at + len(chunk):
                chunk_at, chunk = at, source.read(at, min(_CHUNK, end - at))
            length, crc, kind, time = _HEAD.unpack_from(chunk, at - chunk_at)
            stop = at + _HEAD.size + length
            if length > _MAX_BODY or kind not in _KINDS:
                self.damaged = f"an unreadable record head at offset {at}"
                break
            if stop > end:
                break  # (cut short: the writer stopped mid-record)
            if stop > chunk_at + len(chunk):
                chunk_at, chunk = at, source.read(at, min(max(_CHUNK, stop - at), end - at))
            if zlib.crc32(chunk[at - chunk_at + _HEAD.size : stop - chunk_at]) != crc:
                self.damaged = f"a damaged record at offset {at} (its checksum differs)"
                break
            self.times.append(time)
            self.offsets.append(at)
            self._lengths.append(length)
            self.kinds.append(kind)
            if kind == RecordKind.KEYFRAME:
                self.keyframes.append(len(self.kinds) - 1)
                self._key_times.append(time)
            elif kind == RecordKind.END:
                self.closed = True
            at = stop
            added += 1
        self._scanned = at
        self.torn = end - at
        return added

    def __len__(self) -> int:
        return len(self.kinds)

    @property
    def start(self) -> float:
        """The time of the first keyframe (the earliest instant that can be shown)."""
        return self.times[self.keyframes[0]] if self.keyframes else self.header.started

    @property
    def end(self) -> float:
        """The time of the last record."""
        return self.times[-1]

    def body(self, index: int) -> Any:
        """The decoded body of record ``index``.

        Raises:
            ValueError: it does not decode (its bytes passed their checksum, but were
                written wrong).
            RecordingUnreadable: the file was cut short since it was indexed.
        """
        data = self._source.read(self.offsets[index] + _HEAD.size, self._lengths[index])
        try:
            return msgpack.unpackb(data, strict_map_key=False)
        except (ValueError, TypeError) as exc:  # (msgpack's errors are ValueErrors)
            raise ValueError(
                f"record {index} (a {RecordKind(self.kinds[index]).name} at offset "
                f"{self.offsets[index]}) does not decode: {type(exc).__name__}: {exc}"
            ) from None

    def kind(self, index: int) -> RecordKind:
        """The kind of record ``index``."""
        return RecordKind(self.kinds[index])

    def last_keyframe(self, time: float) -> int | None:
        """The index of the last KEYFRAME at or before ``time`` (``None``: none)."""
        at = bisect.bisect_right(self._key_times, time)
        return self.keyframes[at - 1] if at else None

    def after(self, time: float) -> int:
        """The index of the first record later than ``time``."""
        return bisect.bisect_right(self.times, time)

    def state_at(self, time: float) -> tuple[RecordedState, int]:
        """The state at ``time`` (before the first keyframe: the first keyframe's), and the
        index of the first record not applied to it. A bad BATCH record is left out
        (:attr:`skipped`).

        Raises:
            ValueError: the keyframe it starts from is unreadable (named).
        """
        first = self.last_keyframe(time)
        if first is None:
            if not self.keyframes:
                return RecordedState(self.header.started), len(self.kinds)
            first = self.keyframes[0]
        state = RecordedState(self.times[first])
        stop = max(self.after(time), first + 1)
        with gc_paused():  # (a few seconds of batches: many small containers, all kept)
            state.apply(RecordKind.KEYFRAME, self.body(first))
            for index in range(first + 1, stop):
                if self.kinds[index] == RecordKind.BATCH:
                    try:
                        state.apply(RecordKind.BATCH, self.body(index))
                    except ValueError:
                        self.skipped.add(index)  # (a bad batch: the rest still applies)
                        continue
                    state.time = self.times[index]
        return state, stop

    def records(
        self, start: int, stop: int | None = None
    ) -> Iterator[tuple[int, RecordKind, float, Any]]:
        """``(index, kind, time, body)`` of records ``start`` to ``stop`` (default: the last)."""
        stop = len(self.kinds) if stop is None else min(stop, len(self.kinds))
        for index in range(start, stop):
            yield index, RecordKind(self.kinds[index]), self.times[index], self.body(index)

    def type_index(self, names: Sequence[str]) -> dict[str, int]:
        """Type name -> its index in the header, for the given names the recording has."""
        mine = {t.name: i for i, t in enumerate(self.header.types)}
        return {name: mine[name] for name in names if name in mine}


_KINDS = frozenset(int(k) for k in RecordKind)


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (decoding many small containers that are all
    kept: the collector would walk them again and again for nothing)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
