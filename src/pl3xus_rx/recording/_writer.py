"""Recording files on disk: where records go, rotation, and the server's recorder.

A file is created readable by its owner only (0600: a server recording holds everything
the server syncs, restricted types included). Records are appended and handed to the
operating system one by one (a ``write`` per record, no ``fsync``): a process killed at
any point leaves every record written before the one it was writing, and the reader drops
a torn last record. A file is never
overwritten: when the path is taken, the next free numbered name is used
(``cell.pl3xrec``, ``cell.1.pl3xrec``, ``cell.2.pl3xrec``...), and rotation moves on the
same way. Every file starts with its HEADER and a KEYFRAME, so each one replays alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

from ..exceptions import RecordingError, SettingsError
from ..protocol import RecordingHeader, RecordKind, encode_record, recording_prefix
from ..sync import SyncEngine
from ..sync._registry import ComponentRegistration, ComponentRegistry
from ..world import World
from ._recorder import FlushEncoder

__all__ = ["RecordFiles", "RecordSettings", "ServerRecorder", "next_free"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecordSettings:
    """How a server records itself (``SyncServer(record=RecordSettings(...))``; a path
    alone takes the defaults).

    Attributes:
        path: The first file; later ones (a path taken, rotation) get numbered names.
        keyframe_seconds: At most this long between keyframes (a seek replays at most this
            much); default 5.
        rotate_bytes: Start a new file once one holds this many bytes (``None``: never).
        rotate_seconds: Start a new file once one spans this many seconds (``None``: never).
        components: The types recorded (default: every synced type when serving starts).
        app: The ``MODULE:FUNCTION`` that registers the types, written into the header so
            that ``pl3xus-rx replay`` needs no ``--app``.
    """

    path: str | os.PathLike[str]
    keyframe_seconds: float = 5.0
    rotate_bytes: int | None = None
    rotate_seconds: float | None = None
    components: tuple[type[BaseModel], ...] | None = None
    app: str | None = None

    def __post_init__(self) -> None:
        if not self.keyframe_seconds > 0:
            raise SettingsError(f"keyframe_seconds must be > 0, not {self.keyframe_seconds!r}")
        if self.rotate_bytes is not None and self.rotate_bytes < 4096:
            raise SettingsError(f"rotate_bytes must be >= 4096, not {self.rotate_bytes!r}")
        if self.rotate_seconds is not None and not self.rotate_seconds > 0:
            raise SettingsError(f"rotate_seconds must be > 0, not {self.rotate_seconds!r}")


def next_free(path: str | os.PathLike[str]) -> Path:
    """``path`` if no file is there, else the first free ``stem.N.suffix``."""
    first = Path(path)
    if not first.exists():
        return first
    suffix = first.suffix or ".pl3xrec"
    stem = first.name[: -len(first.suffix)] if first.suffix else first.name
    n = 1
    while True:
        candidate = first.with_name(f"{stem}.{n}{suffix}")
        if not candidate.exists():
            return candidate
        n += 1


class RecordFiles:
    """The files of one recording: opens, appends, rotates, closes.

    Args:
        settings: Where, and when to rotate.
        begin: Called with each new file's start time; returns the header and the first
            keyframe's bytes to open it with.
        clock: Wall-clock time.
    """

    def __init__(
        self,
        settings: RecordSettings,
        begin: Callable[[float], tuple[RecordingHeader, bytes]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._begin = begin
        self._clock = clock
        self._file: IO[bytes] | None = None
        self.path: Path | None = None
        """The file being written."""
        self.paths: list[Path] = []
        """Every file written, in order."""
        self.bytes = 0
        """Bytes written in all."""
        self.records = 0
        """Records written in all."""
        self.failed: str | None = None
        """Why writing stopped (a full disk...), or ``None``."""
        self._file_bytes = 0
        self._file_started = 0.0
        self._last_time = 0.0

    def open(self) -> None:
        """Open the first file (header and keyframe written).

        Raises:
            RecordingError: it cannot be created.
        """
        self._open_next()

    def _open_next(self) -> None:
        path = next_free(self.settings.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # owner-only, never through a symlink, never over a file that appeared since
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(path, flags, 0o600)
            handle = os.fdopen(fd, "wb")
        except OSError as exc:
            raise RecordingError(
                f"cannot create the recording {str(path)!r}: {exc.strerror or exc}",
                path=str(path),
            ) from None
        self._file, self.path = handle, path
        self.paths.append(path)
        self._file_bytes = 0
        started = self._clock()
        self._file_started = started
        header, keyframe = self._begin(started)
        self._put(recording_prefix() + header.encode())
        self._put(keyframe)
        logger.info("recording to %s", path)

    def write(self, record: bytes) -> None:
        """Append one record (rotating first when due)."""
        if self._file is None:
            return
        self._put(record)
        if self._file is not None and self._rotation_due():
            self.close()
            if self.failed is None:
                try:
                    self._open_next()
                except RecordingError as exc:
                    self._fail(str(exc))

    def _rotation_due(self) -> bool:
        settings = self.settings
        if settings.rotate_bytes is not None and self._file_bytes >= settings.rotate_bytes:
            return True
        return (
            settings.rotate_seconds is not None
            and self._clock() - self._file_started >= settings.rotate_seconds
        )

    def _put(self, data: bytes) -> None:
        handle = self._file
        if handle is None:
            return
        try:
            handle.write(data)
            handle.flush()
        except OSError as exc:
            self._fail(f"cannot write {self.path}: {exc.strerror or exc}")
            return
        self._file_bytes += len(data)
        self.bytes += len(data)
        self.records += 1

    def _fail(self, why: str) -> None:
        self.failed = why
        logger.error("recording stopped: %s", why)
        handle, self._file = self._file, None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()

    def close(self) -> None:
        """Write the END record and close the file."""
        handle = self._file
        if handle is None:
            return
        self._put(encode_record(RecordKind.END, self._clock(), b"\xc0"))
        self._file = None
        try:
            handle.close()
        except OSError as exc:
            self._fail(f"cannot close {self.path}: {exc.strerror or exc}")


class ServerRecorder:
    """Records a server's World: every flush's changes, and keyframes, into files.

    Args:
        engine: The server's sync engine (the recorder hooks on its flushes).
        world: Its World.
        registry: Its synced types.
        settings: Where and how.
        origin: Written into the header (the server's address), if known.
    """

    def __init__(
        self,
        engine: SyncEngine,
        world: World,
        registry: ComponentRegistry,
        settings: RecordSettings,
        origin: str | None = None,
    ) -> None:
        self.engine = engine
        self.world = world
        self.registry = registry
        self.settings = settings
        self.origin = origin
        self.files: RecordFiles | None = None
        self.encoder: FlushEncoder | None = None
        self._unhook: Callable[[], None] | None = None

    def _regs(self) -> list[ComponentRegistration[Any]]:
        chosen = self.settings.components
        if chosen is None:
            return list(self.registry)
        return [self.registry.get(model) for model in chosen]

    def start(self) -> None:
        """Hook on the engine and open the first file (header, then a keyframe of the World
        as it is).

        Raises:
            RecordingError: the file cannot be created.
            NotRegistered: a chosen type is not synced.
        """
        regs = self._regs()
        files = RecordFiles(self.settings, self._begin)
        encoder = FlushEncoder(
            self.world,
            regs,
            self.engine.encoder,
            files.write,
            keyframe_seconds=self.settings.keyframe_seconds,
        )
        self.files, self.encoder = files, encoder
        files.open()
        self._unhook = self.engine.hook(encoder, [reg.model for reg in regs])

    def _begin(self, started: float) -> tuple[RecordingHeader, bytes]:
        encoder = self.encoder
        assert encoder is not None
        header = encoder.header(started, origin=self.origin, app=self.settings.app)
        out: list[bytes] = []
        write, encoder.write = encoder.write, out.append
        try:
            encoder.keyframe(started)
        finally:
            encoder.write = write
        return header, out[0]

    def stop(self) -> None:
        """Unhook and close the file (after the server's last flush)."""
        if self._unhook is not None:
            self._unhook()
            self._unhook = None
        if self.files is not None:
            self.files.close()

    @property
    def paths(self) -> Sequence[Path]:
        """The files written so far."""
        return self.files.paths if self.files is not None else ()
