"""A simulated robot cell: what ``pl3xus-rx demo`` serves.

A cell entity with robots (pose, joint angles, status and speed, control), a conveyor and a
wall of sensors that change at 10 to 100 Hz. Operators jog robots, set their speed and start or
stop them through targeted requests, allowed only to the client that holds control of the
robot (or of the cell).

Run it with ``pl3xus-rx demo`` (or ``python -m pl3xus_rx demo``); connect with
``client_sync`` using the models below. With ``--state PATH`` the cell survives restarts:
robot states, speeds and poses, the conveyor, and the program library come back as they
were; the live readings (sensors, joint angles) are not saved and start afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, Field

from .exceptions import Forbidden, InvalidValue, NotFound
from .instruments import ActivityLog
from .net import NetworkSettings
from .recording import RecordSettings
from .security import AuthenticationFailed, Authenticator, Identity, bearer_tokens
from .server import SyncServer
from .sync import Authorized, Denied, MutationContext, SyncSettings
from .world import EntityId, World

if TYPE_CHECKING:
    from ._http import HttpRequest
    from .scaleout import NatsOptions

__all__ = [
    "Ack",
    "CellInfo",
    "Conveyor",
    "CreateProgram",
    "DeleteProgram",
    "ListPrograms",
    "Program",
    "ProgramList",
    "ProgramRef",
    "ProgramRow",
    "RenameProgram",
    "Jog",
    "JogResult",
    "Joints",
    "Name",
    "DEMO_APP",
    "SENSOR_UPDATES",
    "Pose",
    "RobotStatus",
    "Sensor",
    "SetSpeed",
    "Start",
    "Stop",
    "build_cell",
    "demo_security",
    "describe",
    "register_cell",
    "run_demo",
    "simulate",
]

logger = logging.getLogger(__name__)


class Name(BaseModel):
    """A human-readable name."""

    text: str


class Pose(BaseModel):
    """A robot's position in the cell, in millimetres and radians."""

    x: float
    y: float
    theta: float = 0.0


class Joints(BaseModel):
    """A robot's six joint angles, in degrees."""

    angles: tuple[float, float, float, float, float, float]


class RobotStatus(BaseModel):
    """What a robot is doing and how fast (fraction of its maximum speed)."""

    state: Literal["idle", "running", "stopped"] = "idle"
    speed: float = Field(0.5, ge=0.0, le=1.0)


class Conveyor(BaseModel):
    """The cell's conveyor."""

    running: bool = True
    speed_mm_s: float = 120.0
    parts: int = 0


class Sensor(BaseModel):
    """One reading of a sensor."""

    kind: str
    value: float
    unit: str
    rate_hz: float


class CellInfo(BaseModel):
    """Facts about the cell, to show in a dashboard header."""

    robots: int
    sensors: int


class Jog(BaseModel):
    """Move a robot by (dx, dy) millimetres."""

    dx: float = Field(ge=-100, le=100)
    dy: float = Field(ge=-100, le=100)


class JogResult(BaseModel):
    """Where the robot is after a jog."""

    x: float
    y: float


class SetSpeed(BaseModel):
    """Set a robot's speed (fraction of its maximum)."""

    speed: float = Field(ge=0.0, le=1.0)


class Start(BaseModel):
    """Start a robot."""


class Stop(BaseModel):
    """Stop a robot."""


class Ack(BaseModel):
    """A request was carried out; ``state`` is the robot's state afterwards."""

    state: str


ProgramName = Annotated[str, Field(min_length=1, max_length=40)]


class Program(BaseModel):
    """A robot program in the cell's library (an entity under the cell)."""

    name: ProgramName
    steps: int = Field(default=0, ge=0, le=10_000)


class CreateProgram(BaseModel):
    """Add a program to the library (names are unique)."""

    name: ProgramName


class RenameProgram(BaseModel):
    """Rename a program (targeted at the program's entity)."""

    name: ProgramName


class DeleteProgram(BaseModel):
    """Delete a program (targeted at the program's entity)."""


class ProgramRef(BaseModel):
    """The program a request created or changed."""

    program: int
    name: str


class ListPrograms(BaseModel):
    """A query: every program of the library, by name."""


class ProgramRow(BaseModel):
    """One program of :class:`ProgramList`."""

    program: int
    name: str
    steps: int


class ProgramList(BaseModel):
    """The answer to :class:`ListPrograms`, sorted by name."""

    programs: list[ProgramRow]


DEMO_APP = "pl3xus_rx.demo:register_cell"
"""What registers the demo's types (``--app`` for ``pl3xus-rx gateway`` and ``replay``)."""
SENSOR_UPDATES = 20_000.0
"""The demo's default budget of sensor readings per second, all sensors together (about a
third of a core here). Each sensor picks 10, 20, 50 or 100 Hz; when that adds up to more than
the budget, every rate is scaled down alike (and ``Sensor.rate_hz`` says the real rate)."""


def build_cell(
    server: SyncServer,
    *,
    robots: int = 3,
    sensors: int = 50,
    seed: int = 1,
    sensor_updates: float | None = SENSOR_UPDATES,
) -> dict[str, Any]:
    """Register the demo's components and requests on ``server`` (:func:`register_cell`)
    and spawn the cell; with a state file (``SyncServer(state=PATH)``), restore the cell it
    holds instead, if any (then ``robots`` and ``sensors`` are the saved cell's, and its
    sensors get fresh readings).

    Args:
        sensor_updates: The most sensor readings per second in all (``None``: no limit).

    Returns:
        ``{"cell": id, "robots": [ids], "conveyor": id, "sensors": [ids],
        "sensor_updates": readings per second in all, "restored": bool}``.
    """
    register_cell(server)
    if server.state_path is not None and server.load_state() is not None:
        restored = _restore_cell(server, seed, sensor_updates)
        if restored is not None:
            return restored
        logger.warning("the state file holds no demo cell: spawning a new one")
    return _spawn_cell(server, robots, sensors, seed, sensor_updates)


def register_cell(server: SyncServer) -> None:
    """Register what the demo syncs and answers (components, requests, the program
    library), without spawning anything: what a gateway of the demo's authority runs
    (``pl3xus-rx gateway --app pl3xus_rx.demo:register_cell``)."""
    components: tuple[type[BaseModel], ...] = (Name, Conveyor, CellInfo)
    for component in components:
        server.sync_component(component)
    # The last two minutes of every robot's moves, for trends that start with the past.
    server.sync_component_builder(Pose).history(120.0, ("x", "y")).build()
    # Live readings: a restart (with a state file) does not bring them back.
    server.sync_component_builder(Joints).persist(False).history(120.0).build()
    server.sync_component_builder(Sensor).persist(False).build()
    # Operators may edit a robot's status directly, if they control it (or the cell).
    server.sync_component_builder(RobotStatus).targeted().with_default_entity_policy().build()

    def robot_status(world: World, entity: EntityId) -> RobotStatus:
        status = world.get(entity, RobotStatus)
        if status is None:
            raise ValueError(f"entity {entity} is not a robot")
        return status

    def jog(world: World, ctx: Any, entity: EntityId, request: Jog) -> JogResult:
        robot_status(world, entity)
        with world.modify(entity, Pose) as pose:
            pose.x += request.dx
            pose.y += request.dy
        moved = world.get(entity, Pose)
        assert moved is not None
        return JogResult(x=moved.x, y=moved.y)

    def set_speed(world: World, ctx: Any, entity: EntityId, request: SetSpeed) -> Ack:
        status = robot_status(world, entity)
        world.insert(entity, status.model_copy(update={"speed": request.speed}))
        return Ack(state=status.state)

    def start(world: World, ctx: Any, entity: EntityId, request: Start) -> Ack:
        status = robot_status(world, entity)
        world.insert(entity, status.model_copy(update={"state": "running"}))
        return Ack(state="running")

    def stop(world: World, ctx: Any, entity: EntityId, request: Stop) -> Ack:
        status = robot_status(world, entity)
        world.insert(entity, status.model_copy(update={"state": "stopped"}))
        return Ack(state="stopped")

    for model, handler in ((Jog, jog), (SetSpeed, set_speed), (Start, start), (Stop, stop)):
        server.request(model).targeted().with_default_entity_policy().register(handler)
    _program_library(server)


def _spawn_cell(
    server: SyncServer, robots: int, sensors: int, seed: int, sensor_updates: float | None
) -> dict[str, Any]:
    world = server.world
    cell = world.spawn(Name(text="cell 1"), CellInfo(robots=robots, sensors=sensors))
    robot_ids = [
        world.spawn(
            Name(text=f"robot {i + 1}"),
            Pose(x=400.0 * i, y=0.0),
            Joints(angles=(0.0, -45.0, 90.0, 0.0, 45.0, 0.0)),
            RobotStatus(state="running" if i % 2 == 0 else "idle"),
            parent=cell,
        )
        for i in range(robots)
    ]
    conveyor = world.spawn(Name(text="conveyor"), Conveyor(), parent=cell)
    specs, total = _sensor_specs(sensors, seed, sensor_updates)
    sensor_ids = [
        world.spawn(
            Name(text=f"{kind} {i + 1}"),
            Sensor(kind=kind, value=base, unit=unit, rate_hz=rate),
            parent=cell,
        )
        for i, (kind, unit, base, rate) in enumerate(specs)
    ]
    return {
        "cell": cell,
        "robots": robot_ids,
        "conveyor": conveyor,
        "sensors": sensor_ids,
        "sensor_updates": total,
        "restored": False,
    }


_SENSOR_KINDS = [
    ("temperature", "°C", 40.0),
    ("pressure", "bar", 6.0),
    ("vibration", "mm/s", 2.0),
    ("current", "A", 12.0),
]


def _sensor_specs(
    sensors: int, seed: int, sensor_updates: float | None
) -> tuple[list[tuple[str, str, float, float]], int]:
    """``(kind, unit, first value, rate)`` of each sensor, and the readings per second in
    all: the same for the same count and seed (a restored cell's sensors get theirs
    back)."""
    rng = random.Random(seed)
    rates = [rng.choice([10.0, 20.0, 50.0, 100.0]) for _ in range(sensors)]
    scale = 1.0
    if sensor_updates is not None and sum(rates) > sensor_updates:
        scale = sensor_updates / sum(rates)
    specs = []
    for i, chosen in enumerate(rates):
        kind, unit, base = _SENSOR_KINDS[i % len(_SENSOR_KINDS)]
        specs.append((kind, unit, base, round(chosen * scale, 3)))
    return specs, round(sum(rates) * scale)


def _restore_cell(
    server: SyncServer, seed: int, sensor_updates: float | None
) -> dict[str, Any] | None:
    """The cell a state file restored, its sensors given fresh readings (``None``: it
    holds no cell)."""
    world = server.world
    cells = [entity for entity, _ in world.query(CellInfo)]
    if not cells:
        return None
    cell = cells[0]
    children = world.children(cell)
    robots = [e for e in children if world.has(e, RobotStatus)]
    conveyors = [e for e in children if world.has(e, Conveyor)]
    kinds = {kind for kind, _, _ in _SENSOR_KINDS}
    sensor_ids = []
    for entity in children:
        name = world.get(entity, Name)
        types = set(world.component_types(entity))
        if name is not None and types == {Name} and name.text.split(" ")[0] in kinds:
            sensor_ids.append(entity)  # (its reading was not saved)
    specs, total = _sensor_specs(len(sensor_ids), seed, sensor_updates)
    for entity, (kind, unit, base, rate) in zip(sensor_ids, specs, strict=True):
        world.insert(entity, Sensor(kind=kind, value=base, unit=unit, rate_hz=rate))
    for entity in robots:
        if not world.has(entity, Joints):
            world.insert(entity, Joints(angles=(0.0, -45.0, 90.0, 0.0, 45.0, 0.0)))
    logger.info(
        "demo cell restored from %s: %d robots, %d sensors (--robots and --sensors apply "
        "to a new cell)",
        server.state_path,
        len(robots),
        len(sensor_ids),
    )
    return {
        "cell": cell,
        "robots": robots,
        "conveyor": conveyors[0] if conveyors else None,
        "sensors": sensor_ids,
        "sensor_updates": total,
        "restored": True,
    }


def _program_library(server: SyncServer) -> None:
    """Programs: created, renamed and deleted through requests, listed by a query that
    those requests invalidate, each change announced to everyone as a notification."""
    server.sync_component(Program)  # read-only for clients: changed through the requests

    def who(ctx: Any) -> str:
        return "anonymous" if ctx.identity.anonymous else str(ctx.identity.name)

    def may_edit(ctx: Any) -> None:
        identity = ctx.identity
        if not identity.anonymous and not identity.has_role("operator"):
            raise Forbidden(f"{identity.name} may watch but not edit programs")

    def unique(world: World, name: str, besides: EntityId | None = None) -> None:
        for entity, program in world.query(Program):
            if program.name == name and entity != besides:
                raise InvalidValue(f"a program named {name!r} exists already", field="name")

    def program_of(world: World, entity: EntityId) -> Program:
        program = world.get(entity, Program) if world.contains(entity) else None
        if program is None:
            raise NotFound(f"entity {entity} is not a program")
        return program

    def create(world: World, ctx: Any, request: CreateProgram) -> ProgramRef:
        may_edit(ctx)
        unique(world, request.name)
        cells = [e for e, _ in world.query(CellInfo)]
        entity = world.spawn(Program(name=request.name), parent=cells[0] if cells else None)
        server.notify(f"program {request.name!r} created by {who(ctx)}", level="success")
        return ProgramRef(program=entity, name=request.name)

    def rename(world: World, ctx: Any, entity: EntityId, request: RenameProgram) -> ProgramRef:
        may_edit(ctx)
        old = program_of(world, entity)
        unique(world, request.name, besides=entity)
        world.insert(entity, old.model_copy(update={"name": request.name}))
        server.notify(f"program {old.name!r} renamed {request.name!r} by {who(ctx)}", level="info")
        return ProgramRef(program=entity, name=request.name)

    def delete(world: World, ctx: Any, entity: EntityId, request: DeleteProgram) -> ProgramRef:
        may_edit(ctx)
        old = program_of(world, entity)
        world.despawn(entity)
        server.notify(f"program {old.name!r} deleted by {who(ctx)}", level="warning")
        return ProgramRef(program=entity, name=old.name)

    def listing(world: World, query: ListPrograms) -> ProgramList:
        rows = [ProgramRow(program=e, name=p.name, steps=p.steps) for e, p in world.query(Program)]
        return ProgramList(programs=sorted(rows, key=lambda r: r.name.lower()))

    server.request(CreateProgram).invalidates(ListPrograms).register(create)
    server.request(RenameProgram).targeted().invalidates(ListPrograms).register(rename)
    server.request(DeleteProgram).targeted().invalidates(ListPrograms).register(delete)
    server.query(ListPrograms).register(listing)


# kind -> (set point, noise per step, lowest, highest): plausible for hours
_SENSOR_RANGES = {
    "temperature": (40.0, 0.15, 15.0, 90.0),
    "pressure": (6.0, 0.03, 0.0, 12.0),
    "vibration": (2.0, 0.05, 0.0, 15.0),
    "current": (12.0, 0.1, 0.0, 40.0),
}


def sensor_step(kind: str, value: float, rng: random.Random) -> float:
    """The next reading of a demo sensor: noise pulled back towards the kind's set point
    (a mean-reverting walk), kept within what such a sensor can read."""
    base, noise, low, high = _SENSOR_RANGES.get(kind, (value, 0.0, value, value))
    nxt = value + 0.05 * (base - value) + rng.gauss(0.0, noise)
    return round(min(high, max(low, nxt)), 3)


async def simulate(
    server: SyncServer,
    cell: dict[str, Any],
    *,
    tick_hz: float = 100.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Move the running robots, the conveyor and the sensors until ``stop`` is set."""
    world = server.world
    rng = random.Random(2)
    dt = 1.0 / tick_hz
    tick = 0
    # ticks between updates -> the sensors due at each tick phase: spread over the period
    # so that slow sensors do not all update on the same tick
    by_period: dict[int, list[list[EntityId]]] = {}
    for n, sensor_id in enumerate(cell["sensors"]):
        sensor = world.get(sensor_id, Sensor)
        if sensor is not None and sensor.rate_hz > 0:
            period = max(1, round(tick_hz / sensor.rate_hz))
            phases = by_period.setdefault(period, [[] for _ in range(period)])
            phases[n % period].append(sensor_id)
    loop = asyncio.get_running_loop()
    start = loop.time()
    while stop is None or not stop.is_set():
        tick += 1
        t = tick * dt
        for n, robot in enumerate(cell["robots"]):
            if not world.contains(robot):
                continue
            status = world.get(robot, RobotStatus)
            if status is None or status.state != "running":
                continue
            phase = t * status.speed * 2.0 + n
            world.insert(
                robot,
                Joints(angles=tuple(round(30.0 * math.sin(phase + k), 2) for k in range(6))),
            )
            if tick % 5 == 0:
                with world.modify(robot, Pose) as pose:
                    pose.theta = round((pose.theta + 0.05 * status.speed) % (2 * math.pi), 3)
        belt = cell["conveyor"]
        conveyor = world.get(belt, Conveyor) if belt is not None and world.contains(belt) else None
        if conveyor is not None and conveyor.running and tick % int(tick_hz) == 0:
            world.insert(
                cell["conveyor"], conveyor.model_copy(update={"parts": conveyor.parts + 1})
            )
        for period, phases in by_period.items():
            # only the sensors due this tick are read (reading a thousand of them at 100
            # ticks/s would cost a core)
            for sensor_id in phases[tick % period]:
                sensor = world.get(sensor_id, Sensor)
                if sensor is None:
                    continue
                value = sensor_step(sensor.kind, sensor.value, rng)
                world.insert(sensor_id, sensor.model_copy(update={"value": value}))
        # keep to the tick rate without drifting
        await asyncio.sleep(max(0.0, start + tick * dt - loop.time()))


def describe(
    address: tuple[str, int],
    cell: dict[str, Any],
    token: str | None = None,
    *,
    authenticated: bool = False,
    nats: str | None = None,
    cluster: str = "demo",
    state: str | None = None,
    app: bool = False,
) -> list[str]:
    """The lines a command line shows once the demo is up (``token``: the operator's, for
    the DevTools link; ``authenticated``: clients must authenticate although no token is
    shown, e.g. one read from a file, or JWTs; ``nats``: the NATS server of which the demo
    is the authority of cluster ``cluster``, shown without its user info; ``state``: the
    state file the cell is kept in; ``app``: a folder is served at ``/app/``)."""
    base = f"{address[0]}:{address[1]}"
    devtools = f"http://{base}/devtools" + (f"?token={quote(token)}" if token else "")
    lines = [
        f"pl3xus_rx demo: {len(cell['robots'])} robots, a conveyor, {len(cell['sensors'])} sensors"
        f" ({cell.get('sensor_updates', 0):,} readings/s)",
        f"  WebSocket: ws://{base}/",
        f"  Health:    http://{base}/healthz",
        f"  DevTools:  {devtools}",
    ]
    if app:
        lines.append(
            f"  App:       http://{base}/app/" + (f"?token={quote(token)}" if token else "")
        )
    if nats is not None:
        from .scaleout import redact_url

        lines.append(f"  NATS:      authority of cluster {cluster!r} on {redact_url(nats)}")
    if state is not None:
        how = "restored from it" if cell.get("restored") else "a new cell, saved to it"
        lines.append(f"  State:     {state} ({how})")
    if token or authenticated:
        lines.append("  Clients authenticate with Authorization: Bearer <token> (or ?token=).")
    lines.append("Ctrl-C to stop.")
    return lines


def demo_security(
    token: str | None,
    viewer_token: str | None,
    *,
    jwt: Authenticator | None = None,
) -> tuple[Authenticator | None, Callable[..., Any] | None]:
    """The demo's authenticator and authorizer (``pl3xus-rx demo`` and ``pl3xus-rx
    gateway`` both use it).

    With ``token``, its holder is an operator (and admin: DevTools); ``viewer_token``'s
    holder may only watch. With ``jwt`` (a :func:`~pl3xus_rx.jwt_verifier`), a JSON Web
    Token is accepted too: its identity's roles come from its ``roles`` claim, and the same
    authorizer applies (``operator``: may act; ``admin``: DevTools; anything else: watch).
    A static token is checked first; any other token goes to ``jwt``.

    Raises:
        ValueError: ``viewer_token`` without ``token`` or equal to it.
    """
    if token is None:
        if viewer_token is not None:
            raise ValueError("--viewer-token needs --token (the operator's) too")
        if jwt is None:
            return None, None
    tokens: dict[str, Identity] = {}
    if token is not None:
        tokens[token] = Identity.of("operator", "operator", "admin")
    if viewer_token is not None:
        if viewer_token == token:
            raise ValueError("the viewer token must differ from the operator token")
        tokens[viewer_token] = Identity.of("viewer", "viewer")

    def operators_only(world: World, ctx: MutationContext, entity: EntityId, value: Any) -> Any:
        if ctx.identity.has_role("operator"):
            return Authorized()
        return Denied(f"{ctx.identity.name} may watch but not act (needs the 'operator' role)")

    if not tokens:
        return jwt, operators_only
    static = bearer_tokens(tokens)
    if jwt is None:
        return static, operators_only
    verify = jwt

    def static_or_jwt(request: HttpRequest) -> Any:
        try:
            return static(request)
        except AuthenticationFailed as exc:
            if exc.status == 401:  # no token at all
                raise
        return verify(request)

    return static_or_jwt, operators_only


async def run_demo(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    robots: int = 3,
    sensors: int = 50,
    rate_hz: float = 30.0,
    sensor_updates: float | None = SENSOR_UPDATES,
    on_ready: Callable[[tuple[str, int], dict[str, Any]], None] | None = None,
    token: str | None = None,
    viewer_token: str | None = None,
    allow_anonymous: bool = False,
    nats: str | None = None,
    cluster: str = "demo",
    activity: bool = False,
    jwt: Authenticator | None = None,
    allowed_hosts: tuple[str, ...] | None = None,
    nats_options: NatsOptions | None = None,
    state: str | None = None,
    serve: str | None = None,
    record: str | None = None,
) -> None:
    """Serve the demo cell until SIGINT / SIGTERM (then shut down gracefully).

    Args:
        on_ready: Called with the bound address and the cell's entity ids once serving
            (the command line prints :func:`describe` of them).
        token: Turn on token authentication; this token's holder is an operator.
        viewer_token: A second token whose holder may watch but not act.
        allow_anonymous: Without a token, admit clients from every address (else only
            loopback clients: protected mode).
        sensor_updates: The most sensor readings per second in all (see
            :data:`SENSOR_UPDATES`).
        nats: Also be the authority of cluster ``cluster`` on this NATS server, for
            ``pl3xus-rx gateway`` processes to serve clients from (docs/scaling.md).
        activity: Log who connects, what each client does and who leaves
            (:class:`~pl3xus_rx.instruments.ActivityLog`, at INFO).
        jwt: Also accept JSON Web Tokens (a :func:`~pl3xus_rx.jwt_verifier`; see
            :func:`demo_security` for how their roles count).
        allowed_hosts: ``NetworkSettings.allowed_hosts``: more ``Host`` names this server
            answers to.
        nats_options: Credentials and TLS for ``nats``
            (:class:`~pl3xus_rx.scaleout.NatsOptions`).
        state: Keep the cell in this state file across restarts (docs/persistence.md):
            robot states, speeds and poses, the conveyor and the programs come back; live
            readings (sensors, joints) start afresh.
        serve: Also serve the page files of this folder (read now) at ``/app/<name>``,
            ``index.html`` at ``/app/`` (examples/web_hmi: docs/web.md).
        record: Record the session into this file (docs/recording.md); ``pl3xus-rx replay
            FILE`` serves it again.

    Raises:
        ValueError: the tokens do not fit together (see :func:`demo_security`), or
            ``serve`` is not a folder of page files.
        StateError: the state file cannot be used (named).
    """
    authenticate, authorizer = demo_security(token, viewer_token, jwt=jwt)
    server = SyncServer(
        NetworkSettings(allow_anonymous=allow_anonymous, allowed_hosts=allowed_hosts),
        SyncSettings(max_update_rate_hz=rate_hz),
        authenticate=authenticate,
        state=state,
        record=None if record is None else RecordSettings(record, app=DEMO_APP),
    )
    server.authorizer = authorizer
    if serve is not None:
        from ._static import serve_directory

        serve_directory(server.net, serve)
    if activity:
        server.instrument(ActivityLog(address_of=server.address_of))
    cell = build_cell(server, robots=robots, sensors=sensors, sensor_updates=sensor_updates)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    fenced: asyncio.Event | None = None
    reason = ""
    async with server.serve(host, port) as address, contextlib.AsyncExitStack() as stack:
        if nats is not None:
            from .scaleout import Authority, redact_url

            authority = Authority(server, nats, cluster, nats_options=nats_options)
            await stack.enter_async_context(authority)
            logger.info("demo cell is the authority of cluster %r on %s", cluster, redact_url(nats))
            fenced = authority.fenced

            async def stop_when_fenced() -> None:
                nonlocal reason
                await authority.fenced.wait()  # (another authority is the truth now)
                reason = authority.fenced_reason
                stop.set()

            stack.push_async_callback(_cancel, asyncio.create_task(stop_when_fenced()))
        logger.info("demo cell serving on ws://%s:%d/", *address)
        if on_ready is not None:
            on_ready(address, cell)
        sim = asyncio.create_task(simulate(server, cell, stop=stop))
        await stop.wait()
        await sim
    if fenced is not None and fenced.is_set():
        from .scaleout import LeaseLost

        raise LeaseLost(reason)
    logger.info("demo stopped")


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
