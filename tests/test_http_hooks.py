"""The handshake and plain-HTTP hooks: a request object in, a typed response out."""

from __future__ import annotations

import pytest
from conftest import http_get, make_network, url_of, wait_until
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from pl3xus_rx import ConnectFailed, DuplicateRegistration, SyncServer
from pl3xus_rx.net import HttpRequest, HttpResponse
from pl3xus_rx.protocol import JSON_SUBPROTOCOL_V2
from pl3xus_rx.testing import MemoryTransport

pytestmark = pytest.mark.asyncio


async def test_request_build_parses_query_and_headers() -> None:
    req = HttpRequest.build(
        "/metrics?a=1&a=2&b=", [("X-Token", "t1"), ("x-token", "t2"), ("Accept", "*/*")]
    )
    assert req.path == "/metrics"
    assert req.query == {"a": ("1", "2"), "b": ("",)}
    assert req.param("a") == "1" and req.param("missing") is None
    assert req.header("X-TOKEN") == "t1, t2" and req.header("accept") == "*/*"


async def test_a_route_sees_the_request_and_answers_typed() -> None:
    net = make_network()
    seen: list[HttpRequest] = []

    def page(request: HttpRequest) -> HttpResponse:
        seen.append(request)
        return HttpResponse(
            202, b"\x00\x01", "application/octet-stream", {"Cache-Control": "no-store"}
        )

    net.add_route("/page", page)
    with pytest.raises(DuplicateRegistration):
        net.add_route("/page", page)
    with pytest.raises(DuplicateRegistration):
        net.add_route("/healthz", page)
    _host, port = await net.listen("127.0.0.1", 0)
    status, headers, body = await http_get(port, "/page?user=ann&x=1", "X-Probe: yes\r\n")
    assert (status, body) == (202, b"\x00\x01")
    assert headers["content-type"] == "application/octet-stream"
    assert headers["cache-control"] == "no-store"
    (req,) = seen
    assert req.path == "/page" and req.param("user") == "ann" and req.header("x-probe") == "yes"
    assert req.remote.startswith("127.0.0.1:") and not req.upgrade
    net.add_route("/boom", lambda request: 1 / 0)  # type: ignore[arg-type,return-value]
    status, _, body = await http_get(port, "/boom")
    assert status == 500 and b"internal error" in body
    assert net.routes == ["/page", "/boom"]
    await net.close()


async def test_admission_checks_see_the_handshake_and_may_refuse() -> None:
    net = make_network()
    seen: list[HttpRequest] = []

    def token_required(request: HttpRequest) -> HttpResponse | None:
        seen.append(request)
        if request.param("token") == "good":
            return None
        return HttpResponse(401, "token required\n", headers={"WWW-Authenticate": "Bearer"})

    net.add_admission_check(token_required)
    await net.listen("127.0.0.1", 0)
    with pytest.raises(InvalidStatus) as info:
        async with ws_connect(url_of(net) + "?token=bad"):
            pass
    assert info.value.response.status_code == 401
    assert info.value.response.headers["WWW-Authenticate"] == "Bearer"
    client = make_network()
    with pytest.raises(ConnectFailed, match="401"):
        await client.connect(url_of(net) + "?token=bad")
    cid = await client.connect(url_of(net) + "?token=good", encoding="json")
    await wait_until(lambda: len(net.connections) == 1)
    (server_cid,) = net.connections
    request = net.request_of(server_cid)
    assert request is not None and request.param("token") == "good"
    assert request.subprotocol == JSON_SUBPROTOCOL_V2 and request.upgrade
    assert client.request_of(cid) is None  # the side that connected has no handshake request
    assert [r.param("token") for r in seen] == ["bad", "bad", "good"]
    assert net.statistics().refused == 2
    await client.close()
    await net.close()


async def test_an_admission_check_that_raises_refuses_with_500() -> None:
    net = make_network()
    net.add_admission_check(lambda request: 1 / 0)  # type: ignore[arg-type,return-value]
    await net.listen("127.0.0.1", 0)
    with pytest.raises(InvalidStatus) as info:
        async with ws_connect(url_of(net)):
            pass
    assert info.value.response.status_code == 500
    await net.close()


async def test_the_memory_transport_runs_the_same_checks() -> None:
    transport = MemoryTransport()
    server = SyncServer(transport=transport)
    server.net.add_admission_check(
        lambda r: None if r.header("sec-websocket-protocol") else HttpResponse(400, "no proto")
    )
    server.net.add_admission_check(
        lambda r: HttpResponse(403, "no\n") if r.param("who") == "mallory" else None
    )
    async with server.serve("mem", 1):
        client = make_network(transport=transport)
        with pytest.raises(ConnectFailed, match="HTTP 403: no"):
            await client.connect("ws://mem:1/?who=mallory")
        await client.connect("ws://mem:1/?who=alice")
        await wait_until(lambda: len(server.net.connections) == 1)
        request = server.net.request_of(server.net.connections[0])
        assert request is not None and request.param("who") == "alice"
        await client.close()


async def test_the_landing_page_links_what_a_server_serves_and_unknown_paths_are_404() -> None:
    server = SyncServer()
    async with server.serve("127.0.0.1", 0) as (_, port):
        status, headers, body = await http_get(port, "/")
        assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
        page = body.decode()
        for path in ("/devtools", "/metrics", "/healthz"):
            assert f'<a href="{path}">' in page
        assert "pl3xus.msgpack" in page
        status, _, body = await http_get(port, "/nothing-here")
        assert status == 404 and b"/devtools" in body
    plain = SyncServer(devtools=False, metrics=False)
    async with plain.serve("127.0.0.1", 0) as (_, port):
        page = (await http_get(port, "/"))[2].decode()
        assert "/devtools" not in page and "/metrics" not in page and "/healthz" in page
