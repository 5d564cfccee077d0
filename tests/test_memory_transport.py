"""The in-memory transport (pl3xus_rx.testing) behaves like the real one where it matters."""

from __future__ import annotations

import pytest
from conftest import Chat, Recorder, make_network, wait_until

from pl3xus_rx import BindError, ConnectFailed, Disconnected, Network, NetworkSettings
from pl3xus_rx.testing import MemoryTransport

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]


async def round_trip(hub: MemoryTransport) -> Network:
    """A chat from a client and the server's answer over ``hub``; returns the server (still
    open) once both arrived."""
    server = make_network(transport=hub)
    host, port = await server.listen("app", 0)
    got, back = Recorder(), Recorder()
    server.messages(Chat).subscribe(got)
    client = make_network(transport=hub)
    client.messages(Chat).subscribe(back)
    cid = await client.connect(f"memory://{host}:{port}")
    client.send(cid, Chat(user="a", text="b"))
    assert not got.items  # delivery is later on the loop, never inside send()
    await wait_until(lambda: got.items)
    server.send(got.items[0].source, Chat(user="srv", text="ok"))
    await wait_until(lambda: back.items)
    assert back.items[0].message.text == "ok"
    await client.close()
    return server


async def test_round_trip_without_sockets() -> None:
    server = await round_trip(MemoryTransport())
    await server.close()


async def test_errors_match_the_real_transport() -> None:
    hub = MemoryTransport()
    server = make_network(
        NetworkSettings(max_connections=1, max_message_size=100, max_frame_size=100), transport=hub
    )
    await server.listen("app", 1)
    with pytest.raises(BindError, match="app:1"):
        await make_network(transport=hub).listen("app", 1)
    with pytest.raises(ConnectFailed, match="no listener"):
        await make_network(transport=hub).connect("memory://app:2")
    first = make_network(transport=hub)
    events = Recorder()
    first.events.subscribe(events)
    cid = await first.connect("memory://app:1")
    with pytest.raises(ConnectFailed, match=r"503.*max_connections=1"):
        await make_network(transport=hub).connect("memory://app:1")
    first.send(cid, Chat(user="a", text="x" * 150))  # over the server's 100-byte limit
    await wait_until(lambda: events.of(Disconnected))
    gone = events.of(Disconnected)[0]
    assert gone.code == 1009 and "limit of 100 bytes" in gone.reason
    await first.close()
    await server.close()


async def test_a_link_without_try_write_still_carries_every_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A Link written before try_write (write, backed_up, write_and_drain only): the
    # connection checks and writes in two calls, joining a chunked frame first.
    from pl3xus_rx.testing import MemoryLink

    monkeypatch.delattr(MemoryLink, "try_write")
    server = await round_trip(MemoryTransport())
    assert server.statistics().frames_sent == 2  # the welcome, the chat
    await server.close()
