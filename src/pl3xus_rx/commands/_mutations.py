"""MUTATE: a client asks to change one component of one entity. No I/O."""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import BaseModel

from ..protocol import EntityControl, MutateCommand, Status, shown
from ..sync._policy import MutationContext
from ..world import EntityId
from ._core import Core
from ._effects import Reject, validated
from ._quota import charged_size

__all__ = ["Mutations"]


class Mutations:
    """Validates a MUTATE, passes it through the gate, and writes the World (or calls the
    type's handler); the ``ok`` is held until the flush that carries the change. A write to
    a client-spawned entity is charged to its owner's byte quota (what a handler stores is
    the application's business)."""

    def __init__(self, core: Core, invalidate: Any) -> None:
        self.core = core
        self._invalidate = invalidate

    def mutate(self, ctx: MutationContext, command: MutateCommand, now: float) -> None:
        """Handle one MUTATE."""
        core = self.core
        type_name = command.type_name
        reg = core.components.by_name(type_name) if isinstance(type_name, str) else None
        if reg is None:
            raise Reject(
                Status.NOT_FOUND,
                f"{shown(type_name)} is not a synced component; synced: "
                f"{', '.join(core.components.names()) or 'none'}",
            )
        if reg.read_only:
            why = (
                " (control changes only through take/release)" if reg.model is EntityControl else ""
            )
            if reg.read_only_reason:
                why = f": {reg.read_only_reason}"
            raise Reject(Status.FORBIDDEN, f"{reg.name} is read-only for clients{why}")
        value = validated(reg.name, reg.model, command.value)
        entity = core.gate.mutate(ctx, command.entity, reg, value, now)
        conn, req_id = ctx.connection, command.req_id
        try:
            if reg.handler is not None:
                result = core.slow.call(
                    "mutation", reg.name, reg.handler, core.world, ctx, entity, value
                )
                if inspect.isawaitable(result):
                    model = reg.model

                    def done(_: Any) -> None:
                        self._mutated(conn, req_id, model, entity)

                    core.launch(conn, req_id, reg.name, result, done)
                    return
            elif entity in core.ledger.records:  # a spawned entity: its owner pays the growth
                size = charged_size(reg, value)
                core.ledger.check_growth(entity, reg.model, size, core.settings)
                core.world.insert(entity, value)
                core.ledger.resize(entity, reg.model, size)
            else:
                core.world.insert(entity, value)
        except Reject:
            raise
        except Exception as exc:
            core.failed(conn, req_id, reg.name, exc)
            return
        self._mutated(conn, req_id, reg.model, entity)

    def _mutated(self, conn: int, req_id: int, model: type[BaseModel], entity: EntityId) -> None:
        core = self.core
        core.hold_ok(conn, req_id, model, entity)
        reg = core.components.find(model)
        if reg is not None and reg.invalidates:
            for query in reg.invalidates:
                self._invalidate(query)
