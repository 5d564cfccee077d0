"""Published messages: late joiners start from the last one (``sync.message_log`` and
``sync.last_message``), then append what arrives."""

from __future__ import annotations

import pytest
from conftest import wait_until
from pydantic import BaseModel

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import NotRegistered, SyncServer

pytestmark = pytest.mark.asyncio

REGISTRY = ClientTypeRegistry.builder().build()


class Alarm(BaseModel):
    text: str


class Unknown(BaseModel):
    n: int


async def test_a_late_joiner_starts_from_the_last_published_message() -> None:
    server = SyncServer()
    server.register_message(Alarm)
    with pytest.raises(NotRegistered):
        server.publish(Unknown(n=1))
    async with server.serve("127.0.0.1", 0) as (host, port):
        url = f"ws://{host}:{port}/"
        async with SyncProvider(url, REGISTRY) as early:
            empty = early.message_log(Alarm)
            empty.subscribe(lambda _: None)
            assert server.publish(Alarm(text="a1")) == 1
            await wait_until(lambda: empty.get() == (Alarm(text="a1"),))
        server.publish(Alarm(text="a2"))  # nobody connected: kept as the last value
        async with SyncProvider(url, REGISTRY) as late:
            log = late.message_log(Alarm, limit=3)
            assert late.message_log(Alarm, limit=3) is log  # shared
            last = late.last_message(Alarm)
            log.subscribe(lambda _: None)
            last.subscribe(lambda _: None)
            await wait_until(lambda: log.get() == (Alarm(text="a2"),))
            # (last_message is a log of its own, fetched on its own: it may come a bit later)
            await wait_until(lambda: last.get() == Alarm(text="a2"), what="the last message")
            for text in ("a3", "a4", "a5"):
                server.publish(Alarm(text=text))
            await wait_until(lambda: [a.text for a in log.get()] == ["a3", "a4", "a5"])
            assert last.get() == Alarm(text="a5")
            # a type the server never registered: nothing to start from, no error
            unknown = late.message_log(Unknown)
            unknown.subscribe(lambda _: None)
            await late.wait_synced(5)
            assert unknown.get() == ()
            with pytest.raises(ValueError, match="limit"):
                late.message_log(Alarm, limit=0)


async def test_nothing_published_yet_starts_empty() -> None:
    from pl3xus_rx.protocol import LAST_MESSAGE_QUERY, LastMessage, LastMessageQuery

    server = SyncServer()
    server.register_message(Alarm)
    registry = (
        ClientTypeRegistry.builder()
        .register_query(LastMessageQuery, LastMessage, name=LAST_MESSAGE_QUERY)
        .build()
    )
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", registry) as sync,
    ):
        log = sync.message_log(Alarm)
        log.subscribe(lambda _: None)
        assert (await sync.fetch(LastMessageQuery(type="Alarm"), timeout=5)).value is None
        assert log.get() == ()
        server.net.broadcast(Alarm(text="not kept"))  # a plain broadcast arrives...
        await wait_until(lambda: log.get() == (Alarm(text="not kept"),))
        fetched = await sync.fetch(LastMessageQuery(type="Alarm"), timeout=5)
        assert fetched.value is None  # ...but only publish() keeps it
