"""From a decoded state file back into a World: which saved types load as they are,
which are migrated or dropped, which changed shape (the server refuses to start, naming
them and their fields), then every value validated before anything is restored. No I/O.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from ..exceptions import StateRestoreFailed, StateSchemaChanged
from ..sync._registry import ComponentRegistration, ComponentRegistry
from ..world import EntityId, World
from ._format import SavedType, SavedWorld, TypeShape
from ._types import Migration

__all__ = ["Restore", "apply", "describe_change", "plan", "validate"]

logger = logging.getLogger(__name__)

Shapes = Callable[[ComponentRegistration[Any]], TypeShape]


@dataclass(slots=True)
class Restore:
    """What a load will do, type by type.

    Attributes:
        load: ``(registration, saved type, migration)``: values to restore (migrated when
            the third is not ``False``: ``None`` loads the saved fields as they are).
        migrated: Type name -> values that go through a migration.
        dropped: Type name -> values dropped.
        not_persisted: Type name -> values of types now ``persist(False)``.
    """

    load: list[tuple[ComponentRegistration[Any], SavedType, Migration | bool | None]] = field(
        default_factory=list
    )
    migrated: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    not_persisted: dict[str, int] = field(default_factory=dict)


def _schema(text: str) -> dict[str, Any]:
    try:
        schema = json.loads(text)
    except ValueError:
        return {}
    return schema if isinstance(schema, dict) else {}


def _inline(node: Any, defs: Mapping[str, Any], depth: int = 0) -> Any:
    """``node`` with its ``$ref``\\ s to ``$defs`` replaced by what they name (a few levels
    deep: enough to tell two fields apart, and finite for recursive models)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and depth < 8:
            target = defs.get(ref[len("#/$defs/") :])
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return _inline(
                {**(target if isinstance(target, dict) else {}), **rest}, defs, depth + 1
            )
        return {k: _inline(v, defs, depth) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs, depth) for v in node]
    return node


def _fields(schema: dict[str, Any]) -> dict[str, Any]:
    props = schema.get("properties")
    defs = schema.get("$defs") if isinstance(schema.get("$defs"), dict) else {}
    if not isinstance(props, dict):
        return {}
    return {name: _inline(value, defs or {}) for name, value in props.items()}


def _short(node: Any, limit: int = 90) -> str:
    text = json.dumps(node, sort_keys=True, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _default(reg: ComponentRegistration[Any], name: str) -> str:
    info = reg.model.model_fields.get(name)
    if info is None or info.is_required():
        return "required, no default"
    if info.default_factory is not None:
        return "has a default"
    text = repr(info.default)
    return f"default {text if len(text) <= 40 else text[:37] + '...'}"


def describe_change(saved: SavedType, reg: ComponentRegistration[Any], shape: TypeShape) -> str:
    """What differs between ``saved`` and the type's current ``shape``, in words: the
    fields added (with their defaults), removed and retyped."""
    old, new = _fields(_schema(saved.schema)), _fields(_schema(shape.schema))
    parts = []
    added = [n for n in shape.fields if n not in saved.fields]
    removed = [n for n in saved.fields if n not in shape.fields]
    if added:
        parts.append("added " + ", ".join(f"{n} ({_default(reg, n)})" for n in added))
    if removed:
        parts.append("removed " + ", ".join(removed))
    changed = [n for n in shape.fields if n in saved.fields and old.get(n, {}) != new.get(n, {})]
    for name in changed:
        parts.append(f"changed {name}: {_short(old.get(name))} -> {_short(new.get(name))}")
    if not parts:
        parts.append("rules of the model itself changed (its fields are the same)")
    fields = f"saved fields ({', '.join(saved.fields)}), now ({', '.join(shape.fields)})"
    return f"{'; '.join(parts)}; {fields}"


def _resolve(
    names: Mapping[str | type[BaseModel], Any], registry: ComponentRegistry
) -> dict[str, Any]:
    """Names given as models, turned into their wire names."""
    out = {}
    for key, value in names.items():
        if isinstance(key, str):
            out[key] = value
        else:
            out[registry.get(key).name] = value
    return out


def plan(
    saved: SavedWorld,
    registry: ComponentRegistry,
    shape: Shapes,
    migrations: Mapping[str | type[BaseModel], Migration | None],
    drops: Mapping[str | type[BaseModel], None],
    path: str,
) -> Restore:
    """Decide, type by type, what loading ``saved`` does.

    Raises:
        StateSchemaChanged: a saved type changed shape (or is no longer synced) and was
            neither migrated nor dropped; the message names each with its fields and says
            how to go on.
    """
    migrate = _resolve(migrations, registry)
    drop = set(_resolve(drops, registry))
    restore = Restore()
    changes: dict[str, str] = {}
    gone: list[str] = []
    known = 0
    for st in saved.types:
        reg = registry.by_name(st.name)
        count = len(st.ids)
        if reg is None:
            if st.name in drop:
                restore.dropped[st.name] = count
            else:
                changes[st.name] = f"no longer synced by this server ({count:,} saved values)"
                gone.append(st.name)
            continue
        known += 1
        if not reg.persist:
            restore.not_persisted[st.name] = count
            continue
        current = shape(reg)
        if current.hash == st.hash:
            restore.load.append((reg, st, False))
        elif st.name in migrate:
            restore.load.append((reg, st, migrate[st.name]))
            restore.migrated[st.name] = count
        elif st.name in drop:
            restore.dropped[st.name] = count
        else:
            changes[st.name] = describe_change(st, reg, current)
    if changes:
        raise StateSchemaChanged(
            _changed_text(saved, changes, gone, known, path), path=path, changes=changes
        )
    return restore


def _when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _changed_text(
    saved: SavedWorld, changes: dict[str, str], gone: list[str], known: int, path: str
) -> str:
    lines = []
    if not known and saved.types:
        lines.append(
            f"none of the {len(saved.types)} types in {path} is synced by this server "
            f"({', '.join(t.name for t in saved.types[:10])}): is it another application's "
            "state file? Give this server its own state path, or drop them:"
        )
    else:
        lines.append(
            f"{len(changes)} type(s) saved in {path} (written {_when(saved.written_at)} by "
            f"{saved.writer or 'an unknown version'}) changed shape since; the server does not "
            "start until each is migrated or dropped:"
        )
    for name, text in changes.items():
        lines.append(f"  - {name}: {text}")
    example = next((n for n in changes if n not in gone), None)
    if example is not None:
        lines.append(
            f"Before load_state() (or serve()): server.migrate_state({example!r}) loads the "
            "saved fields as they are (new fields take their defaults); "
            f"server.migrate_state({example!r}, fn) converts each saved value "
            "(fn(saved: dict) -> dict); "
            f"server.drop_state({example!r}) forgets its saved values (the entities stay)."
        )
    if gone:
        lines.append(
            f"A type no longer synced can only be dropped: server.drop_state({gone[0]!r}) "
            "(or register it again)."
        )
    lines.append("See docs/persistence.md, Schema changes.")
    return "\n".join(lines)


_adapters: dict[type[BaseModel], TypeAdapter[list[Any]]] = {}


def _adapter(model: type[BaseModel]) -> TypeAdapter[list[Any]]:
    adapter = _adapters.get(model)
    if adapter is None:
        adapter = _adapters[model] = TypeAdapter(list[model])  # type: ignore[valid-type]
    return adapter


def validate(
    restore: Restore, path: str
) -> list[tuple[ComponentRegistration[Any], list[EntityId], list[BaseModel]]]:
    """Every value to restore, migrated and validated into its model.

    Raises:
        StateRestoreFailed: a migration raised or returned something else than a map or a
            model instance, or a value does not validate; names the type, the entity and
            the field.
    """
    out: list[tuple[ComponentRegistration[Any], list[EntityId], list[BaseModel]]] = []
    for reg, st, migration in restore.load:
        names = st.fields
        payloads: list[Any] = [dict(zip(names, row, strict=True)) for row in st.rows]
        if callable(migration):
            migrated: list[Any] = []
            for entity, payload in zip(st.ids, payloads, strict=True):
                try:
                    result = migration(payload)
                except Exception as exc:
                    raise StateRestoreFailed(
                        f"{path}: the migration of {st.name} raised on entity {entity}'s saved "
                        f"value: {type(exc).__name__}: {exc}",
                        path=path,
                    ) from exc
                if not isinstance(result, dict | reg.model):
                    raise StateRestoreFailed(
                        f"{path}: the migration of {st.name} returned {type(result).__name__} "
                        f"for entity {entity}; it returns a dict of the fields, or a "
                        f"{reg.model.__name__}",
                        path=path,
                    )
                migrated.append(result)
            payloads = migrated
        try:
            values = _adapter(reg.model).validate_python(payloads, by_alias=False, by_name=True)
        except ValidationError as exc:
            error = exc.errors()[0]
            loc = error.get("loc", ())
            which = st.ids[loc[0]] if loc and isinstance(loc[0], int) else "?"
            where = ".".join(str(p) for p in loc[1:]) or "<value>"
            how = "after its migration " if migration is not False else ""
            raise StateRestoreFailed(
                f"{path}: the saved {st.name} of entity {which} does not validate "
                f"{how}as {reg.model.__name__}: {where}: {error.get('msg')} "
                f"(got {_short(error.get('input'), 60)}); {exc.error_count()} error(s) in all",
                path=path,
            ) from None
        out.append((reg, st.ids, values))
    return out


def apply(
    world: World,
    saved: SavedWorld,
    values: list[tuple[ComponentRegistration[Any], list[EntityId], list[BaseModel]]],
    restore_owner: Callable[[EntityId, str | None], None],
    path: str,
) -> None:
    """Restore ``saved``'s entities (ids and hierarchy), ``values`` and owners into the
    empty ``world``; on failure, what was restored is despawned again.

    Raises:
        StateRestoreFailed: a value was refused where it is stored (its size, a check).
    """
    try:
        for entity in saved.entities:
            world.adopt(entity)
        parents = saved.parents
        for entity in saved.entities:
            parent = parents.get(entity)
            if parent is not None:
                world.adopt(entity, parent)
        world.reserve_ids(EntityId(saved.next_id))
        for reg, ids, models in values:
            insert = world.insert
            for entity, value in zip(ids, models, strict=True):
                try:
                    insert(entity, value)
                except Exception as exc:
                    raise StateRestoreFailed(
                        f"{path}: the saved {reg.name} of entity {entity} was refused: "
                        f"{type(exc).__name__}: {exc}",
                        path=path,
                    ) from exc
        for entity, name in saved.owners.items():
            restore_owner(entity, name)
    except BaseException:
        for entity in saved.entities:
            if world.contains(entity):
                world.despawn(entity)
        raise
