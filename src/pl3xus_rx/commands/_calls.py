"""Requests, queries and one-way messages: a client calls a handler the application
registered. No I/O.

A REQUEST and a QUERY are answered with the handler's response (``ok``) or its chosen
refusal; a SEND has no answer unless it is refused (a ``message_rejected`` notice). A
targeted REQUEST or SEND passes the gate for its entity; a QUERY has no target and keeps its
query policy.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from ..exceptions import DuplicateRegistration
from ..protocol import (
    FrameKind,
    NoticeKind,
    QueryCommand,
    RequestCommand,
    SendCommand,
    Status,
    schema_hash,
    sent_name,
    shown,
    to_wire,
)
from ..sync._builders import MessageRegistration, QueryRegistration, RequestRegistration
from ..sync._policy import Authorized, Denied, MutationContext
from ._core import Core
from ._effects import NOT_AUTHORIZED, Reject, answer_of, decide, validated

__all__ = ["Calls"]

logger = logging.getLogger(__name__)

R_ = TypeVar("R_")


def _registered(table: Mapping[str, R_], what: str, type_name: Any) -> R_:
    reg = table.get(type_name) if isinstance(type_name, str) else None
    if reg is None:
        raise Reject(
            Status.NOT_FOUND,
            f"unknown {what} type {shown(type_name)}; registered: {', '.join(table) or 'none'}",
        )
    return reg


class Calls:
    """The registered requests, queries and one-way messages, and their calls."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.requests: dict[str, RequestRegistration[Any]] = {}
        self.queries: dict[str, QueryRegistration[Any]] = {}
        self.messages: dict[str, MessageRegistration] = {}
        self._tables: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    # ------------------------------------------------------------------ registration

    def add_request(self, reg: RequestRegistration[Any]) -> None:
        """Register a request type (see :class:`RequestBuilder`)."""
        if reg.name in self.requests:
            raise DuplicateRegistration(f"request {reg.name!r} is already registered")
        self.requests[reg.name] = reg

    def add_message(self, reg: MessageRegistration) -> None:
        """Register a one-way message type (see :class:`MessageBuilder`)."""
        if reg.name in self.messages:
            raise DuplicateRegistration(f"message {reg.name!r} is already registered")
        self.messages[reg.name] = reg

    def add_query(self, reg: QueryRegistration[Any]) -> None:
        """Register a query type (see :class:`QueryBuilder`)."""
        if reg.name in self.queries:
            raise DuplicateRegistration(f"query {reg.name!r} is already registered")
        self.queries[reg.name] = reg

    def wire_tables(self) -> dict[str, Any]:
        """The welcome's ``requests``, ``queries`` and ``one_way`` tables (computed once per
        set of registrations: every handshake sends them, and hashing a schema costs ~1 ms)."""
        key = (len(self.requests), len(self.queries), len(self.messages))
        if self._tables is None or self._tables[0] != key:
            self._tables = (key, self._build_tables())
        return self._tables[1]

    def _build_tables(self) -> dict[str, Any]:
        return {
            "requests": [
                [r.name, schema_hash(r.model), schema_hash(r.response), r.targeted]
                for r in self.requests.values()
            ],
            "queries": [
                [q.name, schema_hash(q.model), schema_hash(q.response)]
                for q in self.queries.values()
            ],
            "one_way": [[m.name, schema_hash(m.model), m.targeted] for m in self.messages.values()],
        }

    # ------------------------------------------------------------------ requests

    def request(self, ctx: MutationContext, command: RequestCommand, now: float) -> None:
        """Handle one REQUEST."""
        reg = _registered(self.requests, "request", command.type_name)
        request = validated(reg.name, reg.model, command.payload)
        args: tuple[Any, ...] = (self.core.world, ctx, request)
        if reg.targeted:
            entity = self.core.gate.targeted(
                FrameKind.REQUEST, ctx, command.entity, reg.name, reg.policy, request, now
            )
            args = (self.core.world, ctx, entity, request)
        self._call(ctx.connection, command.req_id, reg, args)

    def query(self, ctx: MutationContext, command: QueryCommand) -> None:
        """Handle one QUERY (no target: its query policy decides)."""
        reg = _registered(self.queries, "query", command.type_name)
        if reg.policy is not None:
            what = f"the policy of query {reg.name}"
            decision = decide(self.core.faults, what, reg.policy, self.core.world, ctx)
            if not isinstance(decision, Authorized):
                reason = decision.reason if isinstance(decision, Denied) else NOT_AUTHORIZED
                raise Reject(Status.FORBIDDEN, f"query {reg.name}: {reason}")
        query = validated(reg.name, reg.model, command.params)
        world = self.core.world
        args = (world, ctx, query) if reg.with_context else (world, query)
        self._call(ctx.connection, command.req_id, reg, args)

    def _call(
        self,
        conn: int,
        req_id: int,
        reg: RequestRegistration[Any] | QueryRegistration[Any],
        args: tuple[Any, ...],
    ) -> None:
        core = self.core
        kind = "request" if isinstance(reg, RequestRegistration) else "query"
        try:
            result = core.slow.call(kind, reg.name, reg.handler, *args)
        except Exception as exc:
            core.failed(conn, req_id, reg.name, exc)
            return
        if inspect.isawaitable(result):

            def done(value: Any) -> None:
                self._respond(conn, req_id, reg, value)

            core.launch(conn, req_id, reg.name, result, done)
        else:
            self._respond(conn, req_id, reg, result)

    def _respond(
        self,
        conn: int,
        req_id: int,
        reg: RequestRegistration[Any] | QueryRegistration[Any],
        result: Any,
    ) -> None:
        core = self.core
        if not isinstance(result, reg.response):
            wrong = TypeError(
                f"handler returned {type(result).__name__}, not {reg.response.__name__}"
            )
            core.failed(conn, req_id, reg.name, wrong)
            return
        core.reply(conn, req_id, Status.OK, body={"value": to_wire(result)}, held=True)
        if isinstance(reg, RequestRegistration):
            for query in reg.invalidates:
                self.invalidate(query)

    # ------------------------------------------------------------------ one-way messages

    def send(self, ctx: MutationContext, command: SendCommand, now: float) -> None:
        """Handle one SEND: refusals become a ``message_rejected`` notice."""
        core = self.core
        try:
            reg = _registered(self.messages, "message", command.type_name)
            message = validated(reg.name, reg.model, command.payload)
            args: tuple[Any, ...] = (core.world, ctx, message)
            if reg.targeted:
                entity = core.gate.targeted(
                    FrameKind.SEND, ctx, command.entity, reg.name, reg.policy, message, now
                )
                args = (core.world, ctx, entity, message)
            try:
                result = core.slow.call("message", reg.name, reg.handler, *args)
            except Exception as exc:
                answer = answer_of(exc)
                if answer is not None:
                    raise answer from None
                logger.error("handler for message %s failed", reg.name, exc_info=exc)
                raise Reject(Status.INTERNAL_ERROR, f"the handler for {reg.name} failed") from exc
            if inspect.isawaitable(result):
                core.launch(ctx.connection, None, reg.name, result, lambda _: None)
        except Reject as rejection:
            body = {
                "type": sent_name(command.type_name),
                "entity": command.entity
                if command.entity is None or type(command.entity) is int
                else shown(command.entity),
                "status": rejection.status.value,
                "reason": rejection.message,
                **rejection.body,
            }
            core.send(ctx.connection, [FrameKind.NOTICE, NoticeKind.MESSAGE_REJECTED, body])

    # ------------------------------------------------------------------ invalidation

    def invalidate(self, query: type[BaseModel], keys: Iterable[BaseModel] | None = None) -> None:
        """Tell every client to refetch ``query`` (only the given parameter sets, if any).

        Raises:
            KeyError: ``query`` is not a registered query.
        """
        name = next((q.name for q in self.queries.values() if q.model is query), None)
        if name is None:
            raise KeyError(f"{query.__name__} is not a registered query")
        wire_keys = None if keys is None else [to_wire(k) for k in keys]
        self.core.broadcast([FrameKind.INVALIDATE, name, wire_keys])
