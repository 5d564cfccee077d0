"""Server notifications: to one connection, to an identity's connections, or to everyone;
in order, with level, text and context; refused clearly when they cannot be sent."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import wait_until

from client_sync import ClientTypeRegistry, SyncProvider
from client_sync.blocking import connect
from pl3xus_rx import Identity, SyncServer, bearer_tokens

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]

REGISTRY = ClientTypeRegistry.builder().build()
TOKENS = {"a": Identity.of("ann", "operator"), "b": Identity.of("bob", "operator")}


async def test_notifications_reach_whom_they_are_addressed_to_in_order() -> None:
    server = SyncServer(authenticate=bearer_tokens(TOKENS))
    async with server.serve("127.0.0.1", 0) as (host, port):
        url = f"ws://{host}:{port}/"
        async with (
            SyncProvider(url, REGISTRY, token="a") as ann1,
            SyncProvider(url, REGISTRY, token="a") as ann2,
            SyncProvider(url, REGISTRY, token="b") as bob,
        ):
            got: dict[str, list[Any]] = {"ann1": [], "ann2": [], "bob": []}
            ann1.notifications.subscribe(got["ann1"].append)
            ann2.notifications.subscribe(got["ann2"].append)
            bob.notifications.subscribe(got["bob"].append)
            control_notices: list[Any] = []
            ann1.notices.subscribe(control_notices.append)
            assert server.notify("robot 3 stopped", level="warning", context={"entity": 3}) == 3
            assert server.notify("your job is done", level="success", identity="ann") == 2
            assert server.notify("just you", connection=bob.connection_id) == 1
            for i in range(20):
                server.notify(f"step {i}", connection=ann1.connection_id)
            await wait_until(lambda: len(got["ann1"]) == 22 and len(got["bob"]) == 2)
            first = got["bob"][0]
            assert (first.level, first.text, dict(first.context)) == (
                "warning",
                "robot 3 stopped",
                {"entity": 3},
            )
            assert [n.text for n in got["bob"]] == ["robot 3 stopped", "just you"]
            assert [n.text for n in got["ann1"][2:]] == [f"step {i}" for i in range(20)]
            await wait_until(lambda: len(got["ann2"]) == 2)
            assert got["ann2"][1].text == "your job is done"
            assert control_notices == []  # notifications are not control notices
            with pytest.raises(ValueError, match="unknown notification level 'loud'"):
                server.notify("x", level="loud")
            with pytest.raises(ValueError, match="cannot be sent"):
                server.notify("x", context={"bad": object()})
            assert server.notify("nobody", connection=999) == 0


async def test_the_blocking_client_gets_notifications() -> None:
    import asyncio

    server = SyncServer()
    async with server.serve("127.0.0.1", 0) as (host, port):
        loop = asyncio.get_running_loop()

        def use() -> list[str]:
            texts: list[str] = []
            with connect(f"ws://{host}:{port}/", REGISTRY) as sync:
                sync.notifications.subscribe(lambda n: texts.append(n.text))
                loop.call_soon_threadsafe(lambda: server.notify("hello from the server"))
                for _ in range(200):
                    if texts:
                        break
                    __import__("time").sleep(0.02)
            return texts

        assert await asyncio.to_thread(use) == ["hello from the server"]
