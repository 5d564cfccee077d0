"""What a type's ``.history(...)`` keeps, checked when it is registered. No I/O.

(Apart from the store, ``_history``, so that the registry can check a builder's arguments
without importing the store that reads the registry.)
"""

from __future__ import annotations

from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from ..protocol import EntityControl

__all__ = ["MAX_HISTORY_SECONDS", "HistorySpec", "history_spec"]

MAX_HISTORY_SECONDS = 30 * 86400.0
"""The longest a type may keep history, and the longest a query may ask for (30 days)."""

_NUMERIC = (int, float, bool)


@dataclass(frozen=True, slots=True)
class HistorySpec:
    """What one type keeps: ``seconds`` of it; ``fields`` (numeric, in the model's order),
    or ``None`` for whole values."""

    seconds: float
    fields: tuple[str, ...] | None


def _numeric(annotation: Any) -> bool:
    args = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    args = tuple(a for a in args if a is not NoneType)
    return bool(args) and all(a in _NUMERIC for a in args)


def history_spec(
    model: type[BaseModel], seconds: float, fields: tuple[str, ...] | None
) -> HistorySpec:
    """Check a builder's ``.history(...)`` arguments.

    Raises:
        ValueError: ``seconds`` not in (0, 30 days], a field the model lacks, or one that
            is not numeric (int, float or bool, optionally ``None``).
    """
    if not (isinstance(seconds, int | float) and 0 < seconds <= MAX_HISTORY_SECONDS):
        raise ValueError(
            f"history of {model.__name__}: seconds must be > 0 and at most "
            f"{MAX_HISTORY_SECONDS:g}, got {seconds!r}"
        )
    if model is EntityControl:
        raise ValueError("EntityControl keeps no history (who holds control is live state)")
    if fields is not None:
        known = model.model_fields
        if not fields:
            raise ValueError(f"history of {model.__name__}: fields is empty (None: whole values)")
        for name in fields:
            info = known.get(name)
            if info is None:
                raise ValueError(
                    f"history of {model.__name__}: it has no field {name!r} "
                    f"(fields: {', '.join(known)})"
                )
            if not _numeric(info.annotation):
                raise ValueError(
                    f"history of {model.__name__}: field {name!r} is not numeric "
                    "(int, float or bool); keep whole values with fields=None"
                )
        order = list(known)
        fields = tuple(sorted(set(fields), key=order.index))
    return HistorySpec(float(seconds), fields)
