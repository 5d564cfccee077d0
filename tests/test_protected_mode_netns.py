"""Protected mode with real sockets: a client from another address, played from a network
namespace this test makes (and removes). Skipped where a namespace cannot be made."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from pl3xus_rx import NetworkSettings, SyncServer, bearer_tokens
from pl3xus_rx.security import Identity

HOST_IP, PEER_IP = "10.213.7.1", "10.213.7.2"  # made by this test, on its own veth pair

CLIENT = textwrap.dedent(
    """
    import asyncio, sys
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def main(url: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with connect(url, additional_headers=headers, open_timeout=5) as ws:
                await asyncio.wait_for(ws.recv(), 5)
                print("admitted")
        except InvalidStatus as exc:
            print("refused", exc.response.status_code, exc.response.body.decode().strip())

    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""))
    """
)


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


@pytest.fixture
def namespace() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("making a network namespace needs root")
    name = f"pl3xus{os.getpid()}"
    host_if, peer_if = f"h{os.getpid()}"[:15], f"p{os.getpid()}"[:15]
    if _ip("netns", "add", name).returncode != 0:
        pytest.skip("cannot make a network namespace here")
    try:
        steps = [
            ("link", "add", host_if, "type", "veth", "peer", "name", peer_if),
            ("link", "set", peer_if, "netns", name),
            ("addr", "add", f"{HOST_IP}/30", "dev", host_if),
            ("link", "set", host_if, "up"),
            ("netns", "exec", name, "ip", "addr", "add", f"{PEER_IP}/30", "dev", peer_if),
            ("netns", "exec", name, "ip", "link", "set", peer_if, "up"),
            ("netns", "exec", name, "ip", "link", "set", "lo", "up"),
        ]
        for step in steps:
            result = _ip(*step)
            if result.returncode != 0:
                pytest.skip(f"cannot set up the namespace: {result.stderr.strip()}")
        yield name
    finally:
        _ip("link", "delete", host_if)
        _ip("netns", "delete", name)


async def remote_client(namespace: str, url: str, token: str = "") -> str:
    proc = await asyncio.create_subprocess_exec(
        "ip",
        "netns",
        "exec",
        namespace,
        sys.executable,
        "-c",
        CLIENT,
        url,
        token,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


@pytest.mark.asyncio
async def test_a_remote_client_is_refused_without_an_authenticator(namespace: str) -> None:
    server = SyncServer()
    async with server.serve(HOST_IP, 0) as (host, port):
        answer = await remote_client(namespace, f"ws://{host}:{port}/")
    assert answer.startswith("refused 403") and "authenticator" in answer
    assert server.net.statistics().refused == 1

    anyone = SyncServer(NetworkSettings(allow_anonymous=True))
    async with anyone.serve(HOST_IP, 0) as (host, port):
        assert await remote_client(namespace, f"ws://{host}:{port}/") == "admitted"

    authed = SyncServer(authenticate=bearer_tokens({"t0k": Identity.of("ann", "operator")}))
    async with authed.serve(HOST_IP, 0) as (host, port):
        url = f"ws://{host}:{port}/"
        assert (await remote_client(namespace, url)).startswith("refused 401")
        assert await remote_client(namespace, url, "t0k") == "admitted"
