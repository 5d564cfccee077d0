"""What each flush changed, as records: the in-process recorder's encoding. No I/O.

A :class:`FlushEncoder` hangs on the sync engine as a :class:`~pl3xus_rx.sync.FlushHook`.
In each flush it is handed the changes of every recorded type as the engine holds them
(entity -> change code, the World's entries current) and encodes each type's upserts once
as wire items, ``[entity, [field values...]]``: a JSON-native type's in one encoder call,
any other's through the flush's item encoder, which hands back the bytes it already made
for subscribers (and keeps what it makes now for them). At the end of the flush the
parts are joined, without decoding them again, into one BATCH record; every
``keyframe_seconds`` a KEYFRAME with the whole recorded state follows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..protocol import RecordedType, RecordingHeader, RecordKind, encode_record, msgpack_encode
from ..sync import FlushHook
from ..sync._encoding import ItemEncoder
from ..sync._registry import ComponentRegistration
from ..sync._wire import encode_items, msgpack_array_header
from ..world import DESPAWNED, FINAL, UPSERTED, EntityId, World

__all__ = ["FlushEncoder"]

logger = logging.getLogger(__name__)

_HEADER2 = msgpack_array_header(2)
_HEADER3 = msgpack_array_header(3)
_HEADER4 = msgpack_array_header(4)


class FlushEncoder(FlushHook):
    """Encodes a World's flushes as recording records, handing each to ``write``.

    Args:
        world: The World recorded.
        regs: The recorded types (items name them by their index here).
        encoder: The sync engine's item encoder (shares its encodings).
        write: Takes each record's bytes.
        keyframe_seconds: At most this long (in flush time) between keyframes.
    """

    def __init__(
        self,
        world: World,
        regs: Sequence[ComponentRegistration[Any]],
        encoder: ItemEncoder,
        write: Callable[[bytes], None],
        *,
        keyframe_seconds: float = 5.0,
    ) -> None:
        self.world = world
        self.regs = list(regs)
        self.encoder = encoder
        self.write = write
        self.keyframe_seconds = keyframe_seconds
        self._index = {reg.type_id: i for i, reg in enumerate(self.regs)}
        self._parts: list[bytes] = []
        self._known: set[EntityId] = set()
        self._born: list[list[int | None]] = []
        self._last_keyframe = -float("inf")
        self.items = 0
        """Items recorded so far (keyframes apart)."""

    def header(self, started: float, *, origin: str | None, app: str | None) -> RecordingHeader:
        """The HEADER of a recording of these types."""
        types = tuple(RecordedType(r.name, tuple(r.fields), r.schema_hash) for r in self.regs)
        return RecordingHeader("server", started, types, True, origin, None, app)

    # ------------------------------------------------------------------ the hook

    def changes(self, reg: ComponentRegistration[Any], pending: Mapping[EntityId, int]) -> None:
        index = self._index.get(reg.type_id)
        if index is None:
            return
        peek = self.world.peek(reg.model)
        upserts: list[tuple[EntityId, Any]] = []
        removed: list[int] = []
        despawned: list[int] = []
        known, born, world = self._known, self._born, self.world
        for entity, code in pending.items():
            final = code & FINAL
            if final == UPSERTED:
                entry = peek.get(entity)
                if entry is None:
                    continue
                upserts.append((entity, entry))
                if entity not in known:
                    known.add(entity)
                    parent = world.parent(entity)
                    born.append([int(entity), None if parent is None else int(parent)])
            elif final == DESPAWNED:
                despawned.append(int(entity))
                known.discard(entity)
            else:
                removed.append(int(entity))
        count, items = self._items(reg, upserts)
        self.items += count
        self._parts.append(
            b"".join(
                (
                    _HEADER4,
                    msgpack_encode(index),
                    msgpack_array_header(count),
                    items,
                    msgpack_encode(removed),
                    msgpack_encode(despawned),
                )
            )
        )

    def flushed(self, as_of: float) -> None:
        if self._parts:
            parts, self._parts = self._parts, []
            born, self._born = self._born, []
            body = b"".join(
                (_HEADER2, msgpack_encode(born), msgpack_array_header(len(parts)), *parts)
            )
            self.write(encode_record(RecordKind.BATCH, as_of, body))
        if as_of - self._last_keyframe >= self.keyframe_seconds:
            self.keyframe(as_of)

    # ------------------------------------------------------------------ keyframes

    def keyframe(self, time: float) -> None:
        """Write a KEYFRAME of the whole recorded state now (at ``time``)."""
        world = self.world
        entities = world.entities()
        parents = [world.parent(e) for e in entities]
        types = []
        for index, reg in enumerate(self.regs):
            count, items = self._items(reg, list(world.peek(reg.model).items()))
            types.append(
                b"".join((_HEADER2, msgpack_encode(index), msgpack_array_header(count), items))
            )
        body = b"".join(
            (
                _HEADER3,
                msgpack_encode([int(e) for e in entities]),
                msgpack_encode([None if p is None else int(p) for p in parents]),
                msgpack_array_header(len(types)),
                *types,
            )
        )
        self._known = set(entities)
        self._born = []
        self._last_keyframe = time
        self.write(encode_record(RecordKind.KEYFRAME, time, body))

    # ------------------------------------------------------------------ items

    def _items(
        self, reg: ComponentRegistration[Any], pairs: list[tuple[EntityId, Any]]
    ) -> tuple[int, bytes]:
        """How many items, and their encodings joined (no array header)."""
        if not pairs:
            return 0, b""
        if reg.json_native:
            rows = [
                (entity, entry if type(entry) is tuple else tuple(entry.__dict__.values()))
                for entity, entry in pairs
            ]
            try:
                data = encode_items(True, rows)
                assert isinstance(data, bytes)
                return len(rows), data
            except (ValueError, TypeError, OverflowError):
                pass  # item by item below: only the value that cannot be encoded is left out
        encoded = self.encoder.full(reg, pairs, True)
        return len(encoded), b"".join(e for e in encoded if isinstance(e, bytes))
