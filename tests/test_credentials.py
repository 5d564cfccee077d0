"""Credential lifetime (issue 24): expiry closes, refresh in band, disconnect by identity,
strict JWT claims, and a peer's error reports kept out of the log's way."""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from types import MappingProxyType
from typing import Any

import jwt
import msgpack
import pytest
from conftest import UNIT, wait_until
from pydantic import BaseModel
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import AuthenticationFailed, Forbidden, NetworkSettings, SyncServer
from pl3xus_rx.protocol import CloseCode, FrameKind
from pl3xus_rx.security import Identity, jwt_verifier, token_of

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

KEY = "a-test-key-long-enough-for-hs256-signatures"


class Speed(BaseModel):
    value: float = 0.0


REGISTRY = ClientTypeRegistry.builder().register(Speed).build()


def token(name: str = "ann", seconds: float = 60.0, **claims: Any) -> str:
    exp = datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(seconds=seconds)
    return jwt.encode({"sub": name, "exp": exp, **claims}, KEY, algorithm="HS256")


def lifetimes() -> tuple[Any, dict[str, float]]:
    """An authenticator whose tokens are ``name:seconds`` or ``name@site:seconds`` (an
    identity with that life, and a ``site`` claim)."""
    issued: dict[str, float] = {}

    def authenticate(request: Any) -> Identity:
        given = token_of(request)
        if given is None or ":" not in given:
            raise AuthenticationFailed("a token is required", status=401)
        name, _, life = given.partition(":")
        name, _, site = name.partition("@")
        if name == "revoked":
            raise AuthenticationFailed("this token was revoked", status=403)
        expires = time.time() + float(life)
        issued[given] = expires
        claims = MappingProxyType({"site": site or "north", "exp": expires})
        return Identity(name, frozenset({"operator"}), claims, expires_at=expires)

    return authenticate, issued


async def raw(port: int, credential: str) -> Any:
    return await asyncio.wait_for(
        ws_connect(
            f"ws://127.0.0.1:{port}/",
            additional_headers={"Authorization": f"Bearer {credential}"},
        ),
        5 * UNIT,
    )


async def next_frame(ws: Any, kind: int) -> list[Any]:
    while True:
        frame = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5 * UNIT))
        if frame[0] == kind:
            return list(frame)


# ---------------------------------------------------------------------- strict claims


@pytest.mark.parametrize(
    ("roles", "what"),
    [
        ({"admin": False}, "a map"),
        (7, "a number"),
        (True, "a boolean"),
        (["operator", 3], "a list with other things"),
    ],
)
async def test_a_roles_claim_that_is_not_strings_refuses_the_token(roles: Any, what: str) -> None:
    from pl3xus_rx.net import HttpRequest

    auth = jwt_verifier(KEY)
    request = HttpRequest.build("/", [("Authorization", f"Bearer {token(roles=roles)}")])
    with pytest.raises(AuthenticationFailed, match=f"'roles' claim .* not {what}") as info:
        auth(request)
    assert info.value.status == 403


async def test_a_jwt_identity_expires_with_its_token() -> None:
    from pl3xus_rx.net import HttpRequest

    auth = jwt_verifier(KEY)
    one = HttpRequest.build("/", [("Authorization", f"Bearer {token(roles='operator')}")])
    identity = auth(one)
    assert isinstance(identity, Identity)
    assert identity.roles == {"operator"}
    assert identity.expires_at is not None and 50 < identity.expires_at - time.time() <= 61


# ---------------------------------------------------------------------- expiry


async def test_a_connection_is_closed_when_its_credential_expires() -> None:
    authenticate, _ = lifetimes()
    server = SyncServer(NetworkSettings(credential_grace=0.2), authenticate=authenticate)
    async with server.serve("127.0.0.1", 0) as (_, port):
        lasting = await raw(port, "bob:60")
        ws = await raw(port, "ann:0.5")
        welcome = await next_frame(ws, FrameKind.WELCOME)
        assert welcome[1]["refresh"] is True and 0 < welcome[1]["expires_in"] <= 0.5
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(next_frame(ws, -1), 5 * UNIT)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == CloseCode.CREDENTIAL_EXPIRED
        assert "expired" in info.value.rcvd.reason
        assert server.net.statistics().expired == 1
        await wait_until(lambda: len(server.net.connections) == 1)  # bob's lives on
        await lasting.close()


async def test_refresh_in_band_keeps_the_connection_and_its_data() -> None:
    authenticate, issued = lifetimes()
    server = SyncServer(NetworkSettings(credential_grace=0.3), authenticate=authenticate)
    server.sync_component(Speed)
    robot = server.world.spawn(Speed(value=1))
    handed: list[str] = []

    async def fresh() -> str:  # an async token callable: 1.5 s, then long-lived tokens
        handed.append("ann:1.5" if not handed else "ann:60")
        return handed[-1]

    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY, token=fresh) as sync,
    ):
        speeds = sync.components(Speed)
        speeds.subscribe(lambda _: None)
        await sync.wait_synced(5 * UNIT)
        first = sync.connection_id
        await wait_until(lambda: server.net.statistics().refreshes == 1, 6)
        assert handed == ["ann:1.5", "ann:60"] and "ann:60" in issued
        await asyncio.sleep(1.0 * UNIT)  # past the first token's expiry and grace
        assert sync.connection_id == first and server.net.statistics().expired == 0
        assert sync.resyncs == 0
        server.world.insert(robot, Speed(value=2))
        await wait_until(lambda: speeds.get().get(robot) == Speed(value=2))


async def test_a_refresh_must_name_the_same_identity_and_be_valid(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="pl3xus_rx")
    authenticate, _ = lifetimes()
    server = SyncServer(authenticate=authenticate)
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY, token="ann:60") as sync,
    ):
        with pytest.raises(Forbidden, match=r"another identity \(its name differ"):
            await sync.refresh_credential("bob:60")
        # a refused refresh pauses the next ones: no authenticator calls in a loop
        with pytest.raises(Forbidden, match="less than 1 s ago"):
            await sync.refresh_credential("ann:60")
        await asyncio.sleep(1.05)
        with pytest.raises(Forbidden, match="revoked"):
            await sync.refresh_credential("revoked:60")
        await asyncio.sleep(1.05)
        # narrower rights in the claims are not carried over: reconnect for them
        with pytest.raises(Forbidden, match="its claims differ"):
            await sync.refresh_credential("ann@south:60")
        await asyncio.sleep(1.05)
        assert await sync.refresh_credential("ann:120") == pytest.approx(120, abs=2)
        assert server.net.statistics().refreshes == 1
        logged = [r for r in caplog.records if "refresh of its credential" in r.getMessage()]
        assert len(logged) == 1  # three refusals within warning_interval: one line
        assert not any("Authentication refused" in r.getMessage() for r in caplog.records)


async def test_refresh_without_an_authenticator_and_a_bad_refresh_frame() -> None:
    server = SyncServer()
    async with server.serve("127.0.0.1", 0) as (_, port):
        ws = await ws_connect(f"ws://127.0.0.1:{port}/")
        welcome = await next_frame(ws, FrameKind.WELCOME)
        assert "refresh" not in welcome[1] and "expires_in" not in welcome[1]
        await ws.send(msgpack.packb([FrameKind.REFRESH, 1, "x"]))
        reply = await next_frame(ws, FrameKind.REPLY)
        assert reply[1] == 1 and reply[2] == "forbidden" and "no authenticator" in reply[3]
        await ws.send(msgpack.packb([FrameKind.REFRESH, 2, 42]))
        reply = await next_frame(ws, FrameKind.REPLY)
        assert reply[2] == "validation_error" and reply[4]["errors"][0]["loc"] == "credential"
        await ws.send(msgpack.packb([FrameKind.REFRESH, 3, "x" * 20_000]))
        reply = await next_frame(ws, FrameKind.REPLY)
        assert reply[2] == "validation_error" and "16384" in reply[3]
        await ws.close()


# ---------------------------------------------------------------------- disconnect


async def test_disconnect_closes_every_connection_of_an_identity() -> None:
    authenticate, _ = lifetimes()
    server = SyncServer(authenticate=authenticate)
    async with server.serve("127.0.0.1", 0) as (_, port):
        anns = [await raw(port, "ann:60"), await raw(port, "ann:60")]
        bob = await raw(port, "bob:60")
        for ws in (*anns, bob):
            await next_frame(ws, FrameKind.WELCOME)
        assert server.disconnect(identity="ann", reason="revoked by the admin") == 2
        for ws in anns:
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(next_frame(ws, -1), 5 * UNIT)
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == CloseCode.DISCONNECTED
            assert info.value.rcvd.reason == "revoked by the admin"
        await wait_until(lambda: len(server.net.connections) == 1)
        assert server.identity_of(server.net.connections[0]).name == "bob"
        assert server.disconnect(identity=Identity.of("nobody"), reason="x") == 0
        await bob.close()


# ---------------------------------------------------------------------- a peer's errors


async def test_a_peers_error_reports_are_cut_and_paced(caplog: pytest.LogCaptureFixture) -> None:
    server = SyncServer()
    caplog.set_level(logging.WARNING, logger="pl3xus_rx.net")
    async with server.serve("127.0.0.1", 0) as (_, port):
        ws = await ws_connect(f"ws://127.0.0.1:{port}/", max_size=None)
        await next_frame(ws, FrameKind.WELCOME)
        huge = {"code": "x", "message": "m" * 1_000_000}
        for _ in range(20):
            await ws.send(msgpack.packb([FrameKind.ERROR, huge]))
        await wait_until(lambda: server.net.statistics().errors_received == 20)
        lines = [r.getMessage() for r in caplog.records if "reported an error" in r.getMessage()]
        assert len(lines) == 1 and len(lines[0]) < 1000
        await ws.close()
