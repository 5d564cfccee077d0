"""Warm restarts: a server's World saved to a file and restored at start.

``SyncServer(state=PATH)`` keeps the World in ``PATH``: entities with their ids and
parents, the values of every synced component type (but ``EntityControl`` and types
registered with ``.persist(False)``), and who spawned client-spawned entities. It is saved
every ``StateSettings.save_interval`` seconds (when something changed) and at shutdown,
atomically (a crash never leaves a torn file), and restored by ``server.load_state()``
(or by ``serve()``, when the application did not call it). docs/persistence.md has the
guide and the file format.
"""

from ._format import FORMAT_VERSION, MAGIC
from ._types import Migration, StateLoaded, StateSaved, StateSettings, StateStatistics

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Migration",
    "StateLoaded",
    "StateSaved",
    "StateSettings",
    "StateStatistics",
]
