"""Scale-out over NATS: one authority keeps the truth, stateless gateways serve the
clients (docs/scaling.md). Needs ``nats-py`` (the ``nats`` extra)."""

from ._authority import Authority
from ._gateway import Gateway
from ._link import NatsOptions, redact_url
from ._wire import GATEWAY_SHIFT, Subjects

__all__ = ["GATEWAY_SHIFT", "Authority", "Gateway", "NatsOptions", "Subjects", "redact_url"]
