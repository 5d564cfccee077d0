"""The state file format: a World snapshot to bytes and back. No I/O.

A file is three parts (docs/persistence.md has the reference):

- a 12-byte prefix: the magic ``b"PL3XSTATE\\n"`` and the format version (uint16, big
  endian);
- a body of msgpack documents: first a header map, then sections, each an array whose
  first element says what it holds: ``["E", ids, parents]`` entities (in spawn order; a
  parent is ``nil`` for a root), ``["O", ids, names]`` spawn owners (an identity's name, or
  ``nil`` for an anonymous client), ``["C", type_index, ids, rows]`` component values (a row
  is the value's wire field values, in the order the header lists the type's fields);
- a 20-byte trailer: ``b"PL3XEND\\n"``, the length of everything before the trailer
  (uint64) and its CRC-32 (uint32), both big endian.

Values are what the sync protocol sends for them (their JSON-mode field values), so a
value takes about as many bytes in the file as on the wire. Sections hold at most
:data:`ROWS` rows each, so that encoding yields often (it runs in a thread beside the
event loop) and no document is unboundedly large.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
from pydantic import BaseModel

from ..exceptions import StateUnreadable
from ..protocol import msgpack_encode, to_wire
from ..sync._registry import ComponentRegistration
from ..world import EntityId, WorldSnapshot, entry_fields

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "ROWS",
    "SavedType",
    "SavedWorld",
    "TypeShape",
    "decode_state",
    "encode_state",
    "read_prefix",
    "shape_of",
]

logger = logging.getLogger(__name__)

MAGIC = b"PL3XSTATE\n"
"""The first bytes of every state file."""
FORMAT_VERSION = 1
"""The format this version writes (and the newest it reads)."""
END = b"PL3XEND\n"
PREFIX = struct.Struct(">10sH")
TRAILER = struct.Struct(">8sQI")
ROWS = 4096
"""Most rows per section."""

_EMPTY_CRC = 0


@dataclass(frozen=True, slots=True)
class TypeShape:
    """What a component type's saved values look like: its wire name, field names and
    schema (titles, descriptions and examples left out, so that editing a docstring
    changes nothing), with a hash of the schema.

    Attributes:
        name: The wire name.
        fields: Field names, in the model's order.
        schema: The canonical JSON schema text.
        hash: The first 16 hex digits of its SHA-256.
    """

    name: str
    fields: tuple[str, ...]
    schema: str
    hash: str


_NOISE = frozenset({"title", "description", "examples"})


def _canonical(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _NOISE and not isinstance(value, dict):
                continue  # (a *field* named "title" is a dict under "properties": kept)
            out[key] = _canonical(value)
        if isinstance(out.get("required"), list):  # field order is not shape: rows go by name
            out["required"] = sorted(out["required"])
        return out
    if isinstance(node, list):
        return [_canonical(v) for v in node]
    return node


def shape_of(model: type[BaseModel], name: str) -> TypeShape:
    """The :class:`TypeShape` of ``model`` saved under ``name``."""
    schema = _canonical(model.model_json_schema(mode="validation"))
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return TypeShape(name, tuple(model.model_fields), text, digest)


@dataclass(slots=True)
class SavedType:
    """A component type as the file holds it.

    Attributes:
        name: Its wire name when saved.
        hash: Its :class:`TypeShape` hash when saved.
        fields: Its field names when saved (the order of every row's values).
        schema: Its schema when saved (JSON text).
        ids: The entities that have a value of it.
        rows: Their values' fields, row by row.
    """

    name: str
    hash: str
    fields: tuple[str, ...]
    schema: str
    ids: list[EntityId] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)


@dataclass(slots=True)
class SavedWorld:
    """A decoded state file.

    Attributes:
        format: The format version it was written in.
        written_at: When it was written (Unix time).
        writer: The library version that wrote it.
        next_id: The World's next entity id then.
        entities: Its entities, in spawn order.
        parents: Entity -> parent.
        owners: Spawned entity -> its owner's identity name (``None``: anonymous).
        types: The component types, with their values.
        size: The file's size in bytes.
    """

    format: int
    written_at: float
    writer: str
    next_id: int
    entities: list[EntityId]
    parents: dict[EntityId, EntityId]
    owners: dict[EntityId, str | None]
    types: list[SavedType]
    size: int

    @property
    def values(self) -> int:
        """How many component values the file holds."""
        return sum(len(t.ids) for t in self.types)


# ---------------------------------------------------------------------- writing


@dataclass(slots=True)
class EncodeReport:
    """What :func:`encode_state` wrote (filled in as it goes).

    Attributes:
        entities: Entities saved.
        values: Component values saved.
        left_out: Values that could not be encoded (logged), by type name.
    """

    entities: int = 0
    values: int = 0
    left_out: dict[str, int] = field(default_factory=dict)


ValueOf = Callable[[type[BaseModel], Any], BaseModel]


def _left_out(snapshot: WorldSnapshot, persisted: set[type[BaseModel]]) -> set[EntityId]:
    """The entities not to save: an entity is saved when it has a persisted component, no
    component at all, or a saved entity below it; one whose every component is transient
    (opted out, not synced, ``EntityControl``) is not."""
    out: set[EntityId] = set()
    for model in snapshot.models:
        if model not in persisted:
            for chunk in snapshot.id_chunks(model, ROWS):
                for entity in chunk:
                    if not any(snapshot.has(m, entity) for m in persisted):
                        out.add(entity)
    if not out:
        return out
    for chunk in snapshot.entity_chunks(ROWS):  # what is above a saved entity is saved
        for entity in chunk:
            if entity not in out:
                parent = snapshot.parent(entity)
                while parent is not None and parent in out:
                    out.discard(parent)
                    parent = snapshot.parent(parent)
    return out


def _rows(
    reg: ComponentRegistration[Any],
    shape: TypeShape,
    entries: Sequence[Any],
    value_of: ValueOf,
) -> list[Any]:
    if reg.json_native:
        return [e if type(e) is tuple else entry_fields(e) for e in entries]
    rows = []
    for entry in entries:
        dumped = to_wire(value_of(reg.model, entry))
        rows.append([dumped[name] for name in shape.fields])
    return rows


def _section(
    reg: ComponentRegistration[Any],
    shape: TypeShape,
    index: int,
    ids: list[EntityId],
    entries: list[Any],
    value_of: ValueOf,
    report: EncodeReport,
) -> bytes:
    """One ``["C", index, ids, rows]`` section; values that cannot be encoded are left
    out, one by one (logged), and the rest saved."""
    try:
        return msgpack_encode(["C", index, ids, _rows(reg, shape, entries, value_of)])
    except Exception:  # (a lone surrogate, a serializer that raises: find which)
        pass
    kept_ids: list[EntityId] = []
    kept: list[Any] = []
    for entity, entry in zip(ids, entries, strict=True):
        try:
            row = _rows(reg, shape, [entry], value_of)[0]
            msgpack_encode(row)
        except Exception as exc:
            report.left_out[shape.name] = report.left_out.get(shape.name, 0) + 1
            logger.error(
                "%s of entity %s cannot be encoded and is left out of the state file: %s: %s",
                shape.name,
                entity,
                type(exc).__name__,
                exc,
            )
            continue
        kept_ids.append(entity)
        kept.append(row)
    return msgpack_encode(["C", index, kept_ids, kept])


def encode_state(
    snapshot: WorldSnapshot,
    owners: dict[EntityId, Any],
    types: Sequence[tuple[ComponentRegistration[Any], TypeShape]],
    value_of: ValueOf,
    *,
    writer: str,
    report: EncodeReport | None = None,
    written_at: float | None = None,
) -> Iterator[bytes]:
    """The bytes of a state file holding ``snapshot``, in pieces (a few thousand rows
    each): the caller writes each as it comes.

    Args:
        snapshot: The World (:meth:`World.snapshot`).
        owners: Spawned entity -> its :class:`~pl3xus_rx.commands.Owner`.
        types: The persisted component types, with their shapes.
        value_of: ``World.entry_value``: a model instance for a stored entry.
        writer: Who writes it (the library and its version).
        report: Filled in with what was saved.
        written_at: The time to record (default: now).
    """
    report = report if report is not None else EncodeReport()
    persisted = {reg.model for reg, _ in types}
    left_out = _left_out(snapshot, persisted)
    kept_owners = [(e, owner.name) for e, owner in owners.items() if e not in left_out]
    header = {
        "written_at": time.time() if written_at is None else written_at,
        "writer": writer,
        "next_id": int(snapshot.next_id),
        "types": [
            {
                "name": shape.name,
                "hash": shape.hash,
                "fields": list(shape.fields),
                "schema": shape.schema,
            }
            for _, shape in types
        ],
    }
    crc = _EMPTY_CRC
    length = 0

    def out(data: bytes) -> bytes:
        nonlocal crc, length
        crc = zlib.crc32(data, crc)
        length += len(data)
        return data

    yield out(PREFIX.pack(MAGIC, FORMAT_VERSION))
    yield out(msgpack_encode(header))
    for chunk in snapshot.entity_chunks(ROWS):
        ids = [e for e in chunk if e not in left_out] if left_out else chunk
        if ids:
            yield out(msgpack_encode(["E", ids, [snapshot.parent(e) for e in ids]]))
            report.entities += len(ids)
    for start in range(0, len(kept_owners), ROWS):
        part = kept_owners[start : start + ROWS]
        yield out(msgpack_encode(["O", [e for e, _ in part], [n for _, n in part]]))
    for index, (reg, shape) in enumerate(types):
        for ids in snapshot.id_chunks(reg.model, ROWS):
            entries = snapshot.entries(reg.model, ids)
            yield out(_section(reg, shape, index, ids, entries, value_of, report))
            report.values += len(ids)
        report.values -= report.left_out.get(shape.name, 0)
    yield TRAILER.pack(END, length, crc)


# ---------------------------------------------------------------------- reading


def read_prefix(head: bytes, path: str) -> int:
    """The format version in a file's first bytes.

    Raises:
        StateUnreadable: not a state file, or a format newer than this version reads.
    """
    if len(head) < PREFIX.size or not head.startswith(MAGIC):
        what = "it is empty" if not head else f"it starts with {head[: PREFIX.size]!r}"
        raise StateUnreadable(
            f"{path} is not a pl3xus_rx state file ({what}, not {MAGIC!r}): another "
            "application's file, or the wrong path? Move it away or give another state path",
            path=path,
        )
    _, version = PREFIX.unpack_from(head)
    if version > FORMAT_VERSION:
        raise StateUnreadable(
            f"{path} was written in state format {version} by a newer pl3xus_rx; this "
            f"version reads format {FORMAT_VERSION} and older: upgrade pl3xus_rx (or move "
            "the file away to start afresh)",
            path=path,
        )
    if version < 1:
        raise StateUnreadable(
            f"{path} names state format {version}, which never existed", path=path
        )
    return int(version)


class _Bad(Exception):
    """A malformed part of the body (turned into StateUnreadable with the file's name)."""


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise _Bad(what)


def _ids(value: Any, what: str) -> list[EntityId]:
    _check(
        type(value) is list and all(type(v) is int and 1 <= v < 2**63 for v in value),
        f"{what}: not entity ids (integers from 1 to 2**63 - 1)",
    )
    ids: list[EntityId] = value
    return ids


def decode_state(data: bytes, path: str) -> SavedWorld:
    """Decode a whole state file, checking everything before anything is used: the
    prefix, the trailer (length and CRC-32), every document's shape, counts, unique ids
    and an acyclic hierarchy.

    Raises:
        StateUnreadable: the file is not a state file, is cut short or corrupt, or was
            written in a newer format; the message says which, and where.
    """
    version = read_prefix(data[: PREFIX.size], path)
    size = len(data)
    if size < PREFIX.size + TRAILER.size or data[-TRAILER.size :][: len(END)] != END:
        raise StateUnreadable(
            f"{path} is cut short: {size:,} bytes without the end marker a complete state "
            "file ends with (a copy that did not finish? the server writes its own files "
            "whole). Restore a backup, or move it away to start afresh",
            path=path,
        )
    _, length, crc = TRAILER.unpack_from(data, size - TRAILER.size)
    if length != size - TRAILER.size:
        raise StateUnreadable(
            f"{path} is damaged: its trailer says {length:,} bytes of state, the file has "
            f"{size - TRAILER.size:,}. Restore a backup, or move it away to start afresh",
            path=path,
        )
    body = memoryview(data)[: size - TRAILER.size]
    if zlib.crc32(body) != crc:
        raise StateUnreadable(
            f"{path} is corrupt: its checksum does not match its {size:,} bytes (a disk or "
            "copy error). Restore a backup, or move it away to start afresh",
            path=path,
        )
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, use_list=True)
    unpacker.feed(body[PREFIX.size :])
    ends = [0]  # where the last whole document ended

    def documents() -> Iterator[Any]:
        for doc in unpacker:
            ends[0] = unpacker.tell()
            yield doc

    try:
        saved = _decode_body(documents(), version, size)
        left = len(body) - PREFIX.size - ends[0]
        if left:
            raise _Bad(f"{left:,} bytes after the last section are not a whole document")
        return saved
    except _Bad as exc:
        raise StateUnreadable(f"{path} is malformed: {exc}", path=path) from None
    except Exception as exc:  # (msgpack's own errors on a body that passed its checksum)
        raise StateUnreadable(
            f"{path} is malformed: {type(exc).__name__}: {exc}", path=path
        ) from exc


def _decode_body(documents: Iterator[Any], version: int, size: int) -> SavedWorld:
    docs = documents
    header = next(docs, None)
    _check(isinstance(header, dict), "the header is not a map")
    assert isinstance(header, dict)
    written_at, writer = header.get("written_at"), header.get("writer", "")
    next_id = header.get("next_id")
    _check(isinstance(written_at, int | float), "the header has no written_at time")
    _check(type(next_id) is int and 1 <= next_id < 2**63, "the header has no next_id")
    raw_types = header.get("types")
    _check(type(raw_types) is list, "the header has no type list")
    assert isinstance(raw_types, list)
    types: list[SavedType] = []
    for i, t in enumerate(raw_types):
        _check(isinstance(t, dict), f"type {i} of the header is not a map")
        name, digest, fields, schema = (
            t.get("name"),
            t.get("hash"),
            t.get("fields"),
            t.get("schema", ""),
        )
        _check(isinstance(name, str) and bool(name), f"type {i} has no name")
        _check(isinstance(digest, str), f"type {name} has no hash")
        _check(
            type(fields) is list and all(isinstance(f, str) for f in fields),
            f"type {name} has no field list",
        )
        _check(isinstance(schema, str), f"type {name}'s schema is not text")
        assert isinstance(fields, list)
        types.append(SavedType(str(name), str(digest), tuple(fields), str(schema)))
    _check(len({t.name for t in types}) == len(types), "a type is listed twice")
    entities: list[EntityId] = []
    parents: dict[EntityId, EntityId] = {}
    owners: dict[EntityId, str | None] = {}
    for n, doc in enumerate(docs, start=1):
        _check(type(doc) is list and len(doc) >= 1, f"section {n} is not an array")
        kind = doc[0]
        if kind == "E":
            _check(len(doc) == 3, f"entity section {n} has {len(doc)} parts, not 3")
            ids = _ids(doc[1], f"entity section {n}")
            ups = doc[2]
            _check(
                type(ups) is list
                and len(ups) == len(ids)
                and all(p is None or type(p) is int for p in ups),
                f"entity section {n}: parents do not match its entities",
            )
            entities.extend(ids)
            for entity, parent in zip(ids, ups, strict=True):
                if parent is not None:
                    parents[entity] = parent
        elif kind == "O":
            _check(len(doc) == 3, f"owner section {n} has {len(doc)} parts, not 3")
            ids = _ids(doc[1], f"owner section {n}")
            names = doc[2]
            _check(
                type(names) is list
                and len(names) == len(ids)
                and all(v is None or isinstance(v, str) for v in names),
                f"owner section {n}: names do not match its entities",
            )
            owners.update(zip(ids, names, strict=True))
        elif kind == "C":
            _check(len(doc) == 4, f"value section {n} has {len(doc)} parts, not 4")
            index = doc[1]
            _check(type(index) is int and 0 <= index < len(types), f"section {n}: no such type")
            saved = types[index]
            ids = _ids(doc[2], f"value section {n} ({saved.name})")
            rows = doc[3]
            width = len(saved.fields)
            _check(
                type(rows) is list
                and len(rows) == len(ids)
                and all(type(r) is list and len(r) == width for r in rows),
                f"value section {n} ({saved.name}): rows do not match its {width} fields",
            )
            saved.ids.extend(ids)
            saved.rows.extend(rows)
        else:
            raise _Bad(f"section {n} is of an unknown kind {kind!r}")
    known = set(entities)
    _check(len(known) == len(entities), "an entity is listed twice")
    top = int(next_id)  # type: ignore[arg-type]
    _check(all(e < top for e in entities), "an entity id is not below next_id")
    _check(all(e in known for e in owners), "an owner names an entity the file does not hold")
    for saved in types:
        _check(len(set(saved.ids)) == len(saved.ids), f"{saved.name}: an entity has two values")
        _check(all(e in known for e in saved.ids), f"{saved.name}: a value of no entity")
    _check(all(p in known for p in parents.values()), "a parent the file does not hold")
    _acyclic(parents)
    return SavedWorld(
        format=version,
        written_at=float(written_at),  # type: ignore[arg-type]
        writer=str(writer),
        next_id=int(next_id),  # type: ignore[arg-type]
        entities=entities,
        parents=parents,
        owners=owners,
        types=types,
        size=size,
    )


def _acyclic(parents: dict[EntityId, EntityId]) -> None:
    done: set[EntityId] = set()
    for start in parents:
        path: set[EntityId] = set()
        current: EntityId | None = start
        while current is not None and current not in done:
            _check(current not in path, f"entity {current} is its own ancestor")
            path.add(current)
            current = parents.get(current)
        done |= path
