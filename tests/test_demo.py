"""`pl3xus-rx demo` as a newcomer runs it: a process that serves a live cell and stops cleanly."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import UNIT, wait_until

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import Forbidden
from pl3xus_rx.demo import Ack, Jog, JogResult, Pose, RobotStatus, Sensor, SetSpeed


def command() -> list[str]:
    exe = shutil.which("pl3xus-rx")
    return [exe] if exe else [sys.executable, "-m", "pl3xus_rx"]


async def start_demo(
    *args: str, lines: int
) -> tuple[asyncio.subprocess.Process, asyncio.StreamReader, list[str]]:
    """``pl3xus-rx demo --port 0 ARGS`` in a process, and the first ``lines`` it prints."""
    proc = await asyncio.create_subprocess_exec(
        *command(),
        "demo",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        head = [
            (await asyncio.wait_for(proc.stdout.readline(), 20 * UNIT)).decode()
            for _ in range(lines)
        ]
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc, proc.stdout, head


@pytest.mark.asyncio
async def test_demo_serves_a_live_cell_and_stops_on_sigint() -> None:
    proc, stdout, head = await start_demo("--sensors", "20", lines=4)
    assert proc.stderr is not None
    try:
        assert "3 robots" in head[0] and "20 sensors" in head[0]
        url = head[1].split()[1]
        assert url.startswith("ws://127.0.0.1:") and "/healthz" in head[2]
        assert head[3].split()[1] == url.replace("ws://", "http://") + "devtools"
        registry = (
            ClientTypeRegistry.builder()
            .register(Sensor)
            .register(RobotStatus)
            .register(Pose)
            .register_request(Jog, JogResult)
            .register_request(SetSpeed, Ack)
            .build()
        )
        async with SyncProvider(url, registry) as ann, SyncProvider(url, registry) as bob:
            sensors = ann.components(Sensor)
            seen: list[int] = []
            sensors.subscribe(lambda m: seen.append(len(m)))
            await wait_until(lambda: len(seen) > 5, 10, "sensor updates")
            assert seen[-1] == 20
            robots = ann.components(RobotStatus)
            robots.subscribe(lambda _: None)
            await wait_until(lambda: len(robots.get()) == 3)
            robot = sorted(robots.get())[0]
            await ann.take_control(robot)
            moved = await ann.request(Jog(dx=10, dy=-5), entity=robot)
            assert isinstance(moved, JogResult)
            with pytest.raises(Forbidden):
                await bob.request(SetSpeed(speed=1.0), entity=robot)
            assert (await ann.request(SetSpeed(speed=0.25), entity=robot)).state
            await wait_until(lambda: robots.get()[robot].speed == 0.25)
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 20 * UNIT)
    rest = (await stdout.read()).decode()
    err = (await proc.stderr.read()).decode()
    assert proc.returncode == 0 and "demo stopped" in rest
    assert "Traceback" not in err, err


def test_python_dash_m_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pl3xus_rx", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "--robots" in result.stdout


@pytest.mark.asyncio
async def test_demo_with_tokens_lets_a_viewer_watch_but_not_act() -> None:
    from pl3xus_rx import ConnectFailed

    proc, _, head = await start_demo(
        "--sensors", "5", "--token", "op-secret", "--viewer-token", "view-only", lines=5
    )
    assert proc.stderr is not None
    try:
        url = head[1].split()[1]
        assert head[3].split()[1].endswith("/devtools?token=op-secret")
        assert "Bearer" in head[4]
        registry = ClientTypeRegistry.builder().register(RobotStatus).build()
        with pytest.raises(ConnectFailed, match="401"):
            async with SyncProvider(url, registry):
                pass
        async with (
            SyncProvider(url, registry, token="view-only") as viewer,
            SyncProvider(url, registry, token="op-secret") as operator,
        ):
            robots = viewer.components(RobotStatus)
            robots.subscribe(lambda _: None)
            await wait_until(lambda: len(robots.get()) == 3)  # a viewer watches
            robot = sorted(robots.get())[0]
            with pytest.raises(Forbidden, match="may watch but not act"):
                await viewer.take_control(robot)
            await operator.take_control(robot)
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 20 * UNIT)
    assert proc.returncode == 0
    assert "Traceback" not in (await proc.stderr.read()).decode()


def test_demo_refuses_a_viewer_token_without_an_operator_token() -> None:
    result = subprocess.run(
        [*command(), "demo", "--port", "0", "--viewer-token", "v"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--viewer-token needs --token" in result.stderr


def test_demo_sensor_values_stay_plausible_over_long_runs() -> None:
    import random

    from pl3xus_rx.demo import sensor_step

    rng = random.Random(5)
    # 200,000 steps of each kind: over half an hour of a 100 Hz sensor
    for kind, low, high, mean in [
        ("temperature", 15.0, 90.0, 40.0),
        ("pressure", 0.0, 12.0, 6.0),
        ("vibration", 0.0, 15.0, 2.0),
        ("current", 0.0, 40.0, 12.0),
    ]:
        value, total, lowest, highest = mean, 0.0, mean, mean
        for _ in range(200_000):
            value = sensor_step(kind, value, rng)
            total += value
            lowest, highest = min(lowest, value), max(highest, value)
        assert low <= lowest and highest <= high, (kind, lowest, highest)
        assert abs(total / 200_000 - mean) < 0.05 * mean, kind  # it stays around its set point


@pytest.mark.asyncio
async def test_a_big_demo_keeps_to_its_sensor_budget_and_spreads_the_readings() -> None:
    from pl3xus_rx import SyncServer
    from pl3xus_rx.demo import build_cell, simulate

    small = SyncServer()
    few = build_cell(small, sensors=8)
    rates = [small.world.get(s, Sensor).rate_hz for s in few["sensors"]]  # type: ignore[union-attr]
    assert set(rates) <= {10.0, 20.0, 50.0, 100.0}  # under the budget: their own rates
    assert few["sensor_updates"] == round(sum(rates))

    server = SyncServer()
    cell = build_cell(server, sensors=2000, sensor_updates=4000)
    total = sum(server.world.get(s, Sensor).rate_hz for s in cell["sensors"])  # type: ignore[union-attr]
    assert total == pytest.approx(4000, rel=0.01) and cell["sensor_updates"] == round(total)

    per_tick: list[int] = []
    counted = [0]
    server.world.changes(Sensor).subscribe(lambda _: counted.__setitem__(0, counted[0] + 1))
    stop = asyncio.Event()

    async def sample() -> None:
        for _ in range(40):
            await asyncio.sleep(0.01)
            per_tick.append(counted[0])

    sim = asyncio.create_task(simulate(server, cell, stop=stop))
    await sample()
    stop.set()
    await asyncio.wait_for(sim, UNIT)
    steps = [b - a for a, b in itertools.pairwise(per_tick)]
    # 4,000 readings/s at 100 ticks/s: about 40 a tick, never all 2,000 sensors at once
    assert sum(steps) > 0 and max(steps) < 400, steps


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pl3xus_rx", *args], capture_output=True, text=True, timeout=60
    )


def test_cli_mistakes_get_one_clear_line_and_a_nonzero_exit() -> None:
    import socket

    version = _cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("pl3xus-rx ")
    for args, expected in [
        (("demo", "--sensors", "-5"), "argument --sensors: must be 0 or more, got -5"),
        (("demo", "--rate", "0"), "argument --rate: must be a number above 0"),
        (("demo", "--port", "70000"), "a port is at most 65535"),
        (("demo", "--robots", "two"), "expected a whole number, got 'two'"),
    ]:
        result = _cli(*args)
        assert result.returncode == 2 and expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _cli("demo", "--port", str(port))
    assert result.returncode == 1, result.stderr
    assert "address already in use" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    unreachable = _cli("inspect", "ws://127.0.0.1:1/", "--once")
    assert unreachable.returncode == 1 and "cannot connect" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
