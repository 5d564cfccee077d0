"""NetworkSettings: every knob of the transport, validated."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .._settings import CheckedSettings

__all__ = ["CLIENT_MAX_MESSAGE", "SERVER_MAX_MESSAGE", "NetworkSettings"]

MiB = 1024 * 1024
SERVER_MAX_MESSAGE = 4 * MiB
"""What a server accepts from a client by default (commands; raise it for big uploads)."""
CLIENT_MAX_MESSAGE = 64 * MiB
"""What a client accepts from its server by default (snapshot parts, big flushes)."""


class NetworkSettings(CheckedSettings):
    """Settings for a :class:`Network` (and the network side of a ``SyncServer``).

    Every value is validated on construction; a bad value raises :class:`SettingsError`
    naming the field. Instances are immutable; use ``settings.model_copy(update={...})``.

    Attributes:
        max_message_size: Largest incoming WebSocket message, in bytes. A bigger one closes
            the connection with 1009 and the limit in the reason. ``None`` (the default):
            4 MiB for what clients send a server (commands), 64 MiB for what a server sends
            its clients (snapshots); see :meth:`message_limit`.
        max_frame_size: Largest incoming WebSocket frame (fragment), in bytes. ``None``:
            the message limit, at most 16 MiB.
        channel_capacity: Frames each connection's outbound channel holds while its socket
            is backed up.
        channel_capacity_bytes: Bytes each connection's outbound channel holds (whichever
            of the two limits comes first makes it full).
        channel_warning_threshold: Percent of ``channel_capacity`` at which "Channel depth
            warning" is logged (at most once per ``warning_interval`` per connection).
        channel_full_policy: What happens when a channel is full: ``"close"`` closes the slow
            connection with 1013 (default); ``"drop"`` drops the new frame. Both are counted
            and emitted as an ``Error`` event.
        max_connections: Connections accepted at once; more are refused with HTTP 503.
            ``None`` means no limit.
        rate_limit_per_second: Incoming frames per second per accepted connection (token
            bucket); ``None`` disables rate limiting. Not applied to connections this
            network opened with ``connect()``.
        rate_limit_burst: Bucket size: frames a connection may send at once.
        rate_limit_frame_time: Seconds of the server's time one frame may take at the
            price of one frame: a frame handled in N times as long is charged N frames, so
            the rate limit bounds each connection's share of the server's time (at the
            defaults 10 % of a core, in bursts of 0.1 s), not just its frame count; while a
            connection is in debt it is not read. ``None``: every frame costs one.
        rate_limit_max_violations: Frames dropped for rate limiting within
            ``rate_limit_window`` seconds after which the connection is closed with 1008.
        rate_limit_window: Window, in seconds, for ``rate_limit_max_violations``.
        ping_interval: Seconds between keepalive pings; ``None`` disables pings.
        ping_timeout: Seconds to wait for a pong before closing; ``None`` waits forever.
        allowed_origins: Browser origins accepted besides the server's own
            (``"https://hmi.example"``); ``("*",)`` accepts every origin. Clients that send
            no Origin header (non-browser clients) are always accepted; a browser handshake
            from any other origin is refused with HTTP 403 (cross-site WebSocket hijacking).
        allow_anonymous: Without an authenticator, accept clients from every address as
            anonymous. Off by default (protected mode): only loopback clients are accepted
            until an authenticator is configured.
        allowed_hosts: ``Host`` header values (names or addresses, without the port) this
            server answers to besides the ones that name it (``localhost``, loopback
            addresses, the bound address; for a wildcard bind, the machine's addresses and
            host name); ``("*",)`` accepts any. Without an authenticator (and with
            ``allow_anonymous``) every request but ``/healthz`` must name an allowed host
            (DNS rebinding: a foreign page whose name resolves to this machine is refused
            with 403); with an authenticator the check applies only when this is set.
            Browser ``Origin`` hosts must be allowed hosts in the same cases.
        behind_tls_proxy: The server is reached over TLS through a proxy that terminates it: a
            browser page on it has an ``https://`` origin. Without it (and without TLS of
            its own) an ``https://`` Origin is refused where the scheme is checked.
        credential_grace: Seconds a connection lives on past its credential's expiry
            (``Identity.expires_at``) for a refresh under way; then it is closed with close
            code 4001 (``CloseCode.CREDENTIAL_EXPIRED``).
        compression: Enable permessage-deflate. Off by default: it costs 2.5-10x CPU.
        open_timeout: Seconds allowed for the opening handshake.
        close_timeout: Seconds allowed for the closing handshake.
        shutdown_timeout: Seconds ``close()`` waits for channels to drain before closing.
        connect_timeout: Seconds ``connect()`` waits for the server's welcome.
        backlog: Listen backlog (the OS default of 100 overflows on connect bursts).
        warning_interval: Minimum seconds between repeated warnings of one kind per
            connection.
        write_limit: Bytes a connection's socket buffer may hold before it counts as backed
            up (frames then wait in its channel). Larger absorbs bursts without a task
            switch per frame; smaller bounds memory per slow client more tightly.
    """

    max_message_size: int | None = Field(default=None, gt=0)
    max_frame_size: int | None = Field(default=None, gt=0)
    channel_capacity: int = Field(default=500, ge=1)
    channel_capacity_bytes: int = Field(default=32 * MiB, ge=1)
    channel_warning_threshold: int = Field(default=80, ge=1, le=100)
    channel_full_policy: Literal["close", "drop"] = "close"
    max_connections: int | None = Field(default=10_000, ge=1)
    rate_limit_per_second: float | None = Field(default=1000.0, gt=0)
    rate_limit_burst: int = Field(default=1000, ge=1)
    rate_limit_frame_time: float | None = Field(default=0.0001, gt=0)
    rate_limit_max_violations: int = Field(default=1000, ge=1)
    rate_limit_window: float = Field(default=10.0, gt=0)
    ping_interval: float | None = Field(default=20.0, gt=0)
    ping_timeout: float | None = Field(default=20.0, gt=0)
    allowed_origins: tuple[str | None, ...] | None = None
    allow_anonymous: bool = False
    allowed_hosts: tuple[str, ...] | None = None
    behind_tls_proxy: bool = False
    credential_grace: float = Field(default=5.0, ge=0)
    compression: bool = False
    open_timeout: float = Field(default=10.0, gt=0)
    close_timeout: float = Field(default=10.0, gt=0)
    shutdown_timeout: float = Field(default=5.0, ge=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    backlog: int = Field(default=1024, ge=1)
    warning_interval: float = Field(default=5.0, ge=0)
    write_limit: int = Field(default=1 * MiB, ge=4096)

    @model_validator(mode="after")
    def _frame_within_message(self) -> NetworkSettings:
        if (
            self.max_frame_size is not None
            and self.max_message_size is not None
            and self.max_frame_size > self.max_message_size
        ):
            raise ValueError(
                f"max_frame_size ({self.max_frame_size}) must not exceed "
                f"max_message_size ({self.max_message_size})"
            )
        return self

    def message_limit(self, server: bool) -> int:
        """The largest incoming message a server (``server``) or a client accepts."""
        if self.max_message_size is not None:
            return self.max_message_size
        return SERVER_MAX_MESSAGE if server else CLIENT_MAX_MESSAGE

    def frame_limit(self, server: bool) -> int:
        """The largest incoming WebSocket frame a server or a client accepts."""
        if self.max_frame_size is not None:
            return self.max_frame_size
        return min(self.message_limit(server), 16 * MiB)

    @property
    def channel_warning_depth(self) -> int:
        """The channel depth at which the depth warning fires."""
        return max(1, self.channel_capacity * self.channel_warning_threshold // 100)
