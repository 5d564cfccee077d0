"""Scale-out over NATS: one authority keeps the truth, stateless gateways serve the
clients (docs/scaling.md). Needs ``nats-py`` (the ``nats`` extra)."""

from ._authority import Authority
from ._gateway import Gateway
from ._lease import Lease, LeaseHeld, LeaseLost, LeaseUnavailable
from ._link import NatsOptions, redact_url
from ._wire import CLUSTER_VERSION, GATEWAY_SHIFT, Subjects

__all__ = [
    "CLUSTER_VERSION",
    "GATEWAY_SHIFT",
    "Authority",
    "Gateway",
    "Lease",
    "LeaseHeld",
    "LeaseLost",
    "LeaseUnavailable",
    "NatsOptions",
    "Subjects",
    "redact_url",
]
