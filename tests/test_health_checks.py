"""Health checks: what /healthz reports of them, and handshakes refused while one says not
to admit (counted like every refusal); a check that raises is not ok, logged once."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from conftest import UNIT, http_get

from pl3xus_rx import (
    ConnectFailed,
    DuplicateRegistration,
    HealthCheck,
    Network,
    SyncServer,
)
from pl3xus_rx.instruments import Instrument

pytestmark = pytest.mark.asyncio


class Refusals(Instrument):
    """Records the handshakes the server refused."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []

    def handshake_refused(self, remote: str, status: int, reason: str) -> None:
        self.seen.append((status, reason))


async def health(port: int) -> tuple[int, dict[str, Any]]:
    status, _, body = await http_get(port, "/healthz")
    return status, json.loads(body)


async def test_checks_are_reported_and_one_not_ok_makes_it_503() -> None:
    server = SyncServer()
    state = {"ok": True}
    server.add_health_check("authority", lambda: HealthCheck(state["ok"], {"lag_ms": 0.1}))
    server.add_health_check("disk", lambda: HealthCheck(True, {}))
    with pytest.raises(DuplicateRegistration, match="disk"):
        server.add_health_check("disk", lambda: HealthCheck(True, {}))
    async with server.serve("127.0.0.1", 0) as (_, port):
        status, body = await health(port)
        assert status == 200 and body["status"] == "ok"
        assert body["checks"] == {
            "authority": {"ok": True, "lag_ms": 0.1},
            "disk": {"ok": True},
        }
        state["ok"] = False
        status, body = await health(port)
        assert status == 503 and body["status"] == "unhealthy"
        assert body["checks"]["authority"]["ok"] is False
        # not ok alone refuses nobody
        net = Network()
        await net.connect(f"ws://127.0.0.1:{port}/")
        await net.close()
        server.remove_health_check("authority")
        server.remove_health_check("authority")  # (none: nothing happens)
        status, body = await health(port)
        assert status == 200 and body["checks"] == {"disk": {"ok": True}}


async def test_a_check_that_does_not_admit_refuses_handshakes_and_is_counted() -> None:
    server = SyncServer()
    refusals = Refusals()
    server.instrument(refusals)
    admit = {"now": True}

    def link() -> HealthCheck:
        if admit["now"]:
            return HealthCheck(True, {"state": "synced"})
        return HealthCheck(False, {"reason": "the authority is silent"}, admit=False)

    server.add_health_check("link", link)
    async with server.serve("127.0.0.1", 0) as (_, port):
        url = f"ws://127.0.0.1:{port}/"
        early = Network()
        await early.connect(url)
        admit["now"] = False
        late = Network()
        with pytest.raises(ConnectFailed, match=r"503.*the authority is silent"):
            await late.connect(url)
        assert server.net.statistics().refused == 1
        assert refusals.seen == [
            (503, "server is not admitting new connections: the authority is silent")
        ]
        assert server.metrics is not None
        assert b"pl3xus_handshakes_refused_total 1.0" in server.metrics.render()
        status, body = await health(port)
        assert status == 503
        assert body["checks"]["link"] == {
            "ok": False,
            "reason": "the authority is silent",
            "admit": False,
        }
        # the live connection goes on
        assert server.net.connections and len(early.connections) == 1
        admit["now"] = True
        await late.connect(url)
        await late.close()
        await early.close()


async def test_a_check_that_raises_is_not_ok_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = SyncServer()

    def broken() -> HealthCheck:
        raise RuntimeError("boom")

    server.add_health_check("broken", broken)
    server.add_health_check("wrong", lambda: "fine")  # type: ignore[arg-type, return-value]
    async with server.serve("127.0.0.1", 0) as (_, port):
        with caplog.at_level(logging.ERROR, logger="pl3xus_rx.net._health"):
            for _ in range(3):
                status, body = await health(port)
                assert status == 503 and body["status"] == "unhealthy"
            # a raising check refuses nobody
            net = Network()
            await net.connect(f"ws://127.0.0.1:{port}/")
            await net.close()
        assert body["checks"] == {
            "broken": {"ok": False, "reason": "the check failed: RuntimeError"},
            "wrong": {"ok": False, "reason": "the check failed: TypeError"},
        }
        failed = [r for r in caplog.records if "health check" in r.getMessage()]
        assert len(failed) == 2, failed  # once per check, whatever the number of calls


async def test_detail_that_is_not_json_is_shown_as_text() -> None:
    server = SyncServer()
    server.add_health_check("odd", lambda: HealthCheck(True, {"since": UNIT.__class__}))
    async with server.serve("127.0.0.1", 0) as (_, port):
        status, body = await health(port)
        assert status == 200 and body["checks"]["odd"] == {"ok": True, "since": "<class 'float'>"}
