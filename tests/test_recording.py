"""The flight recorder: the format (torn tails, corruption), ``SyncServer(record=...)``,
replay through a real server and client at sampled instants, the command line."""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import UNIT, wait_until
from pydantic import BaseModel
from test_demo import command

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import Forbidden, InvalidValue, SyncServer
from pl3xus_rx.exceptions import RecordingError, RecordingUnreadable
from pl3xus_rx.protocol import (
    REPLAY_REQUEST,
    FrameKind,
    Recording,
    RecordKind,
    ReplayControl,
    ReplayState,
    Status,
    recording_prefix,
)
from pl3xus_rx.recording import (
    RecordSettings,
    Replayer,
    ReplayServer,
    next_free,
    open_recording,
)
from pl3xus_rx.sync import FlushHook, SyncSettings


class Position(BaseModel):
    x: float
    y: float


class Label(BaseModel):
    text: str
    tags: list[str] = []


TYPES = (Position, Label)


class Truth(FlushHook):
    """What the World held after each flush that changed something (the test's own view)."""

    def __init__(self, server: SyncServer) -> None:
        self.server = server
        self.at: dict[float, dict[str, dict[int, dict[str, Any]]]] = {}

    def flushed(self, as_of: float) -> None:
        world = self.server.world
        self.at[as_of] = {
            model.__name__: {
                int(e): world.get(e, model).model_dump()  # type: ignore[union-attr]
                for e in world.peek(model)
            }
            for model in TYPES
        }


async def record_session(path: Path, **settings: Any) -> tuple[Truth, list[Path]]:
    """A scripted session recorded into ``path``: spawns, updates, a removal, despawns with
    children, a respawn; returns the truth after each flush and the files written."""
    server = SyncServer(
        sync=SyncSettings(max_update_rate_hz=200), record=RecordSettings(path, **settings)
    )
    for model in TYPES:
        server.sync_component(model)
    truth = Truth(server)
    server.engine.hook(truth, TYPES)
    world = server.world
    rng = random.Random(7)
    async with server.serve("127.0.0.1", 0):
        cell = world.spawn(Label(text="cell"))
        robots = [
            world.spawn(Position(x=i, y=0), Label(text=f"r{i}"), parent=cell) for i in range(6)
        ]
        await asyncio.sleep(0.02)
        for step in range(40):
            for robot in robots:
                if world.contains(robot) and rng.random() < 0.7:
                    world.insert(robot, Position(x=rng.uniform(-5, 5), y=step))
            if step == 10:
                world.remove(robots[1], Label)
            if step == 15:
                world.despawn(robots[2])
            if step == 20:
                world.insert(robots[1], Label(text="back", tags=["a", "b"]))
                robots.append(world.spawn(Position(x=99, y=99), parent=robots[0]))
            if step == 25:
                world.despawn(robots[0])  # (and the child spawned under it)
            await asyncio.sleep(0.01)
        files = list(server.recorder.paths) if server.recorder else []
    return truth, files


def view_of(sync: SyncProvider) -> dict[str, dict[int, dict[str, Any]]]:
    return {
        model.__name__: {int(e): v.model_dump() for e, v in sync.components(model).get().items()}
        for model in TYPES
    }


# ---------------------------------------------------------------------- the format


@pytest.mark.asyncio
async def test_a_torn_tail_loses_only_the_record_being_written(tmp_path: Path) -> None:
    path = tmp_path / "s.pl3xrec"
    await record_session(path)
    data = path.read_bytes()
    whole = Recording(data, "whole")
    assert whole.closed and whole.torn == 0 and len(whole.keyframes) >= 1
    ends = [*whole.offsets[1:], len(data)]
    rng = random.Random(3)
    cuts = sorted({*rng.sample(range(ends[1] + 1, len(data)), 60), len(data) - 1, ends[1]})
    for cut in cuts:
        torn = Recording(data[:cut], "torn")
        kept = sum(1 for end in ends if end <= cut)
        assert len(torn) == kept, cut
        assert torn.torn == cut - ends[kept - 1]
        assert not torn.closed
        state, _ = torn.state_at(torn.end)  # every record kept still reads
        assert isinstance(state.values, dict)
    # a byte flipped in a middle record: the readable part ends before it
    middle = len(whole) // 2
    at = whole.offsets[middle] + 20
    flipped = bytearray(data)
    flipped[at] ^= 0xFF
    damaged = Recording(bytes(flipped), "damaged")
    assert len(damaged) == middle and damaged.torn == len(data) - whole.offsets[middle]


def test_what_is_not_a_recording_is_named(tmp_path: Path) -> None:
    with pytest.raises(RecordingUnreadable, match="not a pl3xus_rx recording"):
        Recording(b"PL3XSTATE\n\x00\x01" + bytes(40), "x")
    with pytest.raises(RecordingUnreadable, match="too short"):
        Recording(b"PL3X", "x")
    newer = recording_prefix()[:-2] + (99).to_bytes(2, "big")
    with pytest.raises(RecordingUnreadable, match="format 99, newer"):
        Recording(newer, "x")
    with pytest.raises(RecordingUnreadable, match="no readable header"):
        Recording(recording_prefix() + b"\x00" * 5, "x")
    with pytest.raises(RecordingError, match="cannot open the recording"):
        open_recording(tmp_path / "missing.pl3xrec")
    empty = tmp_path / "empty.pl3xrec"
    empty.write_bytes(b"")
    with pytest.raises(RecordingUnreadable, match="too short"):
        open_recording(empty)


def test_a_taken_path_is_never_overwritten(tmp_path: Path) -> None:
    first = tmp_path / "cell.pl3xrec"
    assert next_free(first) == first
    first.write_bytes(b"x")
    assert next_free(first) == tmp_path / "cell.1.pl3xrec"
    (tmp_path / "cell.1.pl3xrec").write_bytes(b"x")
    assert next_free(first) == tmp_path / "cell.2.pl3xrec"


@pytest.mark.asyncio
async def test_rotation_by_size_each_file_replays_alone(tmp_path: Path) -> None:
    truth, files = await record_session(tmp_path / "r.pl3xrec", rotate_bytes=4096)
    assert len(files) >= 2
    assert files[0].name == "r.pl3xrec" and files[1].name == "r.1.pl3xrec"
    for file in files:
        recording = open_recording(file)
        assert recording.closed and recording.kind(1) == RecordKind.KEYFRAME
        # each file's last state is the truth at its last flush
        server = SyncServer()
        for model in TYPES:
            server.sync_component(model)
        Replayer(recording, server.world, server.registry).seek(recording.end)
        flushed = max(t for t in truth.at if t <= recording.end)
        shown = {
            model.__name__: {
                int(e): server.world.get(e, model).model_dump()  # type: ignore[union-attr]
                for e in server.world.peek(model)
            }
            for model in TYPES
        }
        assert shown == truth.at[flushed]


# ---------------------------------------------------------------------- replay


@pytest.mark.asyncio
async def test_a_client_of_the_replay_sees_the_recorded_state_at_every_sampled_instant(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.pl3xrec"
    truth, _ = await record_session(path, keyframe_seconds=0.1)
    recording = open_recording(path)
    assert len(recording.keyframes) >= 3
    server = SyncServer()
    for model in TYPES:
        server.sync_component(model)
    replay = ReplayServer(server, recording, playing=False)
    registry = (
        ClientTypeRegistry.builder()
        .register(Position)
        .register(Label)
        .register_request(ReplayControl, ReplayState, name=REPLAY_REQUEST)
        .build()
    )
    instants = sorted(truth.at)
    rng = random.Random(11)
    samples = rng.sample(instants, min(25, len(instants)))  # forward and backward jumps
    async with server.serve("127.0.0.1", 0) as (host, port):
        async with SyncProvider(f"ws://{host}:{port}", registry) as sync:
            for model in TYPES:
                sync.components(model).subscribe(lambda _: None)  # (observed: subscribed)
            await sync.wait_synced(5 * UNIT)
            for at in samples:
                state = await sync.request(ReplayControl(action="seek", at=at), timeout=5 * UNIT)
                assert state.position == at and not state.playing
                # (the reply follows the flush that carried the seek's changes)
                assert view_of(sync) == truth.at[at], f"at {at - instants[0]:.3f} s"
            # playing forward from the start reaches the last instant's state
            await sync.request(ReplayControl(action="seek", at=recording.start))
            await sync.request(ReplayControl(action="speed", speed=50))
            await sync.request(ReplayControl(action="play"))
            replay.start()
            await wait_until(
                lambda: not replay.playing and replay.replayer.position >= recording.end, 10
            )
            await replay.stop()
            await wait_until(lambda: view_of(sync) == truth.at[instants[-1]], 5, "the end")
            # every other command is refused, read-only
            some = next(iter(sync.components(Position).get()))
            with pytest.raises(Forbidden, match="read-only replay"):
                await sync.mutate(some, Position(x=0, y=0), timeout=5 * UNIT)
            with pytest.raises(InvalidValue, match="is not one of play"):
                await sync.request(ReplayControl(action="rewind"), timeout=5 * UNIT)
            with pytest.raises(InvalidValue, match="seek needs at"):
                await sync.request(ReplayControl(action="seek"), timeout=5 * UNIT)
            state = await sync.request(ReplayControl(action="speed", speed=1e9))
            assert state.speed == 1000.0
        assert replay.replayer.invalid == 0


@pytest.mark.asyncio
async def test_a_recording_that_cannot_be_written_is_named_and_the_server_does_not_start(
    tmp_path: Path,
) -> None:
    blocked = tmp_path / "file"
    blocked.write_bytes(b"")
    server = SyncServer(record=blocked / "under-a-file.pl3xrec")
    with pytest.raises(RecordingError, match="cannot create the recording"):
        async with server.serve("127.0.0.1", 0):
            pass


@pytest.mark.asyncio
async def test_a_write_failure_stops_recording_not_the_server(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = SyncServer(record=tmp_path / "f.pl3xrec")
    server.sync_component(Position)
    entity = server.world.spawn(Position(x=0, y=0))
    async with server.serve("127.0.0.1", 0):
        files = server.recorder.files if server.recorder else None
        assert files is not None and files._file is not None

        def full(data: Any) -> int:
            raise OSError(28, "No space left on device")

        files._file.write = full  # type: ignore[method-assign]
        server.world.insert(entity, Position(x=1, y=1))
        await wait_until(lambda: files.failed is not None, 5, "the failure")
        server.world.insert(entity, Position(x=2, y=2))  # the server goes on
        await asyncio.sleep(0.05)
    assert "No space left on device" in (files.failed or "")
    assert any("recording stopped" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------- the command line


async def run(*args: str, units: float = 20) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *command(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), units * UNIT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def demo_recording(path: Path, seconds: float, stop: signal.Signals) -> None:
    proc = await asyncio.create_subprocess_exec(
        *command(),
        "demo",
        "--port",
        "0",
        "--sensors",
        "200",
        "--record",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 20 * UNIT)
        await asyncio.sleep(seconds)
        proc.send_signal(stop)
        await asyncio.wait_for(proc.wait(), 20 * UNIT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.asyncio
async def test_record_the_demo_then_replay_it_from_the_command_line(tmp_path: Path) -> None:
    from pl3xus_rx.demo import Pose, RobotStatus, Sensor

    path = tmp_path / "demo.pl3xrec"
    await demo_recording(path, 2.0, signal.SIGINT)
    recording = open_recording(path)
    assert recording.closed and recording.header.app == "pl3xus_rx.demo:register_cell"
    assert recording.end - recording.start > 1.5
    proc = await asyncio.create_subprocess_exec(
        *command(),
        "replay",
        str(path),
        "--port",
        "0",
        "--paused",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20 * UNIT)).decode()
        assert line.startswith(f"replaying {path} (server recording")
        url = line.split(" on ")[1].split("/")[0:3]
        url_text = "/".join(url) + "/"
        code, out, err = await run("replay-control", url_text, "seek", "1.0")
        assert code == 0, err
        assert out.startswith("paused at 1.00 s of ")
        at = recording.start + 1.0
        expected, _ = recording.state_at(at)
        index = {t.name: i for i, t in enumerate(recording.header.types)}
        registry = (
            ClientTypeRegistry.builder()
            .register(Pose)
            .register(Sensor)
            .register(RobotStatus)
            .build()
        )
        async with SyncProvider(url_text, registry) as sync:
            for model in (Pose, Sensor, RobotStatus):
                sync.components(model).subscribe(lambda _: None)
            await sync.wait_synced(5 * UNIT)
            for model in (Pose, Sensor, RobotStatus):
                fields = list(recording.header.types[index[model.__name__]].fields)
                want = {
                    e: dict(zip(fields, values, strict=True))
                    for e, values in expected.values[index[model.__name__]].items()
                }
                got = {
                    int(e): v.model_dump(mode="json")
                    for e, v in sync.components(model).get().items()
                }
                assert got == want, model.__name__
            assert len(sync.components(Sensor).get()) == 200
            with pytest.raises(Forbidden, match="read-only replay"):
                robot = next(iter(sync.components(RobotStatus).get()))
                await sync.mutate(robot, RobotStatus(state="stopped", speed=0.5), timeout=5 * UNIT)
        code, out, _ = await run("replay-control", url_text, "play")
        assert code == 0 and out.startswith("playing at 1.")
        code, out, err = await run("replay-control", url_text, "seek")
        assert code == 1 and "seek needs SECONDS" in err
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 10 * UNIT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0


@pytest.mark.asyncio
async def test_kill_9_while_recording_leaves_a_file_that_replays(tmp_path: Path) -> None:
    path = tmp_path / "killed.pl3xrec"
    await demo_recording(path, 1.0, signal.SIGKILL)
    recording = open_recording(path)
    assert not recording.closed and len(recording.keyframes) >= 1
    assert recording.end > recording.start
    from pl3xus_rx.demo import register_cell

    server = SyncServer()
    register_cell(server)
    replayer = Replayer(recording, server.world, server.registry)
    replayer.seek(recording.end)
    assert replayer.invalid == 0 and not replayer.missing
    assert len(server.world.entities()) > 200
    code, _, err = await run("replay", str(tmp_path / "nothing.pl3xrec"))
    assert code == 2 and "cannot open the recording" in err


def test_replayer_names_types_the_server_does_not_sync(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def record() -> None:
        await record_session(tmp_path / "t.pl3xrec")

    asyncio.run(record())
    server = SyncServer()
    server.sync_component(Position)
    replayer = Replayer(open_recording(tmp_path / "t.pl3xrec"), server.world, server.registry)
    assert replayer.missing == ["Label"]
    replayer.seek(replayer.end)
    assert server.world.peek(Position)
    assert any("Label" in r.getMessage() and "left out" in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_a_seek_is_answered_once_a_client_behind_its_window_shows_the_instant(
    tmp_path: Path,
) -> None:
    """A client past its acknowledgement window is sent nothing until it acknowledges; the
    seek's answer waits until it is current (and its acknowledgement alone, with nothing
    else changing, brings the catch-up)."""
    path = tmp_path / "many.pl3xrec"
    server = SyncServer(sync=SyncSettings(max_update_rate_hz=100), record=path)
    server.sync_component(Position)
    world = server.world
    async with server.serve("127.0.0.1", 0):
        robots = [world.spawn(Position(x=i, y=0)) for i in range(2000)]
        for step in range(1, 8):
            for robot in robots:
                world.insert(robot, Position(x=step, y=float(robot)))
            await asyncio.sleep(0.03)
    recording = open_recording(path)
    replayed = SyncServer(sync=SyncSettings(ack_window_bytes=1024, ack_window_frames=1))
    replayed.sync_component(Position)
    ReplayServer(replayed, recording, playing=False)
    registry = (
        ClientTypeRegistry.builder()
        .register(Position)
        .register_request(ReplayControl, ReplayState, name=REPLAY_REQUEST)
        .build()
    )
    batches = [t for _, kind, t, _ in recording.records(0) if kind == RecordKind.BATCH]
    async with replayed.serve("127.0.0.1", 0) as (host, port):
        async with SyncProvider(f"ws://{host}:{port}", registry) as sync:
            sync.components(Position).subscribe(lambda _: None)
            await sync.wait_synced(5 * UNIT)
            for at in [batches[-1], batches[0], batches[len(batches) // 2], batches[-1]]:
                await sync.request(ReplayControl(action="seek", at=at), timeout=10 * UNIT)
                want, _ = recording.state_at(at)
                shown = {int(e): [v.x, v.y] for e, v in sync.components(Position).get().items()}
                assert shown == want.values[1], f"at {at - recording.start:.3f} s"
        assert replayed.engine.statistics().catch_ups >= 1  # (it was behind, and caught up)


@pytest.mark.asyncio
async def test_a_recording_never_chooses_the_code_replay_runs(tmp_path: Path) -> None:
    """The app a recording names is a suggestion (a crafted file would pick what runs):
    only the demo's is taken on its word; the file itself is readable by its owner only."""
    path = tmp_path / "named.pl3xrec"
    server = SyncServer(record=RecordSettings(path, app="os:system"))
    server.sync_component(Position)
    async with server.serve("127.0.0.1", 0):
        server.world.spawn(Position(x=1, y=1))
        await asyncio.sleep(0.02)
    assert path.stat().st_mode & 0o777 == 0o600
    code, out, err = await run("replay", str(path), "--port", "0")
    assert code == 2 and out == ""
    assert "give --app MODULE:FUNCTION" in err and "it names 'os:system'" in err
    code, _, err = await run("replay", str(path), "--start", "nan", "--app", "x:y")
    assert code == 2 and "not a finite number" in err


@pytest.mark.asyncio
async def test_replay_control_refuses_what_is_not_a_time(tmp_path: Path) -> None:
    path = tmp_path / "s.pl3xrec"
    await record_session(path)
    recording = open_recording(path)
    server = SyncServer()
    for model in TYPES:
        server.sync_component(model)
    replay = ReplayServer(server, recording, playing=False)
    with pytest.raises(ValueError, match="finite"):
        ReplayServer(SyncServer(), recording, start=float("nan"))
    registry = (
        ClientTypeRegistry.builder()
        .register_request(ReplayControl, ReplayState, name=REPLAY_REQUEST)
        .build()
    )
    async with server.serve("127.0.0.1", 0) as (host, port):
        async with SyncProvider(f"ws://{host}:{port}", registry) as sync:
            for bad in (
                {"action": "seek", "at": float("nan")},
                {"action": "speed", "speed": float("inf")},
            ):
                with pytest.raises(InvalidValue):
                    await sync.request(ReplayControl.model_construct(**bad), timeout=5 * UNIT)
        # a query named by something that is not a string: refused, not an internal error
        import msgpack
        from websockets.asyncio.client import connect as ws_connect

        async with ws_connect(f"ws://{host}:{port}/", compression=None) as ws:
            await ws.recv()
            await ws.send(msgpack.packb([FrameKind.QUERY, 5, ["x"], {}]))
            reply = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5 * UNIT))
            assert reply[:4] == [FrameKind.REPLY, 5, Status.FORBIDDEN, "read-only replay"]
    assert replay.replayer.position == recording.start


@pytest.mark.asyncio
async def test_a_flood_of_seeks_is_merged_and_every_one_answered(tmp_path: Path) -> None:
    path = tmp_path / "s.pl3xrec"
    truth, _ = await record_session(path)
    recording = open_recording(path)
    server = SyncServer()
    for model in TYPES:
        server.sync_component(model)
    replay = ReplayServer(server, recording, playing=False)
    runs = 0
    seek = replay.replayer.seek

    def counted(at: float) -> None:
        nonlocal runs
        runs += 1
        seek(at)

    replay.replayer.seek = counted  # type: ignore[method-assign]
    registry = (
        ClientTypeRegistry.builder()
        .register(Position)
        .register(Label)
        .register_request(ReplayControl, ReplayState, name=REPLAY_REQUEST)
        .build()
    )
    instants = sorted(truth.at)
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}", registry) as sync,
    ):
        for model in TYPES:
            sync.components(model).subscribe(lambda _: None)
        await sync.wait_synced(5 * UNIT)
        asks = [instants[i % len(instants)] for i in range(200)]
        answers = await asyncio.wait_for(
            asyncio.gather(*(sync.request(ReplayControl(action="seek", at=at)) for at in asks)),
            20 * UNIT,
        )
        assert len(answers) == 200
        # the latest wins: every answer says where the replay went, and the view shows it
        assert answers[-1].position == asks[-1]
        assert view_of(sync) == truth.at[asks[-1]]
    assert runs < 100, runs


@pytest.mark.asyncio
async def test_only_the_control_roles_may_move_a_shared_replay(tmp_path: Path) -> None:
    from pl3xus_rx import Identity, bearer_tokens

    path = tmp_path / "s.pl3xrec"
    await record_session(path)
    recording = open_recording(path)
    server = SyncServer(
        authenticate=bearer_tokens(
            {"op": Identity.of("olga", "operator"), "view": Identity.of("vic", "viewer")}
        )
    )
    for model in TYPES:
        server.sync_component(model)
    replay = ReplayServer(server, recording, playing=False, control_roles=("operator",))
    registry = (
        ClientTypeRegistry.builder()
        .register_request(ReplayControl, ReplayState, name=REPLAY_REQUEST)
        .build()
    )
    async with server.serve("127.0.0.1", 0) as (host, port):
        async with SyncProvider(f"ws://{host}:{port}", registry, token="view") as viewer:
            state = await viewer.request(ReplayControl(action="status"), timeout=5 * UNIT)
            assert state.position == recording.start
            for action in ("play", "pause"):
                with pytest.raises(Forbidden, match="needs one of the roles"):
                    await viewer.request(ReplayControl(action=action), timeout=5 * UNIT)
            with pytest.raises(Forbidden):
                await viewer.request(ReplayControl(action="seek", at=recording.end))
        async with SyncProvider(f"ws://{host}:{port}", registry, token="op") as operator:
            state = await operator.request(ReplayControl(action="seek", at=recording.end))
            assert state.position == recording.end
    assert replay.replayer.position == recording.end
