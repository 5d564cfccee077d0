"""client_sync: the client side of pl3xus_rx.

Today it holds the :class:`ClientTypeRegistry`, the immutable list of types a client works
with; the ``SyncProvider`` and its signals build on it.
"""

from .registry import ClientTypeRegistry, ClientTypeRegistryBuilder

__all__ = ["ClientTypeRegistry", "ClientTypeRegistryBuilder"]
