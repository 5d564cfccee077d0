"""Validating rows of field values without building model instances (``World.update_many``).

No I/O. A row is ``(entity, value, value, ...)``: the values of some fields of one component
type, in a chosen order. A whole batch of rows is validated in one pydantic-core call by a
validator compiled from the type's own field schemas (so field constraints, coercions and
``field_validator``s apply exactly as when the model is built), and the validated values are
what the World stores for a flat type: no instance is made.

A type whose validation is more than its fields (a ``model_validator``, a custom
``__init__``, a root model) has no row validator: its rows are validated by building the
model, as ``insert`` would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic_core import CoreConfig, CoreSchema, SchemaValidator, ValidationError, core_schema

__all__ = ["field_schemas", "named_errors", "row_validator"]


def field_schemas(model: type[BaseModel]) -> tuple[dict[str, CoreSchema], Any, CoreConfig | None]:
    """``model``'s field schemas by name, its definitions (or ``None``) and its config; empty
    when its validation is more than its fields (see the module docstring)."""
    schema: Any = model.__pydantic_core_schema__
    definitions = None
    if schema.get("type") == "definitions":
        definitions = schema.get("definitions")
        schema = schema.get("schema")
    decorators = model.__pydantic_decorators__
    if (
        not isinstance(schema, dict)
        or schema.get("type") != "model"
        or schema.get("custom_init")
        or schema.get("root_model")
        or schema.get("post_init")
        or decorators.model_validators
        or decorators.root_validators
        or model.__pydantic_post_init__ is not None
    ):
        return {}, None, None
    fields_schema = schema.get("schema", {})
    if fields_schema.get("type") != "model-fields" or fields_schema.get("computed_fields"):
        return {}, None, None
    fields = {name: f["schema"] for name, f in fields_schema.get("fields", {}).items()}
    return fields, definitions, schema.get("config")


def row_validator(model: type[BaseModel], names: Sequence[str]) -> SchemaValidator | None:
    """A validator of a list of ``(entity, *values of names)`` rows giving a list of tuples
    of the validated values (entity first); ``None`` when ``model`` has no field-only
    validation (see the module docstring)."""
    fields, definitions, config = field_schemas(model)
    if not fields:
        return None
    items: list[CoreSchema] = [core_schema.int_schema(strict=True)]
    items.extend(fields[name] for name in names)
    schema: CoreSchema = core_schema.list_schema(core_schema.tuple_schema(items))
    if definitions:
        schema = core_schema.definitions_schema(schema, definitions)
    return SchemaValidator(schema, config)


def named_errors(
    exc: ValidationError, model: type[BaseModel], names: Sequence[str]
) -> ValidationError:
    """``exc`` (from a :func:`row_validator`) with each error's place named ``(row index,
    field name)`` instead of ``(row index, position in the row)``."""
    labels = ("entity", *names)
    details: list[Any] = []
    for error in exc.errors():
        loc = list(error["loc"])
        if len(loc) >= 2 and isinstance(loc[1], int) and 0 <= loc[1] < len(labels):
            loc[1] = labels[loc[1]]
        detail: dict[str, Any] = {"type": error["type"], "loc": tuple(loc), "input": error["input"]}
        if "ctx" in error:
            detail["ctx"] = error["ctx"]
        details.append(detail)
    try:
        return ValidationError.from_exception_data(f"{model.__name__} rows", details)
    except (TypeError, KeyError, ValueError):  # (an error type it cannot rebuild: as it was)
        return exc
