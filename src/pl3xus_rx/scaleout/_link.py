"""Connecting to NATS, shared by the authority and the gateways."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client as NatsClient

__all__ = ["connect"]

CONNECT_TIMEOUT = 10.0
"""Seconds the first connection to NATS may take before ``start()`` gives up."""


async def connect(
    url: str,
    name: str,
    logger: logging.Logger,
    *,
    reconnected: Callable[[], Awaitable[None]] | None = None,
    timeout: float = CONNECT_TIMEOUT,
) -> NatsClient:
    """A NATS connection that reconnects forever once made; its errors logged at most
    once every 30 s at WARNING (the rest at DEBUG).

    Raises:
        ConnectionError: no NATS server answered at ``url`` within ``timeout``.
    """
    last = [-1e9]

    async def error(exc: Exception) -> None:
        now = time.monotonic()
        if now - last[0] >= 30.0:
            last[0] = now
            logger.warning("NATS at %s: %s", url, exc)
        else:
            logger.debug("NATS at %s: %s", url, exc)

    made: list[NatsClient] = []

    async def disconnected() -> None:
        if made and (made[0].is_draining or made[0].is_closed):
            logger.debug("NATS at %s: closed", url)  # our own stop()
        else:
            logger.warning("NATS at %s: disconnected; reconnecting", url)

    options: dict[str, Any] = {
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "error_cb": error,
        "disconnected_cb": disconnected,
    }
    if reconnected is not None:
        options["reconnected_cb"] = reconnected
    try:
        client = await asyncio.wait_for(nats.connect(url, **options), timeout)
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        raise ConnectionError(f"no NATS server answered at {url} within {timeout:g} s") from exc
    made.append(client)
    return client
