"""Delivery: how a frame reaches one of the server's clients.

A client is either a connection of the server's own :class:`~pl3xus_rx.net.Network` (sent
in its codec, msgpack or JSON) or a client of a gateway (scale-out: msgpack, handed to the
sink its gateway gave). The server, its flushes and its notifications send through here and
never ask which kind a client is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .net import Network
from .net._events import ConnectionId
from .protocol import FrameKind, WireData
from .security import Identity
from .sync._wire import encode_frame, encode_reply

__all__ = ["Delivery", "RemoteSink"]

logger = logging.getLogger(__name__)

RemoteSink = Callable[[int, bytes], None]
"""``sink(connection, msgpack_frame)``: how a frame reaches a gateway's client."""


class Delivery:
    """The server's clients, direct and through gateways, and how to reach each.

    Args:
        net: The server's network (its connections are the direct clients).
    """

    def __init__(self, net: Network) -> None:
        self.net = net
        self.remote: dict[int, tuple[RemoteSink, Identity]] = {}
        """Clients of gateways: connection -> (where its frames go, its identity)."""
        self.broadcast_sink: Callable[[bytes], None] | None = None
        """Also handed every frame broadcast to all (an authority tells its gateways)."""
        self._direct = send_raw = net.sender()
        remote = self.remote

        def send_data(connection: int, data: WireData) -> None:
            if send_raw(connection, data) is None and connection in remote:  # a gateway's
                sink = remote[connection][0]
                sink(connection, b"".join(data) if isinstance(data, tuple) else data)  # type: ignore[arg-type]

        self.send_data = send_data
        """``send_data(connection, encoded_frame)`` (the flush's hot path); a connection that
        is gone is skipped."""

    def flush_sink(self) -> Callable[[int, WireData], object]:
        """What a flush hands its frames to: :attr:`send_data`, or while no gateway has
        clients here, the network's own sender (one call fewer per frame)."""
        return self._direct if not self.remote else self.send_data

    def knows(self, connection: int) -> bool:
        """Whether ``connection`` is a client now (direct or through a gateway)."""
        return connection in self.remote or self.net.has_connection(ConnectionId(connection))

    def identity_of(self, connection: int) -> Identity:
        """Who the client on ``connection`` is.

        Raises:
            ConnectionNotFound: no such client.
        """
        remote = self.remote.get(connection)
        if remote is not None:
            return remote[1]
        return self.net.identity_of(ConnectionId(connection))

    def send_frame(self, connection: int, frame: list[Any]) -> None:
        """Encode ``frame`` for ``connection`` and send it (a client that left is skipped; a
        frame that cannot be encoded is logged and dropped, a REPLY becomes an
        ``internal_error`` REPLY)."""
        remote = self.remote.get(connection)  # a gateway's client: msgpack to its sink
        cid = ConnectionId(connection)
        if remote is None and not self.net.has_connection(cid):
            return
        binary = True if remote is not None else self.net.is_binary(cid)
        if frame[0] == FrameKind.REPLY:
            data = encode_reply(binary, frame)  # (never fails: an error REPLY instead)
        else:
            try:
                data = encode_frame(binary, frame)
            except (ValueError, TypeError, OverflowError) as exc:
                logger.error("a %s frame could not be encoded and was dropped: %s", frame[0], exc)
                return
        if remote is not None:
            remote[0](connection, data)  # type: ignore[arg-type]
        else:
            self.net.send_raw(cid, data)

    def broadcast_frame(self, frame: list[Any]) -> None:
        """Send ``frame`` to every client (each encoding made once)."""
        net = self.net
        encoded: dict[bool, bytes | str] = {}
        try:
            for binary in {net.is_binary(cid) for cid in net.connections}:
                encoded[binary] = encode_frame(binary, frame)
            remote = encode_frame(True, frame) if self.broadcast_sink is not None else b""
        except (ValueError, TypeError, OverflowError) as exc:
            logger.error("a %s frame could not be encoded and was dropped: %s", frame[0], exc)
            return
        for cid in net.connections:
            net.send_raw(cid, encoded[net.is_binary(cid)])
        if self.broadcast_sink is not None:
            self.broadcast_sink(remote)  # type: ignore[arg-type]

    def send_encoded(
        self,
        encoded: dict[bool, bytes | str],
        *,
        connection: int | None = None,
        identity: str | None = None,
    ) -> int:
        """Send a frame already encoded both ways (``encoded[binary]``) to one
        ``connection``, to every connection of the named (not anonymous) ``identity``, or to
        every client; returns how many it went to."""
        net, remote = self.net, self.remote
        reached = 0
        if connection is not None:
            chosen = [connection] if self.knows(connection) else []
        elif identity is not None:
            chosen = [
                c
                for c in (*net.connections, *remote)
                if (who := self.identity_of(c)).name == identity and not who.anonymous
            ]
        else:
            chosen = list(net.connections)
            if self.broadcast_sink is not None:  # gateways' clients: once, for all
                self.broadcast_sink(encoded[True])  # type: ignore[arg-type]
                reached = len(remote)
        for c in chosen:
            sink = remote.get(c)
            if sink is not None:
                sink[0](c, encoded[True])  # type: ignore[arg-type]
            else:
                net.send_raw(ConnectionId(c), encoded[net.is_binary(ConnectionId(c))])
        return reached + len(chosen)
