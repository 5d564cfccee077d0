"""The client side of a :class:`~pl3xus_rx.net.Network`: opening a connection to a server
and waiting for its WELCOME, then comparing its message table with ours."""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections.abc import Callable, Mapping
from typing import Literal

from ..exceptions import ConnectFailed, SchemaMismatch
from ..protocol import WelcomeFrame, offered_subprotocols
from ._connection import Connection
from ._settings import NetworkSettings
from ._transport import Link, Transport

__all__ = ["dial", "welcome_mismatches"]


async def dial(
    transport: Transport,
    settings: NetworkSettings,
    url: str,
    encoding: Literal["msgpack", "json"],
    open_connection: Callable[[Link], Connection],
    *,
    headers: Mapping[str, str] | None = None,
    ssl: _ssl.SSLContext | None = None,
    linked: Callable[[], None] = lambda: None,
) -> tuple[Connection, WelcomeFrame]:
    """Connect to ``url`` (``open_connection`` makes the connection of the link, ``linked``
    is told once the socket is open) and wait for the server's welcome.

    Raises:
        ConnectFailed: unreachable, refused, or no welcome within ``connect_timeout`` (the
            connection is then closed).
    """
    subprotocol = offered_subprotocols(encoding == "msgpack")
    holder: list[Connection] = []

    def make_handler(link: Link) -> Connection:
        conn = open_connection(link)
        holder.append(conn)
        return conn

    await transport.connect(url, settings, subprotocol, make_handler, headers=headers, ssl=ssl)
    linked()
    conn = holder[0]
    assert conn.welcome is not None
    try:
        welcome = await asyncio.wait_for(asyncio.shield(conn.welcome), settings.connect_timeout)
    except TimeoutError as exc:
        await conn.close(1002, "no welcome from the server", drain_timeout=0)
        raise ConnectFailed(
            f"{url} sent no welcome within {settings.connect_timeout:g} s; "
            "is it a pl3xus_rx server?"
        ) from exc
    conn.peer_welcome = welcome
    return conn, welcome


def welcome_mismatches(local: Mapping[str, str], welcome: WelcomeFrame) -> list[SchemaMismatch]:
    """The message types one side lacks or has with another schema hash (``local``: our
    name -> hash), by name."""
    remote = welcome.messages
    return [
        SchemaMismatch(name, local.get(name), remote.get(name))
        for name in sorted(set(local) | set(remote))
        if local.get(name) != remote.get(name)
    ]
