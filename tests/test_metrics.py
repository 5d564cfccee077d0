"""/metrics: the Prometheus text format through prometheus-client, parsed back with its
parser; counters move with traffic; admins only with an authenticator; can be switched off."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import http_get, wait_until
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import Authorized, Identity, SyncServer, bearer_tokens

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]


class Speed(BaseModel):
    value: float


REGISTRY = ClientTypeRegistry.builder().register(Speed).build()


async def scrape(port: int, target: str = "/metrics") -> dict[tuple[str, tuple[Any, ...]], float]:
    status, headers, body = await http_get(port, target)
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_follow_the_traffic() -> None:
    server = SyncServer()
    server.sync_component_builder(Speed).with_entity_policy(
        lambda world, ctx, entity: Authorized()
    ).build()
    robot = server.world.spawn(Speed(value=0))
    async with server.serve("127.0.0.1", 0) as (host, port):
        before = await scrape(port)
        assert before[("pl3xus_connections", ())] == 0
        async with SyncProvider(f"ws://{host}:{port}/", REGISTRY) as sync:
            speeds = sync.components(Speed)
            speeds.subscribe(lambda _: None)
            await sync.wait_synced(10)
            for i in range(5):
                await sync.mutate(robot, Speed(value=float(i + 1)))
            for i in range(20):
                server.world.insert(robot, Speed(value=100.0 + i))
            await wait_until(lambda: speeds.get()[robot] == Speed(value=119.0))
            after = await scrape(port)
        assert after[("pl3xus_connections", ())] == 1
        assert after[("pl3xus_frames_received_total", (("kind", "subscribe"),))] == 1
        assert after[("pl3xus_frames_received_total", (("kind", "mutate"),))] == 5
        assert after[("pl3xus_command_replies_total", (("status", "ok"),))] == 5
        assert after[("pl3xus_subscriptions", ())] == 1
        for name in ("pl3xus_items_sent_total", "pl3xus_bytes_sent_total", "pl3xus_flushes_total"):
            assert after[(name, ())] > before[(name, ())], name
        assert after[("pl3xus_flush_duration_seconds_count", ())] > 0
        assert after[("pl3xus_queue_depth_gcount", ())] == 1  # one connection's channel
        assert after[("pl3xus_snapshots_total", ())] >= 1


async def test_metrics_need_an_admin_with_an_authenticator_and_can_be_off() -> None:
    tokens = {"op": Identity.of("ann", "operator"), "root": Identity.of("root", "admin")}
    server = SyncServer(authenticate=bearer_tokens(tokens))
    async with server.serve("127.0.0.1", 0) as (_, port):
        assert (await http_get(port, "/metrics"))[0] == 401
        assert (await http_get(port, "/metrics?token=op"))[0] == 403
        samples = await scrape(port, "/metrics?token=root")
        assert ("pl3xus_auth_failures_total", ()) in samples
    off = SyncServer(metrics=False)
    async with off.serve("127.0.0.1", 0) as (_, port):
        assert (await http_get(port, "/metrics"))[0] == 404  # no such page
        assert off.metrics is None
