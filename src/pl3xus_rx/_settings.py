"""The base of every settings object: immutable, validated, errors that name the field."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .exceptions import SettingsError

__all__ = ["CheckedSettings"]


class CheckedSettings(BaseModel):
    """Frozen, no unknown keys; a bad value raises :class:`SettingsError` naming the field,
    the rule and the value given."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<settings>'}: {e['msg']}"
                f" (got {e.get('input')!r})"
                for e in exc.errors()
            )
            raise SettingsError(f"invalid {type(self).__name__}: {problems}") from exc
