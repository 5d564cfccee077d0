"""The state file on disk: read whole, written atomically, locked while a server uses it.

A save never leaves a torn file: it writes ``PATH.tmp``, fsyncs it, renames it over
``PATH`` and fsyncs the folder, so ``PATH`` is always either the previous file or the new
one, whole, whenever the process or the machine stops. ``PATH.lock`` (``flock``) keeps a
second server off the same file.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterable
from typing import IO, Any

from ..exceptions import StateConflict, StateUnreadable, StateWriteFailed
from ._format import PREFIX, read_prefix

try:
    import fcntl
except ImportError:  # (not POSIX: no lock)
    fcntl = None  # type: ignore[assignment]

__all__ = ["StateLock", "check_writable", "read_state", "write_state"]

logger = logging.getLogger(__name__)

MODE = 0o600
"""A new state file's permissions: the server's user alone reads it (it may hold what
some clients may not see). A file that exists keeps its own."""


def _why(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


def read_state(path: str) -> bytes | None:
    """The whole file, or ``None`` when there is none (a first start).

    Raises:
        StateUnreadable: it cannot be read (a folder, no permission), or is not a state
            file of a format this version reads (checked on its first bytes before the
            rest is read).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(PREFIX.size)
            read_prefix(head, path)
            return head + f.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise StateUnreadable(
            f"{path} is a folder, not a state file: give the path of a file (in a folder "
            "the server may write)",
            path=path,
        ) from None
    except OSError as exc:
        raise StateUnreadable(f"cannot read {path}: {_why(exc)}", path=path) from exc


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # (a platform without folder handles: the rename is what it is)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def write_state(path: str, chunks: Iterable[bytes]) -> int:
    """Write ``chunks`` as the new ``path``, atomically: a temporary file beside it,
    fsynced, renamed over it, then the folder fsynced. Returns the bytes written.

    Raises:
        StateWriteFailed: a step failed (named, with the system's error); the temporary
            file is removed and ``path`` is left as it was.
    """
    tmp = path + ".tmp"
    step = "create"
    fd = -1
    written = 0
    try:
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            mode = MODE
        fd = _create_own(tmp, mode)
        step = "write"
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]
                written += n
        step = "fsync"
        os.fsync(fd)
        os.close(fd)
        fd = -1
        step = "rename"
        os.replace(tmp, path)
        step = "fsync the folder of"
        _fsync_folder(os.path.dirname(path) or ".")
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        if step != "fsync the folder of":
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise StateWriteFailed(
            f"cannot save the state: {step} {tmp if step != 'fsync the folder of' else path} "
            f"failed after {written:,} bytes: {_why(exc)}; {path} is left as it was",
            path=path,
        ) from exc
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return written


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _create_own(path: str, mode: int) -> int:
    """A new file at ``path`` that no one else made: whatever is there (a leftover of a
    killed save, or a symlink someone planted to have us write into another file) is
    removed first, and the file is created exclusively, never through a symlink, with
    ``mode`` whatever the umask or a leftover said."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode)
    if hasattr(os, "fchmod"):  # (the umask may have taken bits away)
        try:
            os.fchmod(fd, mode)
        except BaseException:
            os.close(fd)
            raise
    return fd


def check_writable(path: str) -> None:
    """Make sure a save can create, fsync and rename files beside ``path`` (before a server
    starts, rather than hours later).

    Raises:
        StateWriteFailed: the folder is missing, read-only or not ours (named).
    """
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise StateWriteFailed(
            f"the folder of state file {path} does not exist ({folder}): create it, or give "
            "another state path",
            path=path,
        )
    probe = path + ".tmp"
    try:
        fd = _create_own(probe, MODE)
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise StateWriteFailed(
            f"cannot save state file {path}: writing {probe} failed: {_why(exc)} (the server "
            "needs to create files in that folder)",
            path=path,
        ) from exc


class StateLock:
    """``PATH.lock``, held while a server uses ``PATH`` (released when the process ends,
    however it ends).

    Raises:
        StateConflict: another process holds it (its pid is named).
        StateWriteFailed: the lock file cannot be created.
    """

    def __init__(self, path: str) -> None:
        self.path = path + ".lock"
        self._file: IO[Any] | None = None
        if fcntl is None:
            return
        try:
            # (never through a planted symlink; the file is ours alone)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, MODE)
            f = os.fdopen(fd, "a+")
        except OSError as exc:
            folder = os.path.dirname(path) or "."
            hint = (
                f": the folder {folder} does not exist"
                if not os.path.isdir(folder)
                else f": {_why(exc)}"
            )
            raise StateWriteFailed(
                f"cannot use state file {path}: the lock file {self.path} cannot be created{hint}",
                path=path,
            ) from exc
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            f.seek(0)
            holder = f.read().strip()[:20]
            f.close()
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = (
                    "another server of this process"
                    if holder == str(os.getpid())
                    else f"another process{f' (pid {holder})' if holder else ''}"
                )
                raise StateConflict(
                    f"state file {path} is in use by {who}: two servers must not share a "
                    "state file (give each its own path)",
                    path=path,
                ) from None
            raise StateWriteFailed(
                f"cannot lock state file {path} ({self.path}): {_why(exc)}", path=path
            ) from exc
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f

    def release(self) -> None:
        """Let another process use the file."""
        f, self._file = self._file, None
        if f is not None:
            f.close()  # (closing releases the flock)
