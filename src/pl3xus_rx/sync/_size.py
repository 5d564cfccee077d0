"""How big a synced value can get, from its model's JSON schema; and the check that refuses
values over ``SyncSettings.max_value_bytes`` where they are stored. No I/O."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from ..exceptions import ValueTooLarge
from ..protocol import to_wire
from ._registry import ComponentRegistration
from ._wire import encode_item_msgpack

__all__ = ["max_encoded_size", "size_check"]

_NUMBER = 9  # msgpack: a float64 or a 64-bit integer with its tag
_SHORT_FORMATS = frozenset(("date-time", "date", "time", "duration", "uuid"))
_HEADER = 5  # msgpack: the longest str / bin / array / map header


def _packed(value: Any) -> int:
    try:
        return len(encode_item_msgpack(value))
    except (ValueError, TypeError, OverflowError):
        return _NUMBER


def _sizer(schema: dict[str, Any]) -> Callable[[dict[str, Any]], float]:
    """The bound of a (sub)schema of ``schema``, resolving its ``$defs``."""
    defs: dict[str, Any] = schema.get("$defs", {})

    def size(s: dict[str, Any], depth: int = 0) -> float:
        if depth > 32:  # a recursive model: unbounded
            return math.inf
        if "$ref" in s:
            return size(defs.get(s["$ref"].rsplit("/", 1)[-1], {}), depth + 1)
        for key in ("anyOf", "oneOf", "allOf"):
            if key in s:
                return max((size(part, depth + 1) for part in s[key]), default=math.inf)
        if "const" in s:
            return _packed(s["const"])
        if "enum" in s:
            return max((_packed(v) for v in s["enum"]), default=1)
        kind = s.get("type")
        if isinstance(kind, list):
            return max((size({**s, "type": k}, depth) for k in kind), default=math.inf)
        if kind in ("integer", "number"):
            return _NUMBER
        if kind in ("boolean", "null"):
            return 1
        if kind == "string":
            if s.get("format") in _SHORT_FORMATS:
                return _HEADER + 64  # an ISO date-time, a UUID...: a few dozen ASCII bytes
            longest = s.get("maxLength")
            return math.inf if longest is None else _HEADER + 4 * longest  # UTF-8: 4 a char
        if kind == "array":
            prefix = [size(p, depth + 1) for p in s.get("prefixItems", [])]
            items = s.get("items")
            if items is None or items is False:
                return _HEADER + sum(prefix)
            most: int | None = s.get("maxItems")
            if most is None:
                return math.inf
            return _HEADER + sum(prefix) + max(0, most - len(prefix)) * size(items, depth + 1)
        if kind == "object":
            total = _HEADER + sum(
                _HEADER + len(name.encode()) + size(p, depth + 1)
                for name, p in s.get("properties", {}).items()
            )
            extra = s.get("additionalProperties")
            if extra not in (None, False):
                return math.inf  # a dict: as many keys as anyone stores
            return total
        return math.inf  # Any: no bound

    return size


def max_encoded_size(model: type[BaseModel]) -> float:
    """An upper bound of the bytes a value of ``model`` takes in msgpack, from its schema
    (``inf`` when a string, list or map has no maximum length)."""
    schema = model.model_json_schema(mode="validation")
    return _sizer(schema)(schema)


def _plan(model: type[BaseModel]) -> tuple[float, list[tuple[str, float]], bool]:
    """How to bound a value of ``model`` quickly: a fixed part, then per unbounded field a
    bound per element (a string's characters, a list's items: the field's ``len()``),
    and whether some field can only be measured by encoding (a dict, ``Any``...)."""
    schema = model.model_json_schema(mode="validation")
    size = _sizer(schema)
    props = schema.get("properties", {})
    fixed: float = _HEADER
    per_element: list[tuple[str, float]] = []
    exact = False
    for name, field in model.model_fields.items():
        prop = props.get(field.alias or name, {})
        bound = size(prop)
        if bound < math.inf:
            fixed += bound
            continue
        options = [p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"]
        if len(options) == 1 and options[0].get("type") == "string":
            per_element.append((name, 4))  # UTF-8: at most 4 bytes a character
        elif len(options) == 1 and options[0].get("type") == "array":
            item = size(options[0].get("items", {}))
            if item < math.inf:
                per_element.append((name, item))
            else:
                exact = True
        else:
            exact = True
        fixed += _HEADER
    return fixed, per_element, exact


class Limit:
    """A byte limit that can change after checks were made with it (run-time settings)."""

    __slots__ = ("bytes",)

    def __init__(self, limit: int) -> None:
        self.bytes = limit


def size_check(reg: ComponentRegistration[Any], limit: Limit) -> Callable[[BaseModel], None]:
    """``World.set_check`` function refusing values of ``reg`` whose msgpack encoding (as a
    sync item) is over ``limit.bytes``, with :class:`ValueTooLarge`.

    It costs a bound from lengths (a string's ``len()``...) per stored value, usually far
    below the limit; only a value near it is encoded to be measured exactly."""
    native = reg.json_native
    fields_of = reg.fields
    fixed, per_element, exact = _plan(reg.model)
    names = tuple(name for name, _ in per_element)
    each = max((e for _, e in per_element), default=0.0)
    fixed += _HEADER * len(names)

    def measure(value: BaseModel) -> None:
        if native:
            fields: Any = tuple(value.__dict__.values())
        else:
            dumped = to_wire(value)
            fields = [dumped[name] for name in fields_of]
        try:
            size = len(encode_item_msgpack((0, fields)))
        except (ValueError, TypeError, OverflowError):
            return  # not encodable at all: the flush leaves it out and says why
        if size > limit.bytes:
            raise ValueTooLarge(
                f"a {reg.name} value of {size:,} bytes encoded is over "
                f"SyncSettings.max_value_bytes ({limit.bytes:,}): no client could be sent it; "
                "store less (or raise the limit, and the clients' max_message_size with it)"
            )

    if exact:
        return measure

    def check(value: BaseModel) -> None:
        attrs = value.__dict__
        n = 0
        try:
            for name in names:
                part = attrs[name]
                if part is not None:
                    n += len(part)
        except TypeError:  # a value without a length where the schema said string / array
            measure(value)
            return
        if fixed + each * n > limit.bytes:
            measure(value)

    return check
