"""Scale-out's own ``/metrics``: the authority's view of its gateways and lease, a gateway's
authority link. Read at scrape time from counters the authority and the gateway keep anyway
(the relay latency is observed as replies arrive). Label values are fixed sets, never
anything a client or a gateway chose."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class Authority(Protocol):
    """What the collector reads of an authority (``scaleout.Authority``)."""

    seq: int
    dropped: int
    foreign_messages: int
    refused_clients: int
    reintroduced: int
    stalls: int

    def status(self) -> dict[str, Any]: ...

    def lease_held(self) -> bool: ...


class Gateway(Protocol):
    """What the collector reads of a gateway (``scaleout.Gateway``)."""

    silence: float
    snapshots: int
    fenced: int
    forwarded: int

    def link(self) -> dict[str, Any]: ...


__all__ = ["AuthorityCollector", "GATEWAY_STATES", "GatewayCollector"]

GATEWAY_STATES = ("synced", "snapshotting", "silent", "skew", "draining")
"""The states a gateway reports (its ``/healthz``, ``pl3xus-rx cluster``)."""


def _counter(name: str, text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, text, value=value)


class AuthorityCollector(Collector):
    """The authority's scale-out metrics."""

    def __init__(self, authority: Authority) -> None:
        self._authority = authority

    def collect(self) -> Iterator[Metric]:
        a = self._authority
        status = a.status()
        states = GaugeMetricFamily(
            "pl3xus_cluster_gateways", "Gateways the authority hears, by state", labels=["state"]
        )
        counts = dict.fromkeys(GATEWAY_STATES, 0)
        clients = 0
        for gateway in status["gateways"]:
            state = gateway["state"] if gateway["state"] in counts else "snapshotting"
            counts[state] += 1
            clients += int(gateway.get("clients") or 0)
        for state, n in counts.items():
            states.add_metric([state], n)
        yield states
        yield GaugeMetricFamily(
            "pl3xus_cluster_gateway_clients", "Clients of every gateway heard", value=clients
        )
        yield GaugeMetricFamily(
            "pl3xus_cluster_lease_held",
            "1 while this authority certainly holds the cluster's lease (0: lost, lapsed, or "
            "no fencing)",
            value=1.0 if a.lease_held() else 0.0,
        )
        yield _counter(
            "pl3xus_cluster_batches_published", "Change batches published to NATS", a.seq
        )
        yield _counter(
            "pl3xus_cluster_outbox_dropped", "NATS messages dropped: the outbox was full", a.dropped
        )
        yield _counter(
            "pl3xus_cluster_foreign_messages",
            "Messages from a gateway about another gateway's clients (dropped)",
            a.foreign_messages,
        )
        yield _counter(
            "pl3xus_cluster_refused_clients",
            "Anonymous gateway clients refused (this server requires authentication)",
            a.refused_clients,
        )
        yield _counter(
            "pl3xus_cluster_reintroduced_clients",
            "Gateway clients introduced again after the authority asked",
            a.reintroduced,
        )
        yield _counter(
            "pl3xus_cluster_own_stalls",
            "Stalls of the authority itself (loop or NATS link) not counted against gateways",
            a.stalls,
        )


class GatewayCollector(Collector):
    """A gateway's scale-out metrics: its authority link."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def collect(self) -> Iterator[Metric]:
        g = self._gateway
        link = g.link()
        yield GaugeMetricFamily(
            "pl3xus_gateway_link_up",
            f"1 while the authority was heard within {g.silence:g} s",
            value=1.0 if link["link"] == "up" else 0.0,
        )
        state = GaugeMetricFamily(
            "pl3xus_gateway_state", "1 for the gateway's current state", labels=["state"]
        )
        for name in GATEWAY_STATES:
            state.add_metric([name], 1.0 if link["state"] == name else 0.0)
        yield state
        yield GaugeMetricFamily(
            "pl3xus_gateway_lag_seconds",
            "How old the replica's data is: now minus the authority's time it is current as of",
            value=link["lag_ms"] / 1000.0,
        )
        yield GaugeMetricFamily(
            "pl3xus_gateway_seq_behind",
            "Batches the authority announced that the replica has not applied",
            value=link["seq_behind"],
        )
        yield _counter("pl3xus_gateway_snapshots", "Snapshots of the authority taken", g.snapshots)
        yield _counter(
            "pl3xus_gateway_fenced_batches",
            "Batches dropped: from an authority whose lease is not the newest",
            g.fenced,
        )
        yield _counter(
            "pl3xus_gateway_forwarded_commands", "Client commands forwarded", g.forwarded
        )
