"""Hosts and origins: DNS rebinding and cross-site pages are refused, by name (issue 24).

A rebinding page sends a ``Host`` and an ``Origin`` that agree with each other, from
loopback: only the names themselves can tell it from the server's own page.
"""

from __future__ import annotations

import asyncio
import os
import socket
from base64 import b64encode

import pytest
from conftest import UNIT

from pl3xus_rx import NetworkSettings, SyncServer
from pl3xus_rx.net._hosts import HostNames, host_of
from pl3xus_rx.security import Identity, bearer_tokens

pytestmark = [pytest.mark.timeout(120)]

CHROMIUM = "/usr/bin/chromium"


async def ask(
    port: int,
    host: str | None,
    *,
    path: str = "/",
    origin: str | None = None,
    upgrade: bool = True,
    address: str = "127.0.0.1",
    token: str | None = None,
) -> tuple[int, str]:
    """One HTTP request (a WebSocket handshake unless ``upgrade`` is false) with exactly
    these headers: the status and the body's first line."""
    lines = [f"GET {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    if upgrade:
        key = b64encode(os.urandom(16)).decode()
        lines += [
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 5 * UNIT)
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5 * UNIT)
        status = int(head.split(b" ", 2)[1])
        body = b""
        if status != 101:
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await asyncio.wait_for(reader.readexactly(length), 5 * UNIT)
        return status, body.decode(errors="replace").split("\n", 1)[0]
    finally:
        writer.close()


def machine_address() -> str | None:
    """A non-loopback IPv4 address of this machine, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))  # (no packet is sent: it picks a route)
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else str(address)


# ---------------------------------------------------------------------- the names


def test_host_of_reads_only_a_host() -> None:
    assert host_of("Rebind.Example.:8080") == "rebind.example"
    assert host_of("[::1]:80") == "::1"
    assert host_of("127.0.0.1") == "127.0.0.1"
    for bad in ("", "a/b", "user@host", "host:port", "h?x", "h:99999"):
        assert host_of(bad) is None, bad


def test_names_of_a_server_bound_to_loopback() -> None:
    names = HostNames()
    names.listening("127.0.0.1", False, ())
    for good in ("localhost", "127.0.0.1", "127.0.0.9", "::1"):
        assert names.allowed(good, None), good
    machine = socket.gethostname().lower()
    for foreign in ("rebind.example", "203.0.113.9", machine):
        assert not names.allowed(foreign, None), foreign
    assert names.allowed("rebind.example", ("rebind.example",))
    assert names.allowed("rebind.example", ("REBIND.example:8080",))  # (a port is ignored)
    assert names.allowed("anything.example", ("*",))


def test_names_of_a_wildcard_server_include_the_machine() -> None:
    names = HostNames()
    names.listening("0.0.0.0", False, ("Box", "box.lan."))
    assert names.allowed("box", None) and names.allowed("box.lan", None)
    assert not names.allowed("rebind.example", None)
    assert not names.allowed("203.0.113.9", None)  # (TEST-NET-3: never this machine's)
    assert not names.allowed("224.0.0.1", None)  # a multicast address binds; not a name
    address = machine_address()
    if address is not None:
        assert names.allowed(address, None)


# ---------------------------------------------------------------------- protected mode


@pytest.mark.asyncio
async def test_a_rebinding_page_is_refused_in_protected_mode() -> None:
    server = SyncServer()
    async with server.serve("127.0.0.1", 0) as (_, port):
        foreign = f"rebind.example:{port}"
        status, text = await ask(port, foreign, origin=f"http://{foreign}")
        assert status == 403 and "Host header" in text and "rebind.example" in text
        for path in ("/devtools", "/metrics", "/", "/nothing"):
            status, text = await ask(port, foreign, path=path, upgrade=False)
            assert status == 403 and "Host header" in text, path
        status, _ = await ask(port, foreign, path="/healthz", upgrade=False)
        assert status == 200  # probes send pod addresses
        # the server's own names
        for own in (f"127.0.0.1:{port}", f"localhost:{port}", "127.0.0.1"):
            status, _ = await ask(port, own, origin=f"http://{own}")
            assert status == 101, own
        status, _ = await ask(port, f"localhost:{port}", path="/devtools", upgrade=False)
        assert status == 200
        assert server.net.statistics().refused == 1  # handshakes: plain pages are not


@pytest.mark.asyncio
async def test_allowed_hosts_lets_a_name_in() -> None:
    server = SyncServer(NetworkSettings(allowed_hosts=("hmi.plant",)))
    async with server.serve("127.0.0.1", 0) as (_, port):
        status, _ = await ask(port, f"hmi.plant:{port}", origin=f"http://hmi.plant:{port}")
        assert status == 101
        status, _ = await ask(port, f"rebind.example:{port}")
        assert status == 403


@pytest.mark.asyncio
async def test_origins_in_protected_mode() -> None:
    server = SyncServer()
    async with server.serve("127.0.0.1", 0) as (_, port):
        own = f"127.0.0.1:{port}"
        # a page of this machine on another port (a dev server): its host is a name of ours
        status, _ = await ask(port, own, origin="http://localhost:5173")
        assert status == 101
        status, text = await ask(port, own, origin="http://evil.example")
        assert status == 403 and "not a name of this server" in text
        # a plain ws:// server: an https page's origin is not its own (issue 24, item 7)
        status, text = await ask(port, own, origin=f"https://{own}")
        assert status == 403 and "behind_tls_proxy" in text
        status, _ = await ask(port, own, origin="null")
        assert status == 403


@pytest.mark.asyncio
async def test_behind_a_tls_proxy_the_origin_is_https() -> None:
    server = SyncServer(NetworkSettings(behind_tls_proxy=True))
    async with server.serve("127.0.0.1", 0) as (_, port):
        own = f"127.0.0.1:{port}"
        assert (await ask(port, own, origin=f"https://{own}"))[0] == 101
        assert (await ask(port, own, origin=f"http://{own}"))[0] == 403


@pytest.mark.asyncio
async def test_allowed_origins_admit_in_every_mode() -> None:
    settings = NetworkSettings(allowed_origins=("https://hmi.example",))
    server = SyncServer(settings)
    async with server.serve("127.0.0.1", 0) as (_, port):
        status, _ = await ask(port, f"127.0.0.1:{port}", origin="https://hmi.example")
        assert status == 101


# ---------------------------------------------------------------------- with an authenticator


@pytest.mark.asyncio
async def test_with_an_authenticator_the_host_is_checked_only_when_listed() -> None:
    tokens = bearer_tokens({"t0k": Identity.of("ann", "operator")})
    server = SyncServer(authenticate=tokens)
    async with server.serve("127.0.0.1", 0) as (_, port):
        name = f"hmi.example:{port}"
        # the rebinding page has no credential: it is refused by the authenticator
        assert (await ask(port, name, origin=f"http://{name}"))[0] == 401
        # a client with one may use any name; its Origin must still be the Host
        assert (await ask(port, name, origin=f"http://{name}", token="t0k"))[0] == 101
        status, text = await ask(port, name, origin="http://evil.example", token="t0k")
        assert status == 403 and "not this server's origin" in text
    listed = NetworkSettings(allowed_hosts=("hmi.example",))
    server = SyncServer(listed, authenticate=tokens)
    async with server.serve("127.0.0.1", 0) as (_, port):
        assert (await ask(port, f"hmi.example:{port}", token="t0k"))[0] == 101
        status, text = await ask(port, f"other.example:{port}", token="t0k")
        assert status == 403 and "Host header" in text


# ---------------------------------------------------------------------- a wildcard bind


@pytest.mark.asyncio
async def test_a_wildcard_server_answers_to_the_machines_address_and_name() -> None:
    address = machine_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    server = SyncServer(NetworkSettings(allow_anonymous=True))
    async with server.serve("0.0.0.0", 0) as (_, port):
        own = f"{address}:{port}"
        status, _ = await ask(port, own, origin=f"http://{own}", address=address)
        assert status == 101
        name = f"{socket.gethostname()}:{port}"
        assert (await ask(port, name, origin=f"http://{name}", address=address))[0] == 101
        status, text = await ask(port, f"rebind.example:{port}", address=address)
        assert status == 403 and "Host header" in text


# ---------------------------------------------------------------------- a real browser


@pytest.mark.asyncio
@pytest.mark.slow
@pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (.ci/run installs it)",
)
async def test_chromium_on_a_rebound_name_is_refused() -> None:
    """A name that resolves to 127.0.0.1 (as an attacker's DNS would answer) loads nothing
    from the server, and its page cannot open a WebSocket to it; the server's own name
    can."""
    from playwright.async_api import async_playwright

    server = SyncServer()
    async with server.serve("127.0.0.1", 0) as (_, port), async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--host-resolver-rules=MAP rebind.test 127.0.0.1",
            ],
        )
        try:
            # (bypass_csp: the refusal page's own CSP must not be what stops the socket)
            context = await browser.new_context(bypass_csp=True)
            page = await context.new_page()
            opened = """url => new Promise(done => {
                const ws = new WebSocket(url);
                ws.onopen = () => { ws.close(); done("open"); };
                ws.onerror = () => done("refused");
                setTimeout(() => done("timeout"), 5000);
            })"""
            answer = await page.goto(f"http://rebind.test:{port}/devtools")
            assert answer is not None and answer.status == 403
            assert "Host header" in await page.content()
            refused_before = server.net.statistics().refused
            assert await page.evaluate(opened, f"ws://rebind.test:{port}/") == "refused"
            assert server.net.statistics().refused > refused_before
            answer = await page.goto(f"http://127.0.0.1:{port}/")
            assert answer is not None and answer.status == 200
            assert await page.evaluate(opened, f"ws://127.0.0.1:{port}/") == "open"
        finally:
            await browser.close()


@pytest.mark.asyncio
async def test_refusals_are_counted_once_and_logged_at_a_pace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    caplog.set_level(logging.WARNING, logger="pl3xus_rx")
    server = SyncServer()
    async with server.serve("127.0.0.1", 0) as (_, port):
        for _ in range(20):
            assert (await ask(port, f"rebind.example:{port}"))[0] == 403
            assert (await ask(port, f"rebind.example:{port}", upgrade=False))[0] == 403
            status, _ = await ask(port, f"127.0.0.1:{port}", origin="http://evil.example")
            assert status == 403
        assert server.net.statistics().refused == 40  # the handshakes, each once
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if ": Host '" in m]) == 1
    assert len([m for m in lines if "Origin" in m and "Refused a handshake" in m]) == 1
    assert len([m for m in lines if "Refused connection from" in m]) == 1
