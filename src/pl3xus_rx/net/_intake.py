"""What one incoming frame means to a :class:`~pl3xus_rx.net.Network`.

A frame is decoded (as untrusted input when a client sent it), counted by kind, and then
either handed to the layer above (sync and command frames: ``FrameKind.SUBSCRIBE`` and up)
or taken by the network itself: a typed message validated and delivered to its
subscribers, a WELCOME, an ERROR. Bad input is answered with an ERROR frame naming what
was wrong, counted, and logged at most once per ``warning_interval`` per connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .._rx import Dispatcher, SafeSubject
from ..exceptions import FrameError, ProtocolError
from ..protocol import (
    FIRST_EXTENSION_KIND,
    CommandFrameError,
    ErrorFrame,
    FrameKind,
    LoneSurrogate,
    MessageFrame,
    RefreshCommand,
    Status,
    TypeTable,
    WelcomeFrame,
    parse_command,
    parse_frame,
    undecodable_text_reply,
    validate_message,
)
from ._connection import Connection
from ._events import ConnectionId, NetworkData
from ._settings import NetworkSettings

__all__ = ["Intake", "kind_name"]

logger = logging.getLogger("pl3xus_rx.net")

_KIND_NAMES: dict[int | None, str] = {int(k): k.name.lower() for k in FrameKind}
_KIND_NAMES[None] = "other"


def kind_name(kind: int | None) -> str:
    """The name a frame kind is counted under (``"other"`` for unknown ones)."""
    return _KIND_NAMES.get(kind, "other")


class Intake:
    """The receiving side of a network's connections.

    Args:
        types: The registered message types.
        subjects: Message type name -> the subject its subscribers share.
        dispatcher: Runs subscribers on the event loop, never on the socket reader.
        settings: The network's settings, as they are now.
        count: Adds to a network counter.
        emit_error: Emits an ``Error`` event.
        send_error: Sends an ERROR frame to a connection.
        extension: Takes the frames of the layer above as ``(connection, binary, frame)``.
        refresh: Takes a parsed REFRESH (a new credential for the connection).
    """

    def __init__(
        self,
        types: TypeTable,
        subjects: dict[str, SafeSubject[Any]],
        dispatcher: Dispatcher,
        settings: Callable[[], NetworkSettings],
        count: Callable[[str], None],
        emit_error: Callable[[ConnectionId | None, Exception], None],
        send_error: Callable[[Connection, dict[str, Any]], None],
        extension: Callable[[ConnectionId, bool, list[Any]], None] | None,
        refresh: Callable[[Connection, RefreshCommand], None],
    ) -> None:
        self.kinds: dict[Any, int] = {}
        """Frames decoded, by kind (``None``: not a known kind)."""
        self._types = types
        self._subjects = subjects
        self._dispatcher = dispatcher
        self._settings = settings
        self._count = count
        self._emit_error = emit_error
        self._send_error = send_error
        self._extension = extension
        self._refresh = refresh

    def receive(self, conn: Connection, data: bytes | str) -> None:
        """Decode, check and deliver one incoming frame (called by the connection)."""
        debug = logger.isEnabledFor(logging.DEBUG)
        if debug:
            logger.debug("Message read: connection %s, %d bytes", conn.id, len(data))
        try:
            obj = conn.codec.decode(data, untrusted=not conn.outgoing)
            kind = obj[0] if type(obj) is list and obj and type(obj[0]) is int else None
            if kind not in _KIND_NAMES:
                kind = None
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            handler = self._extension
            if (
                handler is not None
                and type(obj) is list
                and obj
                and type(obj[0]) is int
                and obj[0] >= FIRST_EXTENSION_KIND
            ):
                if obj[0] == FrameKind.REFRESH and not conn.outgoing:
                    self._take_refresh(conn, obj)
                else:
                    handler(conn.id, conn.codec.binary, obj)
                return
            frame = parse_frame(obj)
            if isinstance(frame, MessageFrame):
                entry, value = validate_message(self._types, frame)
                self._count("messages_received")
                self._dispatcher.post(
                    self._subjects[entry.name].on_next, NetworkData(conn.id, value)
                )
                if debug:
                    logger.debug(
                        "Message deserialized and sent to pl3xus_rx: connection %s, %s",
                        conn.id,
                        entry.name,
                    )
            elif isinstance(frame, WelcomeFrame):
                if conn.welcome is None or conn.welcome.done():
                    raise FrameError("unexpected WELCOME: only a server sends it, once")
                conn.welcome.set_result(frame)
            elif isinstance(frame, ErrorFrame):
                self._count("errors_received")
                self._peer_error(conn, str(frame.error))
                self._emit_error(conn.id, frame.error)
        except LoneSurrogate as exc:
            # Decoded, but with text no codec can carry on: a command is answered, naming
            # the field; anything else is refused whole.
            reply = undecodable_text_reply(exc.frame, exc.where)
            self.bad_input(conn, exc, answer=reply is None)
            if reply is not None:
                conn.enqueue(conn.codec.encode(reply))
        except ProtocolError as exc:
            self.bad_input(conn, exc)
        except Exception as exc:  # a bug must not kill the reader
            logger.exception("connection %s: internal error handling a frame", conn.id)
            self.bad_input(conn, ProtocolError(f"internal error: {type(exc).__name__}"))

    def _take_refresh(self, conn: Connection, frame: list[Any]) -> None:
        """A REFRESH: its shape checked here (a bad one is answered like a bad command)."""
        try:
            command = parse_command(frame)
        except CommandFrameError as exc:
            if exc.req_id is None:
                raise
            self.bad_input(conn, exc, answer=False)
            error = {"loc": exc.loc, "msg": exc.message, "type": "bad_frame"}
            reply = [FrameKind.REPLY, exc.req_id, Status.VALIDATION_ERROR.value, exc.message]
            conn.enqueue(conn.codec.encode([*reply, {"errors": [error]}]))
            return
        assert isinstance(command, RefreshCommand)
        self._refresh(conn, command)

    def _peer_error(self, conn: Connection, text: str) -> None:
        """Log an ERROR a peer sent: cut short, and at most once per ``warning_interval``
        per connection (a peer's error reports must not fill the log)."""
        now = time.monotonic()
        if now - conn.last_error_log < self._settings().warning_interval:
            conn.errors_unlogged += 1
            return
        quiet, conn.errors_unlogged = conn.errors_unlogged, 0
        conn.last_error_log = now
        logger.warning(
            "connection %s reported an error: %r%s",
            conn.id,
            text[:500],
            f" ({quiet} more error reports not logged since the last one)" if quiet else "",
        )

    def bad_input(self, conn: Connection, exc: ProtocolError, *, answer: bool = True) -> None:
        """Count, log (rate-limited), report and (``answer``) answer one bad frame from
        ``conn`` with an ERROR frame."""
        conn.bad_frames += 1
        self._count("bad_frames")
        # One warning per warning_interval per connection, saying how many were not logged
        # (a client sending garbage must not fill the log).
        now = time.monotonic()
        if now - conn.last_bad_frame_log >= self._settings().warning_interval:
            quiet, conn.bad_frames_unlogged = conn.bad_frames_unlogged, 0
            conn.last_bad_frame_log = now
            logger.warning(
                "Bad frame from connection %s: %r%s",
                conn.id,
                exc.message[:500],
                f" ({quiet} more bad frames not logged since the last warning)" if quiet else "",
            )
        else:
            conn.bad_frames_unlogged += 1
        self._emit_error(conn.id, exc)
        if answer:
            self._send_error(conn, exc.to_wire())
