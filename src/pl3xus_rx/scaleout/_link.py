"""Connecting to NATS, shared by the authority and the gateways: credentials, TLS, and URLs
shown without their secrets."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client as NatsClient

__all__ = ["CONNECT_TIMEOUT", "NatsOptions", "connect", "redact_url"]

CONNECT_TIMEOUT = 10.0
"""Seconds the first connection to NATS may take before ``start()`` gives up."""

# what connect() sets itself: an option passed through ``extra`` may not replace it
_OWN = frozenset(
    {
        "servers",
        "name",
        "max_reconnect_attempts",
        "reconnect_time_wait",
        "error_cb",
        "disconnected_cb",
        "reconnected_cb",
    }
)


def redact_url(url: str) -> str:
    """``url`` as it may be printed or logged: without its user info (a user and password,
    or a token, in ``nats://user:pass@host:4222``). Comma-separated URLs are each redacted."""
    return ",".join(_redact_one(part) for part in url.split(","))


def _redact_one(url: str) -> str:
    url = url.strip()
    if "://" not in url:  # (nats-py takes "user:pass@host:4222" too)
        return url.rpartition("@")[2]
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an unreadable URL>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True, slots=True)
class NatsOptions:
    """How an :class:`~pl3xus_rx.scaleout.Authority` or a
    :class:`~pl3xus_rx.scaleout.Gateway` authenticates to NATS and protects the link.

    Every field maps to a ``nats.connect`` option; secrets never appear in ``repr`` and
    the library never logs them. Credentials may also be put in the URL
    (``nats://user:pass@host:4222``); logs and banners show the URL without them.

    Attributes:
        user: NATS user name (``user``).
        password: Its password (``password``).
        token: A NATS authorization token (``token``).
        creds_file: A ``.creds`` file: a user JWT and its nkey seed (``user_credentials``;
            needs the ``nkeys`` package).
        nkey_seed_file: A file holding an nkey seed (``nkeys_seed``; needs ``nkeys``).
        tls: The TLS context for the connection (``tls``): see :meth:`tls_context`. A
            ``tls://`` URL without one uses the system's trusted CAs.
        tls_hostname: The name to check the server's certificate against, when it is not
            the URL's host (``tls_hostname``).
        extra: Any other ``nats.connect`` keyword arguments, passed through as given
            (not those the link sets itself: ``name``, the callbacks, reconnection).
    """

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    creds_file: str | None = None
    nkey_seed_file: str | None = None
    tls: ssl.SSLContext | None = None
    tls_hostname: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    def __post_init__(self) -> None:
        if self.password is not None and self.user is None:
            raise ValueError("a NATS password needs a user (NatsOptions(user=...))")
        if self.token is not None and (self.user is not None or self.creds_file is not None):
            raise ValueError("give NATS a token, or a user, or a creds file: one of them")
        own = sorted(_OWN.intersection(self.extra))
        if own:
            raise ValueError(f"NatsOptions.extra may not set {', '.join(own)}: the link does")
        if (self.creds_file or self.nkey_seed_file) and importlib.util.find_spec("nkeys") is None:
            raise ValueError("NATS creds and nkey files need the nkeys package: pip install nkeys")

    @staticmethod
    def tls_context(
        ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
    ) -> ssl.SSLContext:
        """A client TLS context: trusting ``ca_file`` (else the system's CAs), presenting
        ``cert_file`` / ``key_file`` when the server asks for a client certificate."""
        context = ssl.create_default_context(cafile=ca_file)
        if cert_file is not None:
            context.load_cert_chain(cert_file, key_file)
        elif key_file is not None:
            raise ValueError("a client key needs its certificate (cert_file) too")
        return context

    def connect_kwargs(self) -> dict[str, Any]:
        """The ``nats.connect`` keyword arguments these options stand for."""
        kwargs: dict[str, Any] = dict(self.extra)
        if self.user is not None:
            kwargs["user"] = self.user
        if self.password is not None:
            kwargs["password"] = self.password
        if self.token is not None:
            kwargs["token"] = self.token
        if self.creds_file is not None:
            kwargs["user_credentials"] = self.creds_file
        if self.nkey_seed_file is not None:
            kwargs["nkeys_seed"] = self.nkey_seed_file
        if self.tls is not None:
            kwargs["tls"] = self.tls
        if self.tls_hostname is not None:
            kwargs["tls_hostname"] = self.tls_hostname
        return kwargs


async def connect(
    url: str,
    name: str,
    logger: logging.Logger,
    *,
    options: NatsOptions | None = None,
    reconnected: Callable[[], Awaitable[None]] | None = None,
    timeout: float = CONNECT_TIMEOUT,
    errors: Callable[[Exception], None] | None = None,
) -> NatsClient:
    """A NATS connection that reconnects forever once made; its errors logged at most
    once every 30 s at WARNING (the rest at DEBUG) and handed to ``errors``. Logs and
    errors show ``url`` without its user info.

    Raises:
        ConnectionError: no NATS server answered at ``url`` within ``timeout``, or it
            refused the credentials.
    """
    shown = redact_url(url)
    last = [-1e9]

    async def error(exc: Exception) -> None:
        if errors is not None:
            errors(exc)
        now = time.monotonic()
        if now - last[0] >= 30.0:
            last[0] = now
            logger.warning("NATS at %s: %s", shown, exc)
        else:
            logger.debug("NATS at %s: %s", shown, exc)

    made: list[NatsClient] = []

    async def disconnected() -> None:
        if made and (made[0].is_draining or made[0].is_closed):
            logger.debug("NATS at %s: closed", shown)  # our own stop()
        else:
            logger.warning("NATS at %s: disconnected; reconnecting", shown)

    kwargs: dict[str, Any] = options.connect_kwargs() if options is not None else {}
    kwargs.update(
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        error_cb=error,
        disconnected_cb=disconnected,
    )
    if reconnected is not None:
        kwargs["reconnected_cb"] = reconnected
    try:
        client = await asyncio.wait_for(nats.connect(url, **kwargs), timeout)
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        # (the cause is chained, not printed: nats-py's text may quote the URL)
        raise ConnectionError(
            f"no NATS server answered at {shown} within {timeout:g} s, or it refused "
            "the credentials (see the log)"
        ) from exc
    made.append(client)
    return client
