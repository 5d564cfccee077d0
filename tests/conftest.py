"""Shared fixtures: servers on 127.0.0.1 with free ports, and bounded waits."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from pydantic import BaseModel, Field

from pl3xus_rx import Network, NetworkSettings

# A test run in the background of a script inherits SIGINT ignored, and so would every
# process it starts: the tests that stop servers and clients with Ctrl-C would then wait for
# nothing. Processes started from here get the default again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Modules whose every test starts real processes, a browser, NATS or a type checker (the
# "slow" marker: `pytest -m "not slow"` runs the rest in well under a minute).
SLOW_MODULES = {
    "test_bench",
    "test_demo",
    "test_devtools",
    "test_docs",
    "test_examples",
    "test_lint",
    "test_protected_mode_netns",
    "test_scaleout",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of :data:`SLOW_MODULES` slow (others carry the marker themselves)."""
    for item in items:
        if item.module is not None and item.module.__name__ in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


# Every wait is a multiple of one unit; a slow CI machine can scale it.
UNIT = float(os.environ.get("PL3XUS_TEST_UNIT", "1.0"))


class Chat(BaseModel):
    user: str
    text: str = Field(max_length=200)


class Ping(BaseModel):
    n: int


async def wait_until(cond: Callable[[], Any], units: float = 5.0, what: str = "") -> None:
    """Poll ``cond`` until true; fail after ``units`` time units."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + units * UNIT
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.005)


class Recorder:
    """Collects what an Observable emits."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def __call__(self, item: Any) -> None:
        self.items.append(item)

    def of(self, kind: type) -> list[Any]:
        return [i for i in self.items if isinstance(i, kind)]


async def pilot_until(pilot: Any, cond: Callable[[], Any], what: str, tries: int = 500) -> None:
    """Let a textual app run (its pilot pausing 10 ms at a time) until ``cond()`` holds;
    fail naming ``what`` after ``tries`` pauses."""
    while not cond() and tries:
        tries -= 1
        await pilot.pause(0.01)
    assert cond(), f"timed out waiting for {what}"


def make_network(settings: NetworkSettings | None = None, **kw: Any) -> Network:
    net = Network(settings, **kw)
    net.register_message(Chat)
    net.register_message(Ping)
    return net


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Network]:
    net = make_network(NetworkSettings(rate_limit_per_second=None))
    await net.listen("127.0.0.1", 0)
    yield net
    await asyncio.wait_for(net.close(), 10 * UNIT)


def url_of(net: Network) -> str:
    host, port = net.addresses[0]
    return f"ws://{host}:{port}/"


@pytest_asyncio.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Fails the test if anything reached the loop's exception handler (e.g. a task that
    died with an unretrieved exception)."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx))
    yield seen
    import gc

    gc.collect()  # unretrieved task exceptions are reported when the task is collected
    await asyncio.sleep(0)
    loop.set_exception_handler(previous)
    assert not seen, f"loop exception handler was called: {seen}"


async def http_get(port: int, target: str, headers: str = "") -> tuple[int, dict[str, str], bytes]:
    """A plain ``GET target`` to 127.0.0.1:port: status, headers (lower-case names), body.
    ``headers`` are extra raw header lines, each ending with CRLF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5 * UNIT)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    got = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ln)}
    body = await asyncio.wait_for(reader.readexactly(int(got["content-length"])), 5 * UNIT)
    writer.close()
    return status, got, body
