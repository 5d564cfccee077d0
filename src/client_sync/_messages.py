"""The client's plain and one-way messages, and the logs of what the server published. A
room of :class:`~client_sync.SyncProvider`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from typing import Any, TypeVar, cast

import reactivex
from pydantic import BaseModel
from reactivex import operators as ops

from pl3xus_rx.exceptions import CommandRejected, CommandTimeout, ConnectionLost
from pl3xus_rx.net import NetworkData
from pl3xus_rx.protocol import LAST_MESSAGE_QUERY, from_wire, to_wire

from ._commands import Commands
from .signal import Signal, WritableSignal

__all__ = ["Messages"]

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)


class Messages(Commands):
    """Messages to and from the server."""

    _one_way: set[str]
    _tasks: set[asyncio.Task[Any]]
    _derived: dict[Hashable, Signal[Any]]

    def send(self, message: BaseModel, *, entity: int | None = None) -> None:
        """Send a typed message to the server, without waiting for an answer.

        If the server registered the type with ``server.message(T)`` (an authorized one-way
        message, optionally targeted at ``entity``), a rejection arrives later as a
        ``message_rejected`` notice (and on :attr:`errors`); otherwise it goes as a plain
        message (``server.register_message``).

        Raises:
            ConnectionLost: not connected.
        """
        cid = self._cid
        if cid is None or not self._net.has_connection(cid):
            raise ConnectionLost(f"not connected to {self.url}; the message was not sent")
        name = self.registry.message_name(type(message))
        if name in self._one_way:
            self._net.send_frame(cid, self._session.one_way(name, entity, to_wire(message)))
            return
        if self._net.message_types.find_model(type(message)) is None:
            self._net.register_message(type(message))
        self._net.send(cid, message)

    def message_log(self, model: type[T], *, limit: int = 100) -> Signal[tuple[T, ...]]:
        """The plain messages of type ``model``, oldest first, at most ``limit``: it starts
        with the last one the server published (``SyncServer.publish``) before this client
        was watching, then appends each that arrives. Live while observed; shared per
        (type, limit).

        Raises:
            ValueError: ``limit`` is below 1.
        """
        if limit < 1:
            raise ValueError(f"limit must be 1 or more, got {limit}")
        key = ("log", model, limit)
        signal = self._derived.get(key)
        if signal is None:
            signal = self._derived[key] = self._message_log(model, limit)
        return cast(Signal[tuple[T, ...]], signal)

    def last_message(self, model: type[T]) -> Signal[T | None]:
        """The latest plain message of type ``model`` (the server's last published one
        until a new one arrives), or ``None``. Live while observed."""
        key = ("last", model)
        signal = self._derived.get(key)
        if signal is None:
            signal = self._derived[key] = self.message_log(model, limit=1).map(
                lambda log: log[-1] if log else None
            )
        return cast(Signal[T | None], signal)

    def _message_log(self, model: type[T], limit: int) -> Signal[tuple[T, ...]]:
        live: list[reactivex.abc.DisposableBase] = []
        seen_live = [False]

        def append(message: T) -> None:
            seen_live[0] = True
            log.set((*log.get(), message)[-limit:])

        async def fetch_last(name: str) -> None:
            try:
                body = await self._command(
                    lambda: self._session.query(LAST_MESSAGE_QUERY, {"type": name}), None
                )
            except (CommandRejected, ConnectionLost, CommandTimeout) as exc:
                logger.info("no last %s message from the server: %s", name, exc)
                return
            value = (body.get("value") or {}).get("value")
            if value is not None and not seen_live[0]:  # a live one is newer
                log.set((*log.get(), from_wire(model, value))[-limit:])

        def start() -> None:
            stream = self.messages(model)
            live.append(stream.subscribe(append))
            name = self._net.message_types.by_model(model).name
            if self._cid is not None:
                task = asyncio.get_running_loop().create_task(fetch_last(name))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        def stop() -> None:
            while live:
                live.pop().dispose()

        log: WritableSignal[tuple[T, ...]] = WritableSignal(
            (), on_first_subscribe=start, on_last_dispose=stop
        )
        return log

    def messages(self, model: type[T]) -> reactivex.Observable[T]:
        """Plain messages of type ``model`` from the server."""
        if self._net.message_types.find_model(model) is None:
            self._net.register_message(model)

        def unwrap(data: NetworkData[T]) -> T:
            return data.message

        return self._net.messages(model).pipe(ops.map(unwrap))
