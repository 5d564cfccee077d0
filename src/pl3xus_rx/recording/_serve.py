"""A recording served as a read-only server: the same protocol, driven from the file.

:class:`ReplayServer` drives a :class:`~pl3xus_rx.SyncServer`'s World from a recording,
as a gateway's is driven from NATS, so DevTools, ``pl3xus-rx inspect``, dashboards and any
client work unchanged. Clients play, pause, seek and set the speed with the built-in
request ``pl3xus.replay``; the built-in read-only queries (DevTools',
``pl3xus.last_message``) are answered; every other command is refused ``forbidden``
(``read-only replay``). Frames carry the recorded time as their ``as_of``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..devtools import DEVTOOLS_QUERIES
from ..net import ConnectionId
from ..protocol import (
    LAST_MESSAGE_QUERY,
    REPLAY_REQUEST,
    FrameKind,
    NoticeKind,
    Recording,
    ReplayControl,
    ReplayState,
    Status,
    field_errors,
    shown,
)
from ..record_source import FileSource
from ._replay import Replayer

if TYPE_CHECKING:
    from ..server import SyncServer

__all__ = ["ReplayServer", "open_recording"]

logger = logging.getLogger(__name__)

_REPLY = int(FrameKind.REPLY)
_REQUEST = int(FrameKind.REQUEST)
_SEND = int(FrameKind.SEND)
_NOTICE = int(FrameKind.NOTICE)
_QUERY = int(FrameKind.QUERY)
LOCAL_QUERIES = frozenset((LAST_MESSAGE_QUERY, *DEVTOOLS_QUERIES))
"""Queries a replay server answers itself: built in, read-only, about what it serves."""
READ_ONLY = "read-only replay"
"""The reason every command but ``pl3xus.replay`` is refused with."""
MIN_SPEED, MAX_SPEED = 0.01, 1000.0
MAX_WAITING_SEEKS = 1000
"""The most seek requests waiting for the next seek (beyond: refused, ask again)."""


def open_recording(path: str | os.PathLike[str]) -> Recording:
    """Open a recording file (read by offset, never whole; it stays open while the
    :class:`~pl3xus_rx.protocol.Recording` lives).

    Raises:
        RecordingUnreadable: not a recording, or a newer format.
        RecordingError: the file cannot be opened.
    """
    return FileSource.read_file(path)


class ReplayServer:
    """Serves ``recording`` through ``server`` (which has the recorded types registered
    and should have nothing else changing its World).

    Args:
        server: The server to drive.
        recording: What it serves.
        speed: Recording seconds per real second.
        start: The first instant shown (default: the recording's start).
        playing: Whether it plays at once (else paused at ``start``).
        loop: Start again from the beginning at the end (else pause there).
        tick: Seconds between steps of play.
        clock: Monotonic time.
        control_roles: Who may play, pause, seek and set the speed (``status`` is open to
            all): an identity with one of these roles. ``None`` (the default): every
            client, fit for a replay on this machine (``pl3xus-rx replay`` admits
            loopback clients only); give roles when the server authenticates.
    """

    def __init__(
        self,
        server: SyncServer,
        recording: Recording,
        *,
        speed: float = 1.0,
        start: float | None = None,
        playing: bool = True,
        loop: bool = False,
        tick: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        control_roles: tuple[str, ...] | None = None,
    ) -> None:
        self.server = server
        self.recording = recording
        self.replayer = Replayer(recording, server.world, server.registry)
        self.control_roles = control_roles
        self.speed = _clamp_speed(speed)
        self.playing = playing
        self.loop = loop
        self.tick = tick
        self._clock = clock
        self._last = clock()
        self._task: asyncio.Task[None] | None = None
        self._seeks: list[tuple[int, int]] = []  # (connection, req_id) of waiting seeks
        self._seek_to: float | None = None
        self._seek_handle: asyncio.TimerHandle | None = None
        self._seek_free_at = 0.0
        if start is not None and not math.isfinite(start):
            raise ValueError(f"start must be a finite time, not {start!r}")
        self.replayer.seek(self.replayer.start if start is None else start)
        # (registered for the WELCOME's request table; the forwarding below answers it)
        server.request(ReplayControl).name(REPLAY_REQUEST).returns(ReplayState).register(
            lambda world, ctx, command: self.control(command)
        )
        server.forward_commands(self._command)
        server.as_of_source = lambda: (self.replayer.position, 0.0)
        server.welcome_info["replay"] = {
            "start": recording.start,
            "end": recording.end,
            "file": os.path.basename(recording.name),
            "source": recording.header.source,
        }

    def state(self) -> ReplayState:
        """Where the replay is now."""
        replayer = self.replayer
        return ReplayState(
            position=replayer.position,
            start=replayer.start,
            end=replayer.end,
            playing=self.playing,
            speed=self.speed,
        )

    def control(self, command: ReplayControl) -> ReplayState:
        """Play, pause, seek or set the speed (``status``: change nothing).

        Raises:
            ValueError: an unknown action, or one without its argument.
        """
        action = command.action
        if action == "play":
            if self.replayer.position >= self.replayer.end:
                self.replayer.seek(self.replayer.start)
            self.playing = True
            self._last = self._clock()
        elif action == "pause":
            self.step()
            self.playing = False
        elif action == "seek":
            if command.at is None:
                raise ValueError("seek needs at (a recording time)")
            self.replayer.seek(command.at)
            self._last = self._clock()
        elif action == "speed":
            if command.speed is None:
                raise ValueError("speed needs speed")
            self.step()
            self.speed = _clamp_speed(command.speed)
        elif action != "status":
            raise ValueError(
                f"action {shown(action)} is not one of play, pause, seek, speed, status"
            )
        return self.state()

    def step(self) -> None:
        """Play forward by the real time since the last step (times the speed)."""
        now = self._clock()
        elapsed, self._last = now - self._last, now
        if not self.playing:
            return
        replayer = self.replayer
        replayer.advance(replayer.position + elapsed * self.speed)
        if replayer.position >= replayer.end:
            if self.loop:
                replayer.seek(replayer.start)
            else:
                self.playing = False

    async def run(self) -> None:
        """Play until cancelled."""
        while True:
            await asyncio.sleep(self.tick)
            try:
                self.step()
            except Exception:
                logger.exception("replay step failed; paused")
                self.playing = False

    def start(self) -> None:
        """Start playing in a task of the running loop."""
        if self._task is None:
            self._last = self._clock()
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        """Stop the task (and a seek still waiting to run)."""
        if self._seek_handle is not None:
            self._seek_handle.cancel()
            self._seek_handle = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ------------------------------------------------------------------ commands

    def _command(self, connection: int, frame: list[Any]) -> None:
        if frame[0] == _SEND:
            name = frame[1] if len(frame) > 1 else None
            body = {
                "type": name if isinstance(name, str) else "?",
                "entity": frame[2] if len(frame) > 2 and type(frame[2]) is int else None,
                "status": Status.FORBIDDEN.value,
                "reason": READ_ONLY,
            }
            self.server.deliver(connection, [_NOTICE, NoticeKind.MESSAGE_REJECTED.value, body])
            return
        if len(frame) < 2 or type(frame[1]) is not int:
            return  # (no request id to answer to)
        req_id = frame[1]
        name = frame[2] if len(frame) > 2 and isinstance(frame[2], str) else None
        if frame[0] == _QUERY and len(frame) == 4 and name in LOCAL_QUERIES:
            self.server.handle_here(connection, frame)  # (read-only, built in: answered)
            return
        if frame[0] == _REQUEST and len(frame) == 5 and name == REPLAY_REQUEST:
            try:
                command = ReplayControl.model_validate(frame[4])
                if command.action != "status" and not self._may_control(connection):
                    self._answer(
                        connection,
                        req_id,
                        Status.FORBIDDEN,
                        f"controlling this replay needs one of the roles {self.control_roles}",
                        {},
                    )
                    return
                if command.action == "seek" and command.at is not None:
                    self._seek_later(connection, req_id, command.at)
                    return
                state = self.control(command)
            except ValidationError as exc:
                self._answer(
                    connection,
                    req_id,
                    Status.VALIDATION_ERROR,
                    f"{REPLAY_REQUEST}: {exc.error_count()} invalid field(s)",
                    {"errors": field_errors(exc)},
                )
                return
            except ValueError as exc:
                self._answer(connection, req_id, Status.VALIDATION_ERROR, str(exc), {})
                return
            # (the answer waits until the client shows the instant, whatever its window)
            reply = [_REPLY, req_id, Status.OK.value, "", {"value": state.model_dump()}]
            self.server.deliver(connection, reply, current=True)
            return
        self._answer(connection, req_id, Status.FORBIDDEN, READ_ONLY, {})

    def _may_control(self, connection: int) -> bool:
        roles = self.control_roles
        if roles is None:
            return True
        return bool(self.server.net.identity_of(ConnectionId(connection)).roles & set(roles))

    # Seeks from clients are merged: whatever number arrive, the latest wins and runs once,
    # and seeks take at most half the loop's time (the next waits as long as the last one
    # took), so clients scrubbing at once cannot stall the others. Everyone who asked is
    # answered with where the replay then is, once their view shows it.

    def _seek_later(self, connection: int, req_id: int, at: float) -> None:
        waiting = self._seeks
        if len(waiting) >= MAX_WAITING_SEEKS:
            self._answer(
                connection,
                req_id,
                Status.FORBIDDEN,
                f"{MAX_WAITING_SEEKS} seeks are waiting already: ask again",
                {},
            )
            return
        self._seek_to = at
        waiting.append((connection, req_id))
        if self._seek_handle is None:
            delay = max(0.0, self._seek_free_at - self._clock())
            self._seek_handle = asyncio.get_running_loop().call_later(delay, self._seek_now)

    def _seek_now(self) -> None:
        self._seek_handle = None
        at, waiting = self._seek_to, self._seeks
        self._seek_to, self._seeks = None, []
        if at is None:
            return
        started = self._clock()
        try:
            self.replayer.seek(at)
        except Exception as exc:  # (the recording is unreadable there: say so, go on)
            logger.warning("seek to %s failed: %s: %s", at, type(exc).__name__, exc)
            for connection, req_id in waiting:
                self._answer(
                    connection,
                    req_id,
                    Status.INTERNAL_ERROR,
                    f"the recording cannot be read at that instant: {exc}",
                    {},
                )
            return
        now = self._clock()
        self._last = now
        self._seek_free_at = now + (now - started)
        body = {"value": self.state().model_dump()}
        for connection, req_id in waiting:
            # (the answer waits until the client shows the instant, whatever its window)
            reply = [_REPLY, req_id, Status.OK.value, "", body]
            self.server.deliver(connection, reply, current=True)

    def _answer(
        self, connection: int, req_id: int, status: Status, message: str, body: dict[str, Any]
    ) -> None:
        self.server.deliver(connection, [_REPLY, req_id, status.value, message, body])


def _clamp_speed(speed: float) -> float:
    if speed != speed:  # NaN
        return 1.0
    return min(max(speed, MIN_SPEED), MAX_SPEED)
