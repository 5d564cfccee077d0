"""SPAWN and DESPAWN from clients (both off until the server allows them). No I/O."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from ..exceptions import ValueTooLarge
from ..protocol import CommandFrameError, DespawnCommand, SpawnCommand, Status, shown
from ..sync._policy import MutationContext
from ..sync._registry import ComponentRegistration
from ._core import Core
from ._effects import Reject, validated
from ._gate import OFF
from ._quota import Owner, charged_size

__all__ = ["Spawning"]


class Spawning:
    """Clients create and remove entities, through the gate."""

    def __init__(self, core: Core, invalidate: Any) -> None:
        self.core = core
        self._invalidate = invalidate

    def spawn(self, ctx: MutationContext, command: SpawnCommand) -> None:
        """Handle one SPAWN: every component of a synced, client-writable type and valid;
        the owner's and the server's spawn quotas (before the parent and the policy are
        asked); the parent (if any) through the gate, then the depth limit."""
        core = self.core
        if core.gate.spawn_policy is OFF:
            raise Reject(
                Status.FORBIDDEN,
                "clients may not spawn entities on this server (the server enables it with "
                "allow_spawn)",
            )
        raw = command.components
        if not raw:  # (a map: parse_command saw to that)
            raise CommandFrameError(
                "SPAWN needs a non-empty map of component name to value",
                command.req_id,
                "components",
            )
        values: list[BaseModel] = []
        regs: list[ComponentRegistration[Any]] = []
        for name, payload in raw.items():
            reg = core.components.by_name(name) if isinstance(name, str) else None
            if reg is None:
                raise Reject(Status.NOT_FOUND, f"{shown(name)} is not a synced component")
            if reg.read_only:
                raise Reject(
                    Status.FORBIDDEN, f"{reg.name} is read-only for clients: it cannot be spawned"
                )
            values.append(validated(reg.name, reg.model, payload))
            regs.append(reg)
        ledger, settings = core.ledger, core.settings
        owner = Owner.of(ctx)
        sizes = {
            reg.model: charged_size(reg, value) for reg, value in zip(regs, values, strict=True)
        }
        ledger.check_spawn(owner, sum(sizes.values()), settings)
        parent = core.gate.spawn(ctx, command.parent, values)
        ledger.check_depth(parent, settings)
        try:
            entity = core.world.spawn(*values, parent=parent)
        except ValueTooLarge as exc:
            raise Reject(Status.VALIDATION_ERROR, str(exc)) from exc
        except Exception as exc:
            core.failed(ctx.connection, command.req_id, "spawn", exc)
            return
        if not core.gate.spawned(ctx, entity):
            core.world.despawn(entity)
            raise Reject(
                Status.FORBIDDEN,
                "cannot spawn components this identity may not see: "
                + ", ".join(reg.name for reg in regs if reg.visibility is not None),
            )
        ledger.record(entity, owner, sizes)
        core.reply(
            ctx.connection,
            command.req_id,
            Status.OK,
            body={"entity": int(entity)},
            after=regs[0].model,
            entity=entity,
            held=True,
        )
        self._invalidate_for(regs)

    def despawn(self, ctx: MutationContext, command: DespawnCommand) -> None:
        """Handle one DESPAWN, through the gate."""
        core = self.core
        if core.gate.despawn_policy is OFF:
            raise Reject(
                Status.FORBIDDEN,
                "clients may not despawn entities on this server (the server enables it "
                "with allow_despawn)",
            )
        entity = core.gate.despawn(ctx, command.entity)
        world = core.world
        regs = [reg for reg in core.components if world.has(entity, reg.model)]
        try:
            world.despawn(entity)
        except Exception as exc:
            core.failed(ctx.connection, command.req_id, "despawn", exc)
            return
        core.ledger.catch_up()  # the entity and those below leave their owners' accounts
        core.reply(ctx.connection, command.req_id, Status.OK, held=True)
        self._invalidate_for(regs)

    def _invalidate_for(self, regs: Iterable[ComponentRegistration[Any]]) -> None:
        queries = {query for reg in regs for query in reg.invalidates}
        for query in queries:
            self._invalidate(query)
