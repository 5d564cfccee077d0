"""Recording and replay: a session as a file of flushes, served again as a read-only server.

- ``SyncServer(record="cell.pl3xrec")`` (or :class:`RecordSettings`) records everything the
  server syncs while it serves;
- ``pl3xus-rx record URL -o FILE`` records what one identity sees, as a client;
- ``pl3xus-rx replay FILE`` serves a recording (:class:`ReplayServer`), with play, pause,
  seek and speed;
- :func:`open_recording` reads one (:class:`~pl3xus_rx.protocol.Recording`).

The format is :mod:`pl3xus_rx.protocol`'s (``docs/recording.md``).
"""

from ._recorder import FlushEncoder
from ._replay import Replayer
from ._serve import READ_ONLY, ReplayServer, open_recording
from ._writer import RecordFiles, RecordSettings, ServerRecorder, next_free

__all__ = [
    "READ_ONLY",
    "FlushEncoder",
    "RecordFiles",
    "RecordSettings",
    "Replayer",
    "ReplayServer",
    "ServerRecorder",
    "next_free",
    "open_recording",
]
