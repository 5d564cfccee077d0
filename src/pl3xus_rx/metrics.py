"""``/metrics``: the server's counters in the Prometheus text format, through
``prometheus-client``.

Nothing is counted twice: at each scrape, a collector reads the counters the network, the
sync engine and the command layer keep anyway; only the flush duration is observed as it
happens (a histogram, one observation per flush). Each server has its own registry, so
several servers in one process do not collide.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .commands import Commands
from .instruments import Instrument
from .net import Network
from .sync import SyncEngine
from .sync._policy import FAULTS

__all__ = ["CONTENT_TYPE", "ServerMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text exposition format."""

_QUEUE_BUCKETS = (0, 1, 10, 50, 100, 250, 500, 1000)


class _Counters(Collector):
    """Reads the server's statistics at scrape time."""

    def __init__(self, network: Network, engine: SyncEngine, commands: Commands) -> None:
        self._network = network
        self._engine = engine
        self._commands = commands

    def collect(self) -> Iterator[Metric]:
        net = self._network.statistics()
        sync = self._engine.statistics()
        yield GaugeMetricFamily("pl3xus_connections", "Live connections", value=net.connections)
        counters = {
            "connections_accepted": ("Connections opened since start", net.accepted),
            "handshakes_refused": ("Handshakes refused (limits, origin, auth...)", net.refused),
            "auth_failures": ("Handshakes the authenticator refused", net.auth_failures),
            "frames_sent": ("Frames written to peers", net.frames_sent),
            "bytes_received": ("Payload bytes read from peers", net.bytes_received),
            "bytes_sent": ("Payload bytes written or queued to peers", net.bytes_sent),
            "bad_frames": ("Incoming frames refused as bad input", net.bad_frames),
            "rate_limited": ("Incoming frames dropped by the rate limit", net.rate_limited),
            "channel_dropped": ("Outbound frames dropped: channel full", net.channel_dropped),
            "channel_full_closes": (
                "Connections closed: channel full",
                net.channel_full_closes,
            ),
            "flushes": ("Flushes that sent at least one frame", sync.flushes),
            "sync_frames": ("SYNC frames sent", sync.frames),
            "item_encodings": ("Items encoded (once per flush and encoding)", sync.item_encodings),
            "items_sent": ("Items in SYNC frames, each connection counted", sync.items_sent),
            "deadband_suppressed": ("Updates a deadband held back", sync.deadband_suppressed),
            "snapshots": ("Snapshots completed (subscriptions, resyncs)", sync.snapshots),
            "unencodable": ("Items left out: their value could not be encoded", sync.unencodable),
            "merged_changes": (
                "Changes held and merged for connections behind their acknowledgement window",
                sync.merged,
            ),
            "catch_ups": ("Times a connection came back within its window", sync.catch_ups),
            "beacons": ("BEACON frames sent to idle protocol-v2 connections", sync.beacons),
        }
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(f"pl3xus_{name}", doc, value=value)
        received = CounterMetricFamily(
            "pl3xus_frames_received", "Frames received, by kind", labels=["kind"]
        )
        for kind, n in sorted(net.received_kinds.items()):
            received.add_metric([kind], n)
        yield received
        replies = CounterMetricFamily(
            "pl3xus_command_replies", "Command replies sent, by status", labels=["status"]
        )
        for status, n in sorted(self._commands.replies.items()):
            replies.add_metric([status], n)
        yield replies
        failures = self._commands.faults.total + FAULTS.total
        yield CounterMetricFamily(
            "pl3xus_policy_failures",
            "Policies and visibility rules that raised instead of answering (each a refusal)",
            value=failures,
        )
        slow = CounterMetricFamily(
            "pl3xus_slow_handlers",
            "Synchronous handler calls that held the event loop past slow_handler_seconds",
            labels=["command"],
        )
        for command, n in sorted(self._commands.slow.count.items()):
            slow.add_metric([command], n)
        yield slow
        yield GaugeMetricFamily(
            "pl3xus_subscriptions", "Live subscriptions", value=sync.subscriptions
        )
        yield GaugeMetricFamily(
            "pl3xus_connections_behind",
            "Connections behind their acknowledgement window (sent nothing, merged)",
            value=sync.behind,
        )
        yield GaugeMetricFamily(
            "pl3xus_connections_acknowledging",
            "Protocol-v2 connections that acknowledge (their window applies)",
            value=sync.acknowledging,
        )
        yield GaugeMetricFamily(
            "pl3xus_ack_lag_seconds",
            "Age of the oldest unacknowledged SYNC frame over all acknowledging connections",
            value=self._engine.window_lag(time.monotonic()),
        )
        yield GaugeMetricFamily(
            "pl3xus_snapshots_under_way",
            "Snapshots going out in parts",
            value=sync.snapshots_under_way,
        )
        depths = self._network.queue_depths()
        buckets = [(str(b), sum(1 for d in depths if d <= b)) for b in _QUEUE_BUCKETS]
        buckets.append(("+Inf", len(depths)))
        yield GaugeHistogramMetricFamily(
            "pl3xus_queue_depth",
            "Frames waiting in each connection's outbound channel, now",
            buckets=buckets,
            gsum_value=sum(depths),
        )


class ServerMetrics(Instrument):
    """A server's metrics registry, an instrument: counters read at scrape time from the
    layers that keep them anyway, flush durations observed as flushes report them.

    Args:
        network: The server's network layer.
        engine: Its sync engine.
        commands: Its command layer.
    """

    def __init__(self, network: Network, engine: SyncEngine, commands: Commands) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Counters(network, engine, commands))
        self.flush_seconds = Histogram(
            "pl3xus_flush_duration_seconds",
            "Time one flush took (encoding and queueing every frame)",
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
            registry=self.registry,
        )

    def flushed(self, seconds: float, frames: int, nbytes: int) -> None:
        """Observe one flush's duration."""
        self.flush_seconds.observe(seconds)

    def render(self) -> bytes:
        """The current metrics in the text format."""
        return generate_latest(self.registry)
