"""Recording files read by offset: the I/O under :class:`pl3xus_rx.protocol.Recording`
(which does none), shared by the replay server and ``client_sync``'s player. It imports
nothing but the wire vocabulary, so a client can use it without the server's engine."""

from __future__ import annotations

import contextlib
import os

from .exceptions import RecordingError, RecordingUnreadable
from .protocol import Recording

__all__ = ["FileSource"]


class FileSource:
    """A recording file read by offset through a file descriptor the caller opened
    (``os.pread``): a file cut short while it is read is a clear error, never a crash (a
    memory map of it would kill the process with SIGBUS). Closes the descriptor when
    closed or collected.

    Args:
        fd: An open, readable file descriptor (taken over).
        name: What to call the file in errors.
    """

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self.name = name

    @staticmethod
    def read_file(path: str | os.PathLike[str]) -> Recording:
        """Open the recording at ``path`` (read by offset, never whole; the file stays open
        while the :class:`Recording` lives).

        Raises:
            RecordingUnreadable: not a recording, or a newer format.
            RecordingError: the file cannot be opened.
        """
        name = os.fspath(path)
        try:
            fd = os.open(name, os.O_RDONLY)
        except OSError as exc:
            raise RecordingError(
                f"cannot open the recording {name!r}: {exc.strerror or exc}", path=name
            ) from None
        source = FileSource(fd, name)
        try:
            return Recording(source, name)
        except BaseException:
            source.close()
            raise

    def size(self) -> int:
        """The file's size now."""
        return os.fstat(self.fd).st_size

    def read(self, at: int, n: int) -> bytes:
        """``n`` bytes at offset ``at``.

        Raises:
            RecordingUnreadable: fewer are there (the file shrank since it was indexed).
        """
        data = os.pread(self.fd, n, at)
        if len(data) < n:
            raise RecordingUnreadable(
                f"{self.name}: cut short since it was opened ({len(data)} of {n} bytes at "
                f"offset {at})",
                path=self.name,
            )
        return data

    def close(self) -> None:
        """Close the descriptor (once)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            self.close()
