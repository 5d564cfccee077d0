"""Identities, authentication at the handshake, protected mode, origins, TLS, and identity in
every decision."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from typing import Any

import jwt
import pytest
import trustme
from conftest import UNIT, http_get, make_network, url_of, wait_until
from pydantic import BaseModel
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import (
    ANONYMOUS,
    AuthenticationFailed,
    Authorized,
    ConnectFailed,
    Denied,
    EntityControl,
    Forbidden,
    Identity,
    NetworkSettings,
    SyncServer,
    bearer_tokens,
    jwt_verifier,
)
from pl3xus_rx.net import HttpRequest
from pl3xus_rx.security import is_loopback, origin_allowed, token_of
from pl3xus_rx.testing import MemoryTransport

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]

ANN = Identity.of("ann", "operator")
VIC = Identity.of("vic", "viewer")
ROOT = Identity.of("root", "admin", "operator")
TOKENS = {"ann-token": ANN, "vic-token": VIC, "root-token": ROOT}


class Speed(BaseModel):
    value: float


REGISTRY = ClientTypeRegistry.builder().register(Speed).build()


async def test_helpers_read_tokens_loopback_and_origins() -> None:
    def req(target: str = "/", **headers: str) -> HttpRequest:
        return HttpRequest.build(target, [(k.replace("_", "-"), v) for k, v in headers.items()])

    assert token_of(req(Authorization="Bearer abc")) == "abc"
    assert token_of(req("/?token=q")) == "q"
    assert token_of(req(Cookie="a=1; pl3xus_token=c")) == "c"
    assert token_of(req(Authorization="Basic xyz")) is None
    assert all(map(is_loopback, ["127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"]))
    assert not any(map(is_loopback, ["10.0.0.1", "203.0.113.9", "", "localhost"]))
    host = {"Host": "hmi.local:8080"}
    assert origin_allowed(req(**host), None)  # no Origin: not a browser
    assert origin_allowed(req(Origin="http://hmi.local:8080", **host), None)
    assert not origin_allowed(req(Origin="http://evil.example", **host), None)
    assert origin_allowed(req(Origin="http://evil.example", **host), ["http://evil.example"])
    assert origin_allowed(req(Origin="https://x", **host), ["*"])


async def test_no_token_or_a_wrong_one_is_refused_at_the_handshake() -> None:
    server = SyncServer(authenticate=bearer_tokens(TOKENS))
    server.sync_component(Speed)
    async with server.serve("127.0.0.1", 0) as (host, port):
        url = f"ws://{host}:{port}/"
        with pytest.raises(InvalidStatus) as info:
            async with ws_connect(url):
                pass
        assert info.value.response.status_code == 401
        assert info.value.response.headers["WWW-Authenticate"] == "Bearer"
        assert b"token is required" in info.value.response.body
        with pytest.raises(ConnectFailed, match="HTTP 403: the token is not valid"):
            async with SyncProvider(url, REGISTRY, token="nope"):
                pass
        async with SyncProvider(url, REGISTRY, token="ann-token") as sync:
            await wait_until(lambda: len(server.net.connections) == 1)
            assert server.identity_of(server.net.connections[0]) == ANN
            assert sync.connection_id is not None
            assert sync.identity is not None  # the welcome says who we are
            assert (sync.identity.name, sync.identity.roles) == ("ann", frozenset({"operator"}))
            assert not sync.identity.anonymous
        # a browser passes it in the URL (it cannot set headers)
        async with ws_connect(url + "?token=vic-token") as ws:
            assert (await asyncio.wait_for(ws.recv(), 5 * UNIT))[:2] == b"\x92\x01"
        stats = server.net.statistics()
        assert stats.auth_failures == 2 and stats.refused == 2


async def test_async_authenticators_and_their_failures() -> None:
    calls: list[str] = []

    async def check(request: HttpRequest) -> Identity:
        await asyncio.sleep(0)
        calls.append(request.path)
        if request.param("who") == "boom":
            raise RuntimeError("bug in the authenticator")
        if request.param("who") != "ann":
            raise AuthenticationFailed("unknown user", status=403)
        return ANN

    net = make_network()
    net.authenticate(check)
    await net.listen("127.0.0.1", 0)
    client = make_network()
    with pytest.raises(ConnectFailed, match="403: unknown user"):
        await client.connect(url_of(net) + "?who=eve")
    with pytest.raises(ConnectFailed, match="500"):
        await client.connect(url_of(net) + "?who=boom")
    await client.connect(url_of(net) + "?who=ann")
    await wait_until(lambda: len(net.connections) == 1)
    assert net.identity_of(net.connections[0]) is ANN
    assert calls == ["/", "/", "/"]
    await client.close()
    await net.close()


async def test_jwt_verifier() -> None:
    key = "s3cret-key-of-a-reasonable-length-for-hs256"
    auth = jwt_verifier(key, audience="cell-7")

    def request(claims: dict[str, Any]) -> HttpRequest:
        token = jwt.encode(claims, key, algorithm="HS256")
        return HttpRequest.build("/", [("Authorization", f"Bearer {token}")])

    soon = datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(minutes=5)
    identity = auth(request({"sub": "ann", "roles": ["operator"], "aud": "cell-7", "exp": soon}))
    assert isinstance(identity, Identity)
    assert identity.name == "ann" and identity.has_role("operator")
    assert identity.claims["aud"] == "cell-7"
    past = datetime.datetime.now(tz=datetime.UTC) - datetime.timedelta(minutes=5)
    with pytest.raises(AuthenticationFailed, match="expired") as info:
        auth(request({"sub": "ann", "aud": "cell-7", "exp": past}))
    assert info.value.status == 401
    with pytest.raises(AuthenticationFailed) as info:
        auth(request({"sub": "ann", "aud": "other", "exp": soon}))
    assert info.value.status == 403
    with pytest.raises(AuthenticationFailed, match="not valid"):
        auth(HttpRequest.build("/", [("Authorization", "Bearer not.a.jwt")]))
    forged = jwt.encode({"sub": "x", "aud": "cell-7", "exp": soon}, "another-key-" * 4)
    with pytest.raises(AuthenticationFailed):
        auth(HttpRequest.build(f"/?token={forged}"))


async def test_protected_mode_refuses_remote_clients_without_an_authenticator() -> None:
    hub = MemoryTransport(client_host="203.0.113.7")  # a client from another machine
    server = SyncServer(transport=hub)
    async with server.serve("mem", 1):
        client = make_network(transport=hub)
        with pytest.raises(ConnectFailed, match="403: this server accepts only local clients"):
            await client.connect("ws://mem:1/")
        hub.client_host = "127.0.0.1"
        await client.connect("ws://mem:1/")  # loopback: anonymous and allowed
        await wait_until(lambda: len(server.net.connections) == 1)
        assert server.identity_of(server.net.connections[0]) is ANONYMOUS
        await client.close()
    anyone = SyncServer(NetworkSettings(allow_anonymous=True), transport=hub)
    hub.client_host = "203.0.113.7"
    async with anyone.serve("mem", 2):
        client = make_network(transport=hub)
        await client.connect("ws://mem:2/")
        await client.close()
    authed = SyncServer(transport=hub, authenticate=bearer_tokens(TOKENS))
    async with authed.serve("mem", 3):
        client = make_network(transport=hub)
        await client.connect("ws://mem:3/", headers={"Authorization": "Bearer ann-token"})
        await wait_until(lambda: len(authed.net.connections) == 1)
        assert authed.identity_of(authed.net.connections[0]) == ANN
        await client.close()


async def test_a_browser_from_another_origin_is_refused() -> None:
    server = SyncServer()
    async with server.serve("127.0.0.1", 0) as (host, port):
        url = f"ws://{host}:{port}/"
        with pytest.raises(InvalidStatus) as info:
            async with ws_connect(url, origin="http://evil.example"):  # type: ignore[arg-type]
                pass
        assert info.value.response.status_code == 403
        own = f"http://{host}:{port}"
        async with ws_connect(url, origin=own) as ws:  # type: ignore[arg-type]
            assert (await asyncio.wait_for(ws.recv(), 5 * UNIT))[:2] == b"\x92\x01"
        async with ws_connect(url) as ws:  # no Origin: not a browser
            assert (await asyncio.wait_for(ws.recv(), 5 * UNIT))[:2] == b"\x92\x01"


def operators_only(world: Any, ctx: Any, entity: int, value: BaseModel) -> Authorized | Denied:
    if ctx.identity.has_role("operator"):
        return Authorized()
    return Denied(f"{ctx.identity.name} may only watch (needs the 'operator' role)")


async def test_identity_reaches_policies_the_authorizer_and_control() -> None:
    seen: list[Identity] = []

    def policy(world: Any, ctx: Any, entity: int) -> Authorized:
        seen.append(ctx.identity)
        return Authorized()

    server = SyncServer(authenticate=bearer_tokens(TOKENS))
    server.sync_component_builder(Speed).with_entity_policy(policy).build()
    server.authorizer = operators_only
    robot = server.world.spawn(Speed(value=0))
    async with server.serve("127.0.0.1", 0) as (host, port):
        url = f"ws://{host}:{port}/"
        async with (
            SyncProvider(url, REGISTRY, token="vic-token") as viewer,
            SyncProvider(url, REGISTRY, token="ann-token") as operator,
        ):
            speeds = viewer.components(Speed)
            speeds.subscribe(lambda _: None)
            await viewer.wait_synced(10)
            assert speeds.get()[robot] == Speed(value=0)  # a viewer reads
            with pytest.raises(Forbidden, match="vic may only watch"):
                await viewer.mutate(robot, Speed(value=1))
            with pytest.raises(Forbidden, match="vic may only watch"):
                await viewer.take_control(robot)
            await operator.mutate(robot, Speed(value=2))
            await operator.take_control(robot)
            assert seen == [VIC, ANN]
            assert server.world.get(robot, Speed) == Speed(value=2)


async def test_a_control_policy_decides_who_may_take_control() -> None:
    def leads_only(world: Any, ctx: Any, entity: int) -> Authorized | Denied:
        return Authorized() if ctx.identity.has_role("admin") else Denied("leads only")

    server = SyncServer(authenticate=bearer_tokens(TOKENS), control_policy=leads_only)
    server.sync_component(Speed)
    robot = server.world.spawn(Speed(value=0))
    async with server.serve("127.0.0.1", 0) as (host, port):
        url = f"ws://{host}:{port}/"
        async with (
            SyncProvider(url, REGISTRY, token="ann-token") as ann,
            SyncProvider(url, REGISTRY, token="root-token") as root,
        ):
            holder = root.control(robot)
            holder.subscribe(lambda _: None)
            with pytest.raises(Forbidden, match="leads only"):
                await ann.take_control(robot)
            await root.take_control(robot)
            assert holder.get() == root.connection_id


async def test_devtools_and_the_tree_need_an_admin_with_an_authenticator() -> None:
    server = SyncServer(authenticate=bearer_tokens(TOKENS))
    async with server.serve("127.0.0.1", 0) as (host, port):
        assert (await http_get(port, "/devtools"))[0] == 401
        assert (await http_get(port, "/devtools?token=ann-token"))[0] == 403
        status, _, body = await http_get(port, "/devtools?token=root-token")
        assert status == 200 and b"<html" in body.lower()
        status, headers, body = await http_get(port, "/favicon.ico")  # (no secret in it)
        assert status == 200 and headers["content-type"] == "image/svg+xml"
        from pl3xus_rx.devtools import EntityTree, EntityTreeQuery

        registry = (
            ClientTypeRegistry.builder()
            .register_query(EntityTreeQuery, EntityTree, name="pl3xus.tree")
            .build()
        )
        async with SyncProvider(f"ws://{host}:{port}/", registry, token="ann-token") as ann:
            state = ann.query(EntityTreeQuery, EntityTreeQuery())
            await wait_until(lambda: state.get().status.value == "error")
            assert isinstance(state.get().error, Forbidden)
        async with SyncProvider(f"ws://{host}:{port}/", registry, token="root-token") as root:
            state = root.query(EntityTreeQuery, EntityTreeQuery())
            await wait_until(lambda: state.get().status.value == "ready")
    off = SyncServer(devtools=False)
    async with off.serve("127.0.0.1", 0) as (host, port):
        assert (await http_get(port, "/devtools"))[0] == 404  # no such page


async def test_devtools_schemas_and_connections_queries_for_admins_only() -> None:
    from pl3xus_rx.devtools import (
        ComponentSchemas,
        ComponentSchemasQuery,
        Connections,
        ConnectionsQuery,
    )

    server = SyncServer(authenticate=bearer_tokens(TOKENS))
    server.sync_component(Speed)
    server.world.spawn(Speed(value=1))
    registry = (
        ClientTypeRegistry.builder()
        .register(Speed)
        .register_query(ConnectionsQuery, Connections, name="pl3xus.connections")
        .register_query(ComponentSchemasQuery, ComponentSchemas, name="pl3xus.schemas")
        .build()
    )
    async with server.serve("127.0.0.1", 0) as (host, port):
        url = f"ws://{host}:{port}/"
        async with (
            SyncProvider(url, registry, token="ann-token") as ann,
            SyncProvider(url, registry, token="root-token", encoding="json") as root,
        ):
            ann.components(Speed, max_rate_hz=5).subscribe(lambda _: None)
            await ann.wait_synced(10)
            for query in (ConnectionsQuery(), ComponentSchemasQuery()):
                with pytest.raises(Forbidden, match="needs the 'admin' role"):
                    await ann.fetch(query, timeout=UNIT)
            found = await root.fetch(ConnectionsQuery(), timeout=UNIT)
            rows = {row.name: row for row in found.connections}
            assert set(rows) == {"ann", "root"}
            assert rows["ann"].id == ann.connection_id and rows["ann"].roles == ["operator"]
            assert rows["ann"].encoding == "msgpack" and rows["root"].encoding == "json"
            assert rows["ann"].remote.startswith("127.0.0.1")
            [sub] = rows["ann"].subscriptions
            assert (sub.component, sub.entity, sub.max_rate_hz) == ("Speed", None, 5.0)
            assert rows["ann"].frames_sent >= 2 and rows["root"].subscriptions == []
            schemas = await root.fetch(ComponentSchemasQuery(), timeout=UNIT)
            speed = schemas.schemas["Speed"]
            assert speed["properties"]["value"]["type"] == "number"
            assert "EntityControl" in schemas.schemas
            assert schemas.writable == [] and schemas.targeted == []  # read-only by default


async def test_tls_round_trip_and_https_health(tmp_path: Any) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    server = SyncServer()
    server.sync_component(Speed)
    robot = server.world.spawn(Speed(value=4))
    async with server.serve("127.0.0.1", 0, ssl=server_ctx) as (host, port):
        async with SyncProvider(f"wss://{host}:{port}/", REGISTRY, ssl=client_ctx) as sync:
            speeds = sync.components(Speed)
            speeds.subscribe(lambda _: None)
            await sync.wait_synced(10)
            assert speeds.get()[robot] == Speed(value=4)
        with pytest.raises(ConnectFailed):  # an untrusted certificate is refused
            async with SyncProvider(f"wss://{host}:{port}/", REGISTRY):
                pass
        reader, writer = await asyncio.open_connection(host, port, ssl=client_ctx)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5 * UNIT)
        assert head.startswith(b"HTTP/1.1 200")
        writer.close()


async def test_client_strings_are_logged_escaped(caplog: pytest.LogCaptureFixture) -> None:
    import msgpack

    server = SyncServer()
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        ws_connect(f"ws://{host}:{port}/") as ws,
    ):
        await asyncio.wait_for(ws.recv(), 5 * UNIT)  # the welcome
        forged = "x\n2026-12-01 00:00:00 INFO forged line"
        await ws.send(msgpack.packb([0, forged, {}]))
        await ws.send(msgpack.packb([3, 1, forged, None, {}]))
        await ws.send(msgpack.packb([7, 2, forged, 1, {}]))
        for _ in range(3):
            await asyncio.wait_for(ws.recv(), 5 * UNIT)  # each answered
    messages = [r.getMessage() for r in caplog.records]
    assert not any("\n2026-12-01" in m for m in messages)
    assert any("forged line" in m for m in messages)  # logged, escaped


class Report(BaseModel):
    site: str
    text: str


class Audit(BaseModel):
    entry: str


class Hidden(BaseModel):  # not synced: never shown, not even in the tree
    note: str


async def test_read_access_and_the_tree_follow_the_identity() -> None:
    grants = {"ann": {"a"}, "bea": {"b"}, "root": {"a", "b"}}

    def same_site(world: Any, identity: Identity, entity: Any) -> bool:
        report = world.get(entity, Report)
        return report is not None and report.site in grants.get(identity.name, set())

    tokens = {
        "ann-token": ANN,
        "bea-token": Identity.of("bea", "admin"),
        "root-token": ROOT,
    }
    server = SyncServer(authenticate=bearer_tokens(tokens))
    server.sync_component_builder(Report).visible_to(same_site).build()
    server.sync_component_builder(Audit).visible_to("admin").build()
    cell = server.world.spawn(Report(site="a", text="cell"), Audit(entry="opened"))
    arm = server.world.spawn(Report(site="b", text="arm"), parent=cell)
    secret = server.world.spawn(Hidden(note="x"), parent=cell)
    from pl3xus_rx.devtools import EntityTree, EntityTreeQuery

    registry = (
        ClientTypeRegistry.builder()
        .register(Report)
        .register(Audit)
        .register_query(EntityTreeQuery, EntityTree, name="pl3xus.tree")
        .build()
    )
    async with server.serve("127.0.0.1", 0) as (host, port):
        url = f"ws://{host}:{port}/"
        async with (
            SyncProvider(url, registry, token="ann-token") as ann,
            SyncProvider(url, registry, token="bea-token") as bea,
            SyncProvider(url, registry, token="root-token") as root,
        ):
            views = {}
            for name, provider in (("ann", ann), ("bea", bea), ("root", root)):
                reports, audits = provider.components(Report), provider.components(Audit)
                reports.subscribe(lambda _: None)
                audits.subscribe(lambda _: None)
                views[name] = (reports, audits)
                await provider.wait_synced(10)
            assert set(views["ann"][0].get()) == {cell}
            assert views["ann"][1].get() == {}
            assert set(views["bea"][0].get()) == {arm}
            assert set(views["bea"][1].get()) == {cell}
            assert set(views["root"][0].get()) == {cell, arm}

            # the arm moves to site a: bea loses it, ann gains it
            server.world.insert(arm, Report(site="a", text="arm"))
            await wait_until(lambda: set(views["ann"][0].get()) == {cell, arm})
            await wait_until(lambda: views["bea"][0].get() == {})
            # ann's rights are revoked: the server is told, ann's view empties
            grants["ann"] = set()
            server.visibility_changed(Report)
            await wait_until(lambda: views["ann"][0].get() == {})
            assert set(views["root"][0].get()) == {cell, arm}

            # the tree: only entities the identity sees a synced component of
            server.world.insert(arm, Report(site="b", text="arm"))
            trees = {}
            for name, provider in (("bea", bea), ("root", root)):
                state = provider.query(EntityTreeQuery, EntityTreeQuery())
                await wait_until(lambda s=state: s.get().status.value == "ready")
                trees[name] = state.get().value
            assert trees["root"].parents == {arm: cell}  # not the Hidden one
            assert secret not in trees["root"].parents
            # bea sees the cell (Audit, as an admin) and the arm
            assert trees["bea"].parents == {arm: cell}
            grants["bea"] = set()
            server.invalidate(EntityTreeQuery)
            state = bea.query(EntityTreeQuery, EntityTreeQuery())
            await wait_until(
                lambda: state.get().status.value == "ready" and not state.get().value.parents
            )


async def test_control_is_shared_by_an_identity_and_taken_over_by_role() -> None:
    sue = Identity.of("sue", "operator", "supervisor")
    bob = Identity.of("bob", "operator")
    server = SyncServer(
        authenticate=bearer_tokens({"ann-token": ANN, "bob-token": bob, "sue-token": sue}),
        control_takeover_roles=("supervisor",),
    )
    server.sync_component_builder(Speed).with_default_entity_policy().build()
    robot = server.world.spawn(Speed(value=0))
    async with server.serve("127.0.0.1", 0) as (host, port):
        url = f"ws://{host}:{port}/"
        async with (
            SyncProvider(url, REGISTRY, token="ann-token") as tab1,
            SyncProvider(url, REGISTRY, token="ann-token") as tab2,
            SyncProvider(url, REGISTRY, token="bob-token") as bob_sync,
            SyncProvider(url, REGISTRY, token="sue-token") as sue_sync,
        ):
            told: dict[str, list[Any]] = {"tab1": [], "tab2": []}
            tab1.notices.subscribe(told["tab1"].append)
            tab2.notices.subscribe(told["tab2"].append)
            await tab1.take_control(robot)
            control = server.world.get(robot, EntityControl)
            assert control == EntityControl(holder=tab1.connection_id, by="ann")
            await tab2.mutate(robot, Speed(value=1))  # ann's other tab acts on it
            with pytest.raises(Forbidden, match="controlled by 'ann'"):
                await bob_sync.take_control(robot)
            with pytest.raises(Forbidden, match="does not control"):
                await bob_sync.mutate(robot, Speed(value=9))
            # both of ann's tabs are told bob asked
            await wait_until(lambda: told["tab1"] and told["tab2"])
            assert {n.kind for n in told["tab1"] + told["tab2"]} == {"control_requested"}
            # the first tab closes: the second still holds it
            await tab1.close()
            await wait_until(
                lambda: (
                    server.world.get(robot, EntityControl)
                    == EntityControl(holder=tab2.connection_id, by="ann")
                )
            )
            await tab2.mutate(robot, Speed(value=2))
            # a supervisor takes over; ann's tab is told who took it
            await sue_sync.take_control(robot)
            await wait_until(lambda: any(n.kind == "control_released" for n in told["tab2"]))
            released = next(n for n in told["tab2"] if n.kind == "control_released")
            assert released.detail["reason"] == "taken_over" and released.detail["by"] == "sue"
            with pytest.raises(Forbidden, match="does not control"):
                await tab2.mutate(robot, Speed(value=3))
            await sue_sync.mutate(robot, Speed(value=4))
            assert server.world.get(robot, Speed) == Speed(value=4)


class Nudge(BaseModel):
    by: float


class Mine(BaseModel):
    pass


class MineAnswer(BaseModel):
    name: str
    roles: list[str]


async def test_requests_and_queries_see_the_identity() -> None:
    server = SyncServer(authenticate=bearer_tokens(TOKENS))
    server.sync_component(Speed)
    server.authorizer = operators_only
    robot = server.world.spawn(Speed(value=0))

    def nudge(world: Any, ctx: Any, entity: Any, request: Nudge) -> Speed:
        world.insert(entity, Speed(value=request.by))
        return Speed(value=request.by)

    def whoami(world: Any, ctx: Any, query: Mine) -> MineAnswer:
        return MineAnswer(name=ctx.identity.name, roles=sorted(ctx.identity.roles))

    server.request(Nudge).targeted().register(nudge)
    server.query(Mine).register(whoami)
    registry = (
        ClientTypeRegistry.builder()
        .register(Speed)
        .register_request(Nudge, Speed)
        .register_query(Mine, MineAnswer)
        .build()
    )
    async with server.serve("127.0.0.1", 0) as (host, port):
        url = f"ws://{host}:{port}/"
        async with (
            SyncProvider(url, registry, token="vic-token") as viewer,
            SyncProvider(url, registry, token="ann-token") as operator,
        ):
            with pytest.raises(Forbidden, match="vic may only watch"):
                await viewer.request(Nudge(by=1), entity=robot)
            assert await operator.request(Nudge(by=2), entity=robot) == Speed(value=2)
            for provider, expected in ((viewer, VIC), (operator, ANN)):
                state = provider.query(Mine, Mine())
                await wait_until(lambda s=state: s.get().status.value == "ready")
                assert state.get().value == MineAnswer(
                    name=expected.name, roles=sorted(expected.roles)
                )
