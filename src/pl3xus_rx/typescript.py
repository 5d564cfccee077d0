"""TypeScript from the Python models: a server's types for the browser client, and the wire
vocabulary (``pl3xus-rx typescript``; docs/web.md).

:func:`typescript_for` turns what a :class:`~pl3xus_rx.SyncServer` registered (components,
requests, queries, messages, one-way messages) into one self-contained TypeScript module: an
interface per model, from its JSON Schema in the form that travels on the wire, and a
descriptor per registered type with the wire name and schema hash the server sends in its
WELCOME (taken from the server's own tables, never recomputed). :func:`protocol_typescript`
turns :mod:`pl3xus_rx.protocol`'s vocabulary (frame kinds, flags, statuses...) into constants,
so that no JavaScript spells a frame kind as a number.

Both return text and do no I/O; the command writes it.
"""

from __future__ import annotations

import ast
import enum
import inspect
import json
import logging
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel
from pydantic.errors import PydanticInvalidForJsonSchema, PydanticUserError
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from pydantic_core import core_schema

from .exceptions import UnsupportedModel
from .protocol import (
    HISTORY_QUERY,
    JSON_SUBPROTOCOL,
    JSON_SUBPROTOCOL_V2,
    LAST_MESSAGE_QUERY,
    MSGPACK_SUBPROTOCOL,
    MSGPACK_SUBPROTOCOL_V2,
    REPLAY_REQUEST,
    SUBPROTOCOLS,
    CloseCode,
    ControlAction,
    ErrorCode,
    FrameKind,
    NoticeKind,
    NotificationLevel,
    Status,
    SyncFlag,
    welcome_frame,
)

if TYPE_CHECKING:
    from .server import SyncServer

__all__ = [
    "COMMAND",
    "DESCRIPTOR_INTERFACES",
    "PROTOCOL_ENUMS",
    "identifier",
    "javascript_for",
    "property_key",
    "protocol_typescript",
    "typescript_for",
    "welcome_tables",
]

logger = logging.getLogger(__name__)

COMMAND: Final = "pl3xus-rx typescript"
"""The command, as the generated files' header names it."""

DESCRIPTOR_INTERFACES: Final = """\
export interface ComponentType<T> { readonly kind: "component"; readonly name: string; \
readonly hash: string; readonly fields: readonly string[]; readonly __value?: T }
export interface RequestType<Q, R> { readonly kind: "request"; readonly name: string; \
readonly hash: string; readonly responseHash: string; readonly targeted: boolean; \
readonly __request?: Q; readonly __response?: R }
export interface QueryType<P, R> { readonly kind: "query"; readonly name: string; \
readonly hash: string; readonly responseHash: string; readonly __params?: P; \
readonly __response?: R }
export interface MessageType<T> { readonly kind: "message"; readonly name: string; \
readonly hash: string; readonly __value?: T }
export interface OneWayType<T> { readonly kind: "one_way"; readonly name: string; \
readonly hash: string; readonly targeted: boolean; readonly __value?: T }
"""
"""The descriptor interfaces every generated module declares (the client core declares
structurally identical ones, so the module needs no import)."""

PROTOCOL_ENUMS: Final[tuple[type[enum.Enum], ...]] = (
    FrameKind,
    SyncFlag,
    Status,
    ControlAction,
    NoticeKind,
    ErrorCode,
    NotificationLevel,
    CloseCode,
)
"""The vocabulary :func:`protocol_typescript` writes, in this order."""

_Kind = Literal["component", "request", "query", "message", "one_way"]

_SECTIONS: Final[tuple[tuple[_Kind, str, str], ...]] = (
    # (kind, the WELCOME table, the key in the generated ``schema``)
    ("component", "components", "components"),
    ("request", "requests", "requests"),
    ("query", "queries", "queries"),
    ("message", "messages", "messages"),
    ("one_way", "one_way", "oneWay"),
)
_SUFFIX: Final[Mapping[_Kind, str]] = {
    "component": "Component",
    "request": "Request",
    "query": "Query",
    "message": "Message",
    "one_way": "OneWay",
}
_IDENTIFIER: Final = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_RESERVED: Final = _words(
    # words a TypeScript type or const may not be named (reserved, strict-mode reserved, and
    # the predefined type names)
    "break case catch class const continue debugger default delete do else enum export "
    "extends false finally for function if import in instanceof new null return super switch "
    "this throw true try typeof var void while with as implements interface let package "
    "private protected public static yield any boolean number string symbol unknown never "
    "object bigint undefined await type keyof infer readonly unique asserts is"
)
_OWN_NAMES: Final = frozenset(
    ("ComponentType", "RequestType", "QueryType", "MessageType", "OneWayType", "schema")
)
# Keywords that only constrain or annotate a value whose TypeScript type the others give.
_ANNOTATIONS: Final = _words(
    "title description default examples deprecated readOnly writeOnly format pattern "
    "minLength maxLength minimum maximum exclusiveMinimum exclusiveMaximum multipleOf "
    "minItems maxItems uniqueItems contains minContains maxContains minProperties "
    "maxProperties propertyNames required discriminator contentMediaType contentEncoding "
    "contentSchema $comment $schema $id $anchor $defs definitions unevaluatedProperties "
    "unevaluatedItems dependentRequired"
)


class _WireSchema(GenerateJsonSchema):
    """JSON Schemas of what travels: in serialization mode every field the dump writes is
    required (``to_wire`` writes defaults too) and computed fields are left out (``to_wire``
    excludes them; the receiver computes them)."""

    def field_is_required(
        self,
        field: core_schema.ModelField | core_schema.DataclassField | core_schema.TypedDictField,
        total: bool,
    ) -> bool:
        """Whether ``field`` is always present (serialization) or must be sent (validation)."""
        if self.mode == "serialization" and field["type"] != "typed-dict-field":
            return field.get("serialization_exclude_if") is None
        return super().field_is_required(field, total)

    def model_fields_schema(self, schema: core_schema.ModelFieldsSchema) -> Any:
        """A model's fields, without its computed fields."""
        return super().model_fields_schema({**schema, "computed_fields": []})

    def dataclass_args_schema(self, schema: core_schema.DataclassArgsSchema) -> Any:
        """A dataclass's fields, without its computed fields."""
        return super().dataclass_args_schema({**schema, "computed_fields": []})

    def typed_dict_schema(self, schema: core_schema.TypedDictSchema) -> Any:
        """A TypedDict's keys, without computed fields."""
        return super().typed_dict_schema({**schema, "computed_fields": []})


@dataclass(frozen=True)
class _Entry:
    """One row of a WELCOME table, with the models the server registered for it."""

    kind: _Kind
    name: str
    hash: str
    model: type[BaseModel]
    mode: JsonSchemaMode
    response: type[BaseModel] | None = None
    response_hash: str = ""
    targeted: bool = False
    fields: tuple[str, ...] = ()


def welcome_tables(server: SyncServer) -> dict[str, list[list[Any]]]:
    """The type tables ``server`` sends in every WELCOME, built as the server builds them:
    ``messages``, ``components``, ``requests``, ``queries`` and ``one_way``."""
    extra = {"components": server.registry.wire_table(), **server.commands.wire_tables()}
    body = welcome_frame(0, server.net.message_types, extra)[1]
    return {table: body[table] for _, table, _ in _SECTIONS}


def _entries(server: SyncServer) -> list[_Entry]:
    """Every registered type, section by section, sorted by wire name in each."""
    tables = welcome_tables(server)
    commands = server.commands
    entries: list[_Entry] = []
    for _, name, hash_, fields in tables["components"]:
        reg = server.registry.by_name(name)
        assert reg is not None  # (the table is the registry's)
        entries.append(
            _Entry("component", name, hash_, reg.model, "serialization", fields=tuple(fields))
        )
    for name, hash_, response_hash, targeted in tables["requests"]:
        request = commands.requests[name]
        entries.append(
            _Entry(
                "request",
                name,
                hash_,
                request.model,
                "validation",
                response=request.response,
                response_hash=response_hash,
                targeted=bool(targeted),
            )
        )
    for name, hash_, response_hash in tables["queries"]:
        query = commands.queries[name]
        entries.append(
            _Entry(
                "query",
                name,
                hash_,
                query.model,
                "validation",
                response=query.response,
                response_hash=response_hash,
            )
        )
    for _, name, hash_ in tables["messages"]:
        message = server.net.message_types.by_name(name)
        assert message is not None
        entries.append(_Entry("message", name, hash_, message.model, "serialization"))
    for name, hash_, targeted in tables["one_way"]:
        one_way = commands.messages[name]
        entries.append(
            _Entry("one_way", name, hash_, one_way.model, "validation", targeted=bool(targeted))
        )
    order = {kind: i for i, (kind, _, _) in enumerate(_SECTIONS)}
    return sorted(entries, key=lambda e: (order[e.kind], e.name))


def identifier(name: str) -> str:
    """``name`` made a TypeScript identifier: other characters become ``_``, a leading digit
    or a reserved word gets one more ``_``."""
    ident = re.sub(r"[^A-Za-z0-9_$]", "_", name) or "_"
    if ident[0].isdigit():
        ident = "_" + ident
    if ident in _RESERVED:
        ident += "_"
    return ident


def _unique(base: str, taken: set[str]) -> str:
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def _def_base(key: str) -> str:
    """The TypeScript name of a pydantic ``$defs`` key: ``X-Output`` (what the server sends,
    where it differs from what it accepts) is ``X``, ``X-Input`` is ``XInput``."""
    if key.endswith("-Output"):
        return identifier(key.removesuffix("-Output"))
    if key.endswith("-Input"):
        return identifier(key.removesuffix("-Input") + "Input")
    return identifier(key)


def _schemas(
    inputs: Sequence[tuple[type[BaseModel], JsonSchemaMode]],
) -> tuple[dict[tuple[type[BaseModel], JsonSchemaMode], Any], dict[str, Any]]:
    """One JSON Schema for every model (by field name, as ``to_wire`` writes them).

    Raises:
        UnsupportedModel: pydantic cannot write a model's schema (the model named).
    """
    try:
        refs, top = models_json_schema(inputs, by_alias=False, schema_generator=_WireSchema)
    except (PydanticInvalidForJsonSchema, PydanticUserError) as exc:
        for model, mode in inputs:  # which one?
            try:
                models_json_schema([(model, mode)], schema_generator=_WireSchema)
            except (PydanticInvalidForJsonSchema, PydanticUserError) as inner:
                raise UnsupportedModel(
                    f"cannot write a TypeScript type for {model.__qualname__}: "
                    f"{' '.join(str(inner).split()[:40])}"
                ) from exc
        raise UnsupportedModel(f"cannot write the TypeScript types: {exc}") from exc
    found: dict[tuple[type[BaseModel], JsonSchemaMode], Any] = {
        (model, mode): refs[(model, mode)] for model, mode in inputs
    }
    return found, dict(top.get("$defs", {}))


def _doc(text: str | None, indent: str = "", tags: Iterable[str] = ()) -> list[str]:
    """A ``/** ... */`` comment (``*/`` in ``text`` cannot end it)."""
    lines = [] if not text else _rst(text).replace("*/", "*\\/").strip().splitlines()
    lines += list(tags)
    if not lines:
        return []
    if len(lines) == 1:
        return [f"{indent}/** {lines[0]} */"]
    body = [f"{indent} *{' ' + line if line.strip() else ''}" for line in lines]
    return [f"{indent}/**", *body, f"{indent} */"]


def _literal(value: Any) -> str | None:
    """A TypeScript literal type for a JSON value (``None``: it has none)."""
    if value is None or isinstance(value, bool | str):
        return json.dumps(value)
    if isinstance(value, int | float) and value == value and abs(value) != float("inf"):
        return json.dumps(value)
    return None


def _unsupported(keyword: str) -> str:
    logger.warning("JSON Schema keyword %r has no TypeScript type: written as unknown", keyword)
    # (the keyword comes from a model's schema, so from anywhere: only plain characters go
    # into the comment, never a "*/" that would end it and let code follow)
    safe = re.sub(r"[^A-Za-z0-9_$ .:#()\[\]-]", "?", keyword)[:60]
    return f"unknown /* unsupported JSON Schema keyword: {safe} */"


def _union(members: Iterable[str]) -> str:
    seen: list[str] = []
    for member in members:
        for part in _split_union(member):
            if part not in seen:
                seen.append(part)
    if "unknown" in seen:
        return "unknown"
    if not seen:
        return "never"
    return " | ".join(seen)


def _split_union(text: str) -> list[str]:
    """The top-level members of a union written by :func:`_union` (else ``[text]``)."""
    parts: list[str] = []
    depth, start, quoted = 0, 0, False
    i = 0
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c in "([{<":
            depth += 1
        elif c in ")]}>":
            depth -= 1
        elif c == "/" and text.startswith("/*", i):
            end = text.find("*/", i)
            i = len(text) if end < 0 else end + 1
        elif depth == 0 and text.startswith(" | ", i):
            parts.append(text[start:i])
            start = i + 3
            i += 2
        i += 1
    parts.append(text[start:])
    return parts


def _grouped(text: str) -> str:
    """``text`` safe before ``[]`` or beside ``&``."""
    return f"({text})" if len(_split_union(text)) > 1 or " & " in text else text


def property_key(name: str) -> str:
    """A property name as TypeScript writes it: bare when an identifier, else quoted."""
    return name if _IDENTIFIER.match(name) else json.dumps(name)


class _Writer:
    """JSON Schema to TypeScript, with ``$ref`` resolved to the names given to ``$defs``."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self.names = names

    def ref(self, ref: str) -> str:
        key = ref.removeprefix("#/$defs/")
        name = self.names.get(key)
        if name is None:
            return _unsupported(f"$ref {ref}")
        return name

    def type(self, schema: Any, indent: str = "") -> str:
        """The TypeScript type of ``schema``."""
        if schema is True or schema == {}:
            return "unknown"
        if schema is False:
            return "never"
        if not isinstance(schema, dict):
            return _unsupported(repr(schema))
        if "$ref" in schema:
            return self.ref(str(schema["$ref"]))
        if "const" in schema:
            literal = _literal(schema["const"])
            return literal if literal is not None else _unsupported("const (not a primitive)")
        if "enum" in schema:
            literals = [_literal(v) for v in schema["enum"]]
            if any(lit is None for lit in literals):
                return _unsupported("enum (not of primitives)")
            return _union(lit for lit in literals if lit is not None)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return _union(self.type(s, indent) for s in schema[key])
        if "allOf" in schema:
            parts = [self.type(s, indent) for s in schema["allOf"]]
            if len(parts) == 1:
                return parts[0]
            return " & ".join(_grouped(p) for p in parts)
        kind = schema.get("type")
        if isinstance(kind, list):
            return _union(self.type({**schema, "type": k}, indent) for k in kind)
        if kind is None:
            if "properties" in schema or "additionalProperties" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
        if kind in ("integer", "number"):
            return "number"
        if kind in ("string", "boolean", "null"):
            return str(kind)
        if kind == "array":
            return self.array(schema, indent)
        if kind == "object":
            return self.object(schema, indent)
        if kind is not None:
            return _unsupported(f"type {kind}")
        extra = sorted(k for k in schema if k not in _ANNOTATIONS)
        return _unsupported(extra[0]) if extra else "unknown"

    def array(self, schema: Mapping[str, Any], indent: str) -> str:
        items = schema.get("items")
        prefix = schema.get("prefixItems")
        if prefix is None:
            return f"{_grouped(self.type(items if items is not None else True, indent))}[]"
        members = [self.type(s, indent) for s in prefix]
        if items is False or schema.get("maxItems") == len(members):
            rest = None
        else:
            rest = self.type(items if items is not None else True, indent)
        required = schema.get("minItems", len(members))
        shown = [m if i < required else f"{m}?" for i, m in enumerate(members)]
        if rest is not None:
            shown.append(f"...{_grouped(rest)}[]")
        return f"[{', '.join(shown)}]"

    def object(self, schema: Mapping[str, Any], indent: str) -> str:
        body = self.members(schema, indent + "  ")
        if not body:
            return "{}"
        return "{\n" + "\n".join(body) + f"\n{indent}}}"

    def members(self, schema: Mapping[str, Any], indent: str) -> list[str]:
        """The lines of an object type's body (properties, then an index signature)."""
        lines: list[str] = []
        required = set(schema.get("required", ()))
        properties: Mapping[str, Any] = schema.get("properties", {})
        for name, prop in properties.items():
            tags = ["@deprecated"] if isinstance(prop, dict) and prop.get("deprecated") else []
            description = prop.get("description") if isinstance(prop, dict) else None
            lines += _doc(description, indent, tags)
            optional = "" if name in required else "?"
            lines.append(f"{indent}{property_key(name)}{optional}: {self.type(prop, indent)};")
        extra: list[str] = []
        # (a model's schema has "properties", empty or not: without additionalProperties it
        # takes nothing else; a bare object schema takes anything)
        additional = schema.get("additionalProperties", None if "properties" in schema else True)
        if additional is not None and additional is not False:
            extra.append(self.type(additional, indent))
        for pattern_schema in schema.get("patternProperties", {}).values():
            extra.append(self.type(pattern_schema, indent))
        if extra:
            # (an index signature must admit every declared property too)
            value = "unknown" if properties else _union(extra)
            lines.append(f"{indent}[key: string]: {value};")
        elif not properties:
            lines.append(f"{indent}[key: string]: never;")
        return lines


def _is_interface(schema: Any) -> bool:
    """Whether a ``$defs`` entry is written as an interface (an object with named members),
    rather than a type alias."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return False
    return not any(k in schema for k in ("$ref", "anyOf", "oneOf", "allOf", "enum", "const"))


def _descriptor_parts(entry: _Entry, value: str, response: str) -> tuple[str, str]:
    """A descriptor's declared type and its object literal (the same in TypeScript and
    JavaScript)."""
    name, hash_ = json.dumps(entry.name), json.dumps(entry.hash)
    common = f"name: {name}, hash: {hash_}"
    if entry.kind == "component":
        fields = ", ".join(json.dumps(f) for f in entry.fields)
        return f"ComponentType<{value}>", f'{{ kind: "component", {common}, fields: [{fields}] }}'
    if entry.kind == "request":
        return (
            f"RequestType<{value}, {response}>",
            f'{{ kind: "request", {common}, responseHash: {json.dumps(entry.response_hash)}, '
            f"targeted: {json.dumps(entry.targeted)} }}",
        )
    if entry.kind == "query":
        return (
            f"QueryType<{value}, {response}>",
            f'{{ kind: "query", {common}, responseHash: {json.dumps(entry.response_hash)} }}',
        )
    if entry.kind == "message":
        return f"MessageType<{value}>", f'{{ kind: "message", {common} }}'
    return (
        f"OneWayType<{value}>",
        f'{{ kind: "one_way", {common}, targeted: {json.dumps(entry.targeted)} }}',
    )


@dataclass(frozen=True)
class _Generated:
    """What the generator found, before it is written as one file or two."""

    command: str
    declarations: list[str]  # the interfaces and types, with their doc comments
    aliases: list[str]
    # per descriptor: its kind, identifier, declared type and object literal
    descriptors: list[tuple[_Kind, str, str, str]]


def _generate(server: SyncServer, command: str) -> _Generated:
    entries = _entries(server)
    inputs: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for entry in entries:
        wanted = [(entry.model, entry.mode)]
        if entry.response is not None:
            wanted.append((entry.response, "serialization"))
        inputs.extend(w for w in wanted if w not in inputs)
    refs, defs = _schemas(inputs)

    # Names: descriptors first (a const and a type each), then every $defs entry.
    taken = set(_OWN_NAMES)
    idents: list[str] = []
    for entry in entries:
        base = identifier(entry.name)
        ident = base if base not in taken else _unique(base + _SUFFIX[entry.kind], taken)
        taken.add(ident)
        idents.append(ident)
    primary: dict[str, str] = {}  # $defs key -> the descriptor ident that may name it
    for entry, ident in zip(entries, idents, strict=True):
        key = str(refs[(entry.model, entry.mode)].get("$ref", "")).removeprefix("#/$defs/")
        if _def_base(key) == ident and key in defs:
            primary.setdefault(key, ident)
    names: dict[str, str] = {}
    type_names = taken - {"schema"}
    for key in sorted(defs, key=lambda k: (_def_base(k), k)):
        if key in primary:
            names[key] = primary[key]
        else:
            names[key] = _unique(_def_base(key), type_names)
    writer = _Writer(names)

    declarations: list[str] = []
    for key in sorted(defs, key=lambda k: names[k]):
        schema = defs[key]
        declarations.append("")
        tags = ["@deprecated"] if schema.get("deprecated") else []
        declarations += _doc(schema.get("description"), "", tags)
        if _is_interface(schema):
            body = writer.members(schema, "  ")
            declarations.append(f"export interface {names[key]} {{")
            declarations += body
            declarations.append("}")
        else:
            declarations.append(f"export type {names[key]} = {writer.type(schema)};")

    aliases: list[str] = []
    descriptors: list[tuple[_Kind, str, str, str]] = []
    for entry, ident in zip(entries, idents, strict=True):
        value = writer.type(refs[(entry.model, entry.mode)])
        response = (
            writer.type(refs[(entry.response, "serialization")])
            if entry.response is not None
            else "never"
        )
        if value != ident:
            aliases.append(f"export type {ident} = {value};")
        declared, literal = _descriptor_parts(entry, ident, response)
        descriptors.append((entry.kind, ident, declared, literal))
    return _Generated(command, declarations, aliases, descriptors)


def _header(command: str, *more: str) -> list[str]:
    return [
        f"// Generated by `{command}`: do not edit.",
        "// The types of a pl3xus_rx server's components, requests, queries and messages, with",
        "// the wire names and schema hashes of its WELCOME. Regenerate when its models change.",
        *more,
        "",
        "/* eslint-disable */",
        "",
    ]


def _types(generated: _Generated) -> list[str]:
    """The descriptor interfaces, the models' declarations and the aliases."""
    out = [DESCRIPTOR_INTERFACES.rstrip("\n"), *generated.declarations]
    if generated.aliases:
        out += [
            "",
            "// Registered under a wire name that is not the model's name.",
            *generated.aliases,
        ]
    return out


def _consts(generated: _Generated, line: Callable[[str, str, str], str]) -> list[str]:
    """The descriptors section by section, each written by ``line(ident, declared,
    literal)``."""
    out: list[str] = []
    for kind, _, key in _SECTIONS:
        section = [line(i, d, lit) for k, i, d, lit in generated.descriptors if k == kind]
        if section:
            out += ["", f"// {key}", *section]
    return out


def _schema_members(generated: _Generated) -> list[tuple[str, list[str]]]:
    return [
        (key, [i for k, i, _, _ in generated.descriptors if k == kind])
        for kind, _, key in _SECTIONS
    ]


def typescript_for(server: SyncServer, *, command: str = COMMAND) -> str:
    """A TypeScript module with the types of everything ``server`` registered.

    Each model becomes an exported interface (or type) from its JSON Schema in wire form
    (field names, never aliases; what the server sends in serialization form, what a client
    sends — request payloads, query parameters, one-way messages — in validation form), and
    each registered type an exported descriptor const named after its wire name, carrying
    the name, schema hash (and fields, response hash, targeted) of the server's WELCOME.
    ``schema`` at the end lists every descriptor. The output depends on nothing but the
    registrations: the same server gives the same text.

    Args:
        server: A server with its types registered (``setup(server)`` has run).
        command: What the header says generated the file.

    Returns:
        The module's text.

    Raises:
        UnsupportedModel: pydantic cannot write a JSON Schema for one of the models.
    """
    generated = _generate(server, command)
    out = _header(command) + _types(generated)
    out += _consts(generated, lambda i, declared, lit: f"export const {i}: {declared} = {lit};")
    out += ["", "export const schema = {"]
    for key, members in _schema_members(generated):
        out.append(f"  {key}: [{', '.join(members)}],")
    out += ["} as const;", ""]
    return "\n".join(out)


def javascript_for(
    server: SyncServer, *, command: str = COMMAND, declarations: str = "types.d.ts"
) -> tuple[str, str]:
    """The same as :func:`typescript_for`, for a page without a build step: a plain
    JavaScript module and the TypeScript declarations that type it.

    The JavaScript holds the descriptor consts and ``schema`` (the values a page needs at
    run time), nothing else; the declarations hold the interfaces, the descriptor
    interfaces and ``export declare const Pose: ComponentType<Pose>;`` per descriptor. Saved
    side by side as ``types.js`` and ``types.d.ts``, a page's ``import { Pose } from
    "./types.js"`` runs in a browser as it is, and ``tsc --checkJs`` checks the page against
    the declarations.

    Args:
        server: A server with its types registered (``setup(server)`` has run).
        command: What the headers say generated the files.
        declarations: The declaration file's name, as the JavaScript's header names it.

    Returns:
        ``(javascript, declarations)``: the two files' text.

    Raises:
        UnsupportedModel: pydantic cannot write a JSON Schema for one of the models.
    """
    generated = _generate(server, command)
    js = _header(command, f"// Its types are in {declarations}, for `tsc --checkJs`.")[:-1]
    js += _consts(generated, lambda i, _declared, lit: f"export const {i} = {lit};")
    js += ["", "export const schema = {"]
    for key, members in _schema_members(generated):
        js.append(f"  {key}: [{', '.join(members)}],")
    js += ["};", ""]
    dts = _header(command) + _types(generated)
    dts += _consts(generated, lambda i, declared, _lit: f"export declare const {i}: {declared};")
    dts += ["", "export declare const schema: {"]
    for key, members in _schema_members(generated):
        listed = ", ".join(f"typeof {m}" for m in members)
        dts.append(f"  readonly {key}: readonly [{listed}];")
    dts += ["};", ""]
    return "\n".join(js), "\n".join(dts)


# ---------------------------------------------------------------------- the vocabulary


def _rst(text: str) -> str:
    """A Python docstring's reST made Markdown-ish for a TypeScript doc comment."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def _member_docs(cls: type) -> dict[str, str]:
    """The docstrings under an enum's members (read from its source; none without it)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    previous: str | None = None
    for node in body.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            previous = node.targets[0].id
            continue
        if (
            previous is not None
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            docs[previous] = inspect.cleandoc(node.value.value)
        previous = None
    return docs


def protocol_typescript(*, command: str = f"{COMMAND} --protocol") -> str:
    """The wire vocabulary of :mod:`pl3xus_rx.protocol` as a TypeScript module.

    Each enum of :data:`PROTOCOL_ENUMS` becomes ``export const Name = { MEMBER: value, ... }
    as const`` and ``export type NameValue`` (the union of its values), with the Python doc
    comments; the subprotocol names and the built-in last-message query become constants
    too.

    Args:
        command: What the header says generated the file.

    Returns:
        The module's text.
    """
    out = [
        f"// Generated by `{command}` from pl3xus_rx.protocol: do not edit.",
        "// The wire vocabulary (docs/protocol.md): frame kinds, flags, statuses, notices,",
        "// error codes and close codes, so that no client code spells one as a bare literal.",
        "",
        "/* eslint-disable */",
        "",
    ]
    for name, value, doc in (
        ("MSGPACK_SUBPROTOCOL_V2", MSGPACK_SUBPROTOCOL_V2, "msgpack, protocol version 2."),
        ("JSON_SUBPROTOCOL_V2", JSON_SUBPROTOCOL_V2, "JSON, protocol version 2."),
        ("MSGPACK_SUBPROTOCOL", MSGPACK_SUBPROTOCOL, "msgpack, protocol version 1."),
        ("JSON_SUBPROTOCOL", JSON_SUBPROTOCOL, "JSON, protocol version 1."),
    ):
        out += [
            f"/** WebSocket subprotocol: {doc} */",
            f"export const {name} = {json.dumps(value)};",
        ]
    subprotocols = ", ".join(json.dumps(s) for s in SUBPROTOCOLS)
    out += [
        "/** Every subprotocol a server speaks, newest first. */",
        f"export const SUBPROTOCOLS = [{subprotocols}] as const;",
        "/** The built-in query for the last message of a type the server published. */",
        f"export const LAST_MESSAGE_QUERY = {json.dumps(LAST_MESSAGE_QUERY)};",
        "/** The built-in query for the past of a type that keeps history. */",
        f"export const HISTORY_QUERY = {json.dumps(HISTORY_QUERY)};",
        "/** The built-in request a replay server plays, pauses, seeks and sets speed with. */",
        f"export const REPLAY_REQUEST = {json.dumps(REPLAY_REQUEST)};",
    ]
    for cls in PROTOCOL_ENUMS:
        docs = _member_docs(cls)
        out.append("")
        out += _doc(inspect.cleandoc(cls.__doc__ or ""))
        out.append(f"export const {cls.__name__} = {{")
        for member in cls:
            out += _doc(docs.get(member.name), "  ")
            value = member.value
            out.append(f"  {member.name}: {json.dumps(value)},")
        out.append("} as const;")
        out.append(f"/** A value of `{cls.__name__}`. */")
        name = cls.__name__
        out.append(f"export type {name}Value = (typeof {name})[keyof typeof {name}];")
    out.append("")
    return "\n".join(out)
