"""``Network``: typed messages over WebSockets between a server and many clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl as _ssl
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import fields
from types import TracebackType
from typing import Any, Literal, TypeVar, cast

import reactivex
from pydantic import BaseModel

from .._http import AdmissionCheck, HttpRequest, HttpResponse, RouteHandler
from .._rx import Dispatcher, SafeSubject
from ..exceptions import (
    ConnectFailed,
    ConnectionNotFound,
    NetworkStateError,
)
from ..protocol import (
    Codec,
    RegisteredType,
    TypeTable,
    WelcomeFrame,
    WireData,
    codec_for_subprotocol,
    error_frame,
    message_frame,
    to_wire,
    welcome_frame,
)
from ..security import ANONYMOUS, Authenticator, Identity, is_loopback
from ._admission import Admission
from ._connection import Connection, ConnectionStatistics
from ._credentials import Credentials
from ._dial import dial, welcome_mismatches
from ._events import (
    Connected,
    ConnectionId,
    Disconnected,
    Error,
    NetworkData,
    NetworkEvent,
    NetworkState,
    NetworkStatistics,
)
from ._health import HealthCheck, HealthChecks
from ._intake import Intake, kind_name
from ._routes import Routes
from ._settings import NetworkSettings
from ._transport import Link, Listener, Transport

__all__ = ["Network"]

logger = logging.getLogger("pl3xus_rx.net")

M = TypeVar("M", bound=BaseModel)

_T = TypeVar("_T")


class _Encoded:
    """One frame, encoded lazily at most once per codec and reused for every connection."""

    __slots__ = ("_frame", "json", "msgpack")

    def __init__(self, frame: list[Any]) -> None:
        self._frame = frame
        self.msgpack: bytes | str | None = None
        self.json: bytes | str | None = None

    def for_codec(self, codec: Codec) -> bytes | str:
        if codec.binary:
            data = self.msgpack
            if data is None:
                data = self.msgpack = codec.encode(self._frame)
            return data
        data = self.json
        if data is None:
            data = self.json = codec.encode(self._frame)
        return data


def _machine_names() -> tuple[str, ...]:
    """This machine's host name and fully qualified name."""
    return (socket.gethostname(), socket.getfqdn())


class _Plumbing:
    """How the transport and the connections reach a :class:`Network` (its listener hooks
    and what a connection reports): kept apart so that ``Network``'s public methods are
    the user's API. The methods are the network's own, bound once (no extra call per
    frame)."""

    def __init__(self, net: Network) -> None:
        self._net = net
        # ListenerHooks
        self.health = net._routes.health
        self.http = net._page
        self.admit = net._admit
        self.opened = net._opened
        # ConnectionOwner
        self.receive = net._intake.receive
        self.closed = net._closed
        self.count = net._count
        self.emit_error = net._emit_error
        self.send_error = net._send_error
        self.spawn = net.spawn

    @property
    def settings(self) -> NetworkSettings:
        """The network's settings, as they are now."""
        return self._net.settings


class Network:
    """Typed messaging over WebSockets: one API to listen, connect, send and receive.

    ``send``, ``broadcast`` and ``broadcast_except`` enqueue on each connection's bounded
    channel and return at once; they never await the socket. Call them from the event loop's
    thread. Everything the network reports is a reactivex Observable (:attr:`events`,
    :meth:`messages`); subscribers run on the event loop, never on the socket reader, and a
    subscriber that raises is detached without affecting the others.

    Args:
        settings: Limits and options; defaults to ``NetworkSettings()``.
        transport: What moves the bytes; defaults to WebSockets. ``pl3xus_rx.testing``
            has an in-memory one.
        welcome_extra: For the layer above: ``welcome_extra(connection)`` returns more keys
            for the welcome body of a new connection.
        extension_handler: For the layer above: receives the frames of the sync and command
            layers (``FrameKind.SUBSCRIBE`` and up) as ``(connection, binary, frame)``; a
            ``ProtocolError`` it raises is answered like any bad frame.
    """

    def __init__(
        self,
        settings: NetworkSettings | None = None,
        *,
        transport: Transport | None = None,
        welcome_extra: Callable[[ConnectionId], dict[str, Any]] | None = None,
        extension_handler: Callable[[ConnectionId, bool, list[Any]], None] | None = None,
    ) -> None:
        if transport is None:
            from ._websocket import WebSocketTransport

            transport = WebSocketTransport()
        self.settings: NetworkSettings = settings if settings is not None else NetworkSettings()
        self._transport = transport
        self._state = NetworkState.IDLE
        self._types = TypeTable("message")
        self._subjects: dict[str, SafeSubject[Any]] = {}
        self._events: SafeSubject[NetworkEvent] = SafeSubject()
        self._dispatcher = Dispatcher()
        self._connections: dict[ConnectionId, Connection] = {}
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._next_id = 1
        self._started = time.monotonic()
        self._counters: dict[str, int] = dict.fromkeys(
            (
                f.name
                for f in fields(NetworkStatistics)
                if f.name not in ("connections", "received_kinds")
            ),
            0,
        )
        self._closed_event: asyncio.Event | None = None
        self._none_left: asyncio.Event | None = None
        self._welcome_extra = welcome_extra
        self._draining: str | None = None  # why, while draining
        self._closing_all: tuple[int, str] | None = None  # (code, reason) being closed with
        self._health = HealthChecks(lambda: self.settings.warning_interval)
        self._routes = Routes(
            lambda: (
                self._health_state(),
                len(self._connections),
                time.monotonic() - self._started,
            ),
            self._health,
        )
        self._intake = Intake(
            self._types,
            self._subjects,
            self._dispatcher,
            lambda: self.settings,
            self._count,
            self._emit_error,
            self._send_error,
            extension_handler,
            lambda conn, command: self._credentials.refresh(conn, command),
        )
        self._plumbing = _Plumbing(self)
        self._admission = admission = Admission(
            lambda: self.settings,
            self._count,
            lambda: (self._state is NetworkState.RUNNING, len(self._connections)),
            self._unavailable,
        )
        self._credentials = Credentials(admission, lambda: self.settings, self._count, self.spawn)
        self.refusal_listeners = self._admission.refusal_listeners
        """Told ``(request, response)`` for every refused handshake (a server's
        instruments)."""

    # ------------------------------------------------------------------ HTTP hooks

    def add_route(self, path: str, handler: RouteHandler) -> None:
        """Serve plain HTTP ``path`` on the WebSocket port: ``handler(request)`` returns the
        :class:`HttpResponse` (``/healthz`` is built in).

        Raises:
            DuplicateRegistration: ``path`` is already served.
        """
        self._routes.add(path, handler)

    @property
    def routes(self) -> list[str]:
        """The plain HTTP paths served besides ``/healthz``."""
        return list(self._routes.handlers)

    def authenticate(self, authenticator: Authenticator) -> None:
        """Authenticate every WebSocket handshake: ``authenticator(request)`` (sync or async)
        returns the client's :class:`~pl3xus_rx.Identity`, or raises
        :class:`~pl3xus_rx.AuthenticationFailed` to refuse it with 401 / 403 and the reason.
        It replaces protected mode (loopback clients must authenticate too)."""
        self._admission.authenticator = authenticator

    @property
    def authenticator(self) -> Authenticator | None:
        """The authenticator (``None``: protected mode)."""
        return self._admission.authenticator

    def identity_of(self, connection: ConnectionId) -> Identity:
        """Who the client on ``connection`` is (:data:`~pl3xus_rx.ANONYMOUS` when nobody
        authenticated it, and for unknown or closed connections)."""
        conn = self._connections.get(connection)
        return conn.identity if conn is not None else ANONYMOUS

    def add_admission_check(self, check: AdmissionCheck) -> None:
        """Decide WebSocket handshakes: ``check(request)`` returns ``None`` to admit, or the
        :class:`HttpResponse` to refuse with (401, 403...). Checks run in the order added,
        after the built-in ones (shutting down, ``max_connections``, the subprotocol, the
        Origin, the identity: authenticator or protected mode); a check that raises refuses
        the handshake with 500 and is logged."""
        self._admission.checks.append(check)

    # ------------------------------------------------------------------ health

    def add_health_check(self, name: str, check: Callable[[], HealthCheck]) -> None:
        """Report ``check()`` under ``name`` in ``/healthz`` (``"checks": {name: {"ok":
        ..., **detail}}``; any check not ok answers 503 ``"unhealthy"``), and refuse new
        WebSocket handshakes (503, naming the check's ``detail["reason"]``) while it says
        ``admit=False``; live connections go on. It is called at every ``/healthz``
        request and every handshake, on the event loop: keep it cheap (read a flag), never
        block. One that raises counts as not ok (and is logged, at most once per
        ``warning_interval``); it does not refuse handshakes.

        Raises:
            DuplicateRegistration: a check of that name is installed.
        """
        self._health.add(name, check)

    def remove_health_check(self, name: str) -> None:
        """Stop asking the health check ``name`` (nothing happens if there is none)."""
        self._health.remove(name)

    def _health_state(self) -> str:
        if self._state is not NetworkState.RUNNING:
            return "shutting_down"
        return "draining" if self._draining is not None else "ok"

    def _unavailable(self) -> HttpResponse | None:
        """The refusal of a handshake while draining or a health check refuses."""
        if self._draining is not None:
            return HttpResponse(
                503, f"server is draining ({self._draining[:200]}): connect to another one\n"
            )
        return self._health.refusal()

    def start_draining(self, reason: str = "draining") -> None:
        """Admit no new connection from now on: handshakes are refused with 503 (the text
        names ``reason``) and ``/healthz`` answers 503 ``"status": "draining"``; the live
        connections go on (close them with :meth:`close_connections`, or :meth:`close`).
        Calling it again changes the reason."""
        if self._draining is None:
            logger.info("Draining: no new connections (%s)", reason)
        self._draining = reason

    @property
    def draining(self) -> bool:
        """Whether :meth:`start_draining` was called."""
        return self._draining is not None

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> NetworkState:
        """Where the network is in its life cycle."""
        return self._state

    def _set_state(self, state: NetworkState) -> None:
        logger.debug("network state %s -> %s", self._state.value, state.value)
        self._state = state

    def _require(self, *allowed: NetworkState, action: str) -> None:
        if self._state not in allowed:
            raise NetworkStateError(
                f"cannot {action}: the Network is {self._state.value}"
                + ("; create a new Network" if self._state is NetworkState.CLOSED else "")
            )

    # ------------------------------------------------------------------ registration

    def register_message(self, model: type[M], name: str | None = None) -> RegisteredType[M]:
        """Register a pydantic model as a message type, under ``name`` or its class name.

        Both ends must register the same types; the server's welcome lists them with schema
        hashes and ``connect()`` reports any difference as a :class:`SchemaMismatch`.

        Raises:
            DuplicateRegistration: another model already uses that name.
        """
        entry = self._types.register(model, name)
        self._subjects.setdefault(entry.name, SafeSubject())
        return entry

    @property
    def message_types(self) -> TypeTable:
        """The registered message types."""
        return self._types

    def messages(self, model: type[M]) -> reactivex.Observable[NetworkData[M]]:
        """An Observable of every ``model`` message received, with its source connection.

        Raises:
            NotRegistered: ``model`` was never registered.
        """
        entry = self._types.by_model(model)
        return cast(reactivex.Observable[NetworkData[M]], self._subjects[entry.name])

    @property
    def events(self) -> reactivex.Observable[NetworkEvent]:
        """``Connected``, ``Disconnected`` and ``Error`` events, in order."""
        return self._events

    # ------------------------------------------------------------------ listen / connect

    async def listen(
        self, host: str, port: int, *, ssl: _ssl.SSLContext | None = None
    ) -> tuple[str, int]:
        """Start accepting connections on ``host:port`` (port 0 picks a free port); with
        ``ssl``, over TLS (``wss://``, and ``https://`` for the HTTP routes).

        ``GET /healthz`` on the same port answers 200 JSON while running, 503 while draining,
        closing, or while a health check is not ok (:meth:`add_health_check`).

        Returns:
            The bound (host, port).

        Raises:
            BindError: the address could not be bound (names the address and OS error).
            NetworkStateError: the network is closing or closed.
        """
        self._require(NetworkState.IDLE, NetworkState.RUNNING, action="listen")
        listener = await self._transport.listen(host, port, self._plumbing, ssl=ssl)
        self._listeners.append(listener)
        machine: tuple[str, ...] = ()
        if host in ("", "0.0.0.0", "::"):  # (a DNS lookup: off the loop)
            machine = await asyncio.get_running_loop().run_in_executor(None, _machine_names)
        self._admission.hosts.listening(listener.address[0], ssl is not None, machine)
        if self._state is NetworkState.IDLE:
            self._started = time.monotonic()
        self._set_state(NetworkState.RUNNING)
        scheme = "wss" if ssl is not None else "ws"
        logger.info("Listening on %s://%s:%d/", scheme, *listener.address)
        if self._admission.authenticator is None:
            if self.settings.allow_anonymous:
                logger.warning(
                    "Anonymous access is on: any client that reaches %s:%d may connect",
                    *listener.address,
                )
            elif not is_loopback(listener.address[0]):
                logger.info(
                    "Protected mode: no authenticator, so only loopback clients are admitted "
                    "(configure one, or allow_anonymous=True)"
                )
        return listener.address

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound addresses of every listener."""
        return [listener.address for listener in self._listeners]

    async def connect(
        self,
        url: str,
        *,
        encoding: Literal["msgpack", "json"] = "msgpack",
        headers: Mapping[str, str] | None = None,
        ssl: _ssl.SSLContext | None = None,
    ) -> ConnectionId:
        """Connect to a server and wait for its welcome.

        The welcome's message table is compared with this network's: every type that one
        side lacks or that has another schema hash is logged and emitted as an ``Error``
        event carrying a :class:`SchemaMismatch` naming the type.

        Args:
            url: ``ws://host:port/`` (or ``wss://`` with TLS).
            encoding: The wire encoding to ask for.
            headers: More handshake headers (``Authorization: Bearer ...``).
            ssl: The TLS context for ``wss://`` (default: the system's trust store).

        Returns:
            The id of the new connection.

        Raises:
            ConnectFailed: unreachable, refused, or no welcome within ``connect_timeout``.
                Cancelling is safe.
        """
        self._require(NetworkState.IDLE, NetworkState.RUNNING, action="connect")
        conn, welcome = await dial(
            self._transport,
            self.settings,
            url,
            encoding,
            lambda link: self._open(link, outgoing=True),
            headers=headers,
            ssl=ssl,
            linked=lambda: self._set_state(NetworkState.RUNNING),
        )
        version = self._conn(conn.id).codec.version
        if welcome.version != version:
            logger.warning(
                "server says protocol version %d on a version %d subprotocol",
                welcome.version,
                version,
            )
        for mismatch in welcome_mismatches(self._types.hashes(), welcome):
            logger.warning("Schema mismatch on connection %s: %r", conn.id, str(mismatch))
            self._emit_error(conn.id, mismatch)
        self._post_event(Connected(conn.id))
        await asyncio.sleep(0)  # the dispatcher runs first: Connected is out when we return
        return conn.id

    # ------------------------------------------------------------------ ListenerHooks

    async def _page(self, request: HttpRequest) -> HttpResponse:
        """A plain HTTP request (a transport hook): refused unless its ``Host`` names this
        server (where names are checked), else its route's answer."""
        refusal = self._admission.check_host(request)
        return refusal if refusal is not None else await self._routes.page(request)

    async def _admit(self, request: HttpRequest, pending: int) -> HttpResponse | None:
        """Whether to accept one more handshake (a transport hook; see ``_admission``)."""
        return await self._admission.admit(request, pending)

    async def identify(self, request: HttpRequest) -> Identity | HttpResponse:
        """Who sent ``request``, by the same rules as a handshake: the authenticator's
        identity, or in protected mode :data:`~pl3xus_rx.ANONYMOUS` for a loopback client
        (or anyone with ``allow_anonymous``); else the refusal to answer with (401, 403).
        HTTP routes that must be protected (DevTools, metrics) call it."""
        return await self._admission.identify(request)

    def _opened(self, link: Link) -> Connection:
        """A client completed its handshake (a transport hook)."""
        conn = self._open(link, outgoing=False)
        request = link.request
        conn.identity = request.state.get("identity", ANONYMOUS) if request else ANONYMOUS
        extra = self._welcome_extra(conn.id) if self._welcome_extra is not None else {}
        extra.update(self._credentials.welcome(conn))
        welcome = welcome_frame(conn.id, self._types, extra or None, conn.codec.version)
        conn.enqueue(conn.codec.encode(welcome))
        self._credentials.opened(conn)
        logger.debug("Client %s connected from %s", conn.id, link.remote)
        self._post_event(Connected(conn.id))
        if self._closing_all is not None:  # (admitted just before the others were closed)
            conn.close_soon(*self._closing_all)
        return conn

    def _open(self, link: Link, *, outgoing: bool) -> Connection:
        cid = ConnectionId(self._next_id)
        self._next_id += 1
        conn = Connection(
            self._plumbing, cid, link, codec_for_subprotocol(link.subprotocol), outgoing
        )
        self._connections[cid] = conn
        self._count("accepted")
        return conn

    # ------------------------------------------------------------------ sending

    def _encode_message(self, message: BaseModel) -> _Encoded:
        entry = self._types.find_model(type(message))
        if entry is None:
            self._types.by_model(type(message))  # raises NotRegistered with the fix
        assert entry is not None
        return _Encoded(message_frame(entry.name, to_wire(message)))

    def _conn(self, cid: ConnectionId) -> Connection:
        conn = self._connections.get(cid)
        if conn is None:
            raise ConnectionNotFound(f"no live connection with id {cid}")
        return conn

    def send(self, connection: ConnectionId, message: BaseModel) -> bool:
        """Enqueue ``message`` for one connection; never awaits.

        Returns:
            True if it was written or queued; False if the channel was full (and the policy
            dropped it or closed the connection) or the connection is closing.

        Raises:
            ConnectionNotFound: no live connection has that id.
            NotRegistered: the message's type was never registered.
        """
        conn = self._conn(connection)
        encoded = self._encode_message(message)
        return conn.enqueue(encoded.for_codec(conn.codec))

    def broadcast(self, message: BaseModel) -> int:
        """Enqueue ``message`` for every connection, encoding it once per encoding in use.

        Returns:
            How many connections took it.
        """
        return self.broadcast_except(None, message)

    def broadcast_except(self, excluded: ConnectionId | None, message: BaseModel) -> int:
        """Like :meth:`broadcast`, skipping the connection ``excluded``."""
        encoded = self._encode_message(message)
        sent = 0
        for cid, conn in list(self._connections.items()):
            if cid != excluded and conn.enqueue(encoded.for_codec(conn.codec)):
                sent += 1
        return sent

    def send_frame(self, connection: ConnectionId, frame: list[Any]) -> bool:
        """Enqueue a raw protocol frame for one connection (for layers built on Network)."""
        conn = self._conn(connection)
        return conn.enqueue(conn.codec.encode(frame))

    def send_raw(self, connection: ConnectionId, data: WireData) -> bool:
        """Enqueue an already-encoded frame (bytes, or a tuple of bytes chunks, for msgpack
        connections; str for JSON).

        Raises:
            ConnectionNotFound: no live connection has that id.
        """
        return self._conn(connection).enqueue(data)

    def sender(self) -> Callable[[int, WireData], bool | None]:
        """:meth:`send_raw` as a plain function for hot loops: it returns ``None`` for a
        connection that is not live, and never raises."""
        connections = self._connections

        def send(connection: int, data: WireData) -> bool | None:
            conn = connections.get(connection)  # type: ignore[call-overload]
            return None if conn is None else conn.enqueue(data)

        return send

    def is_binary(self, connection: ConnectionId) -> bool:
        """Whether the connection speaks msgpack (else JSON)."""
        return self._conn(connection).codec.binary

    def _send_error(self, conn: Connection, body: dict[str, Any]) -> None:
        """Tell a peer that something it sent was rejected."""
        conn.enqueue(conn.codec.encode(error_frame(body)))

    # ------------------------------------------------------------------ events

    def _post_event(self, event: NetworkEvent) -> None:
        self._dispatcher.post(self._events.on_next, event)

    def _emit_error(self, connection: ConnectionId | None, error: Exception) -> None:
        """Emit an ``Error`` event (for layers built on Network)."""
        self._post_event(Error(connection, error))

    def _count(self, counter: str, n: int = 1) -> None:
        """Add to a :class:`NetworkStatistics` counter."""
        self._counters[counter] += n

    def _closed(self, conn: Connection, code: int | None, reason: str) -> None:
        """A connection ended (called once by the connection)."""
        self._connections.pop(conn.id, None)
        self._credentials.closed(conn)
        if not self._connections and self._none_left is not None:
            self._none_left.set()
        self._counters["frames_received"] += conn.frames_received
        self._counters["frames_sent"] += conn.frames_sent
        self._counters["bytes_received"] += conn.bytes_received
        self._counters["bytes_sent"] += conn.bytes_sent
        if conn.welcome is not None and not conn.welcome.done():
            conn.welcome.set_exception(
                ConnectFailed(f"the server closed the connection before its welcome: {reason}")
            )
            conn.welcome.exception()  # retrieved here; connect() re-raises it
            return
        text = f"{code} {reason}".strip() if code is not None else reason
        logger.debug("Connection %s closed: %s", conn.id, text or "no reason")
        self._post_event(Disconnected(conn.id, text, code))

    # ------------------------------------------------------------------ tasks

    def spawn(self, coro: Coroutine[Any, Any, _T], name: str) -> asyncio.Task[_T]:
        """Run ``coro`` as a task whose failure is always retrieved and logged."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("task %s failed", task.get_name(), exc_info=task.exception())

    # ------------------------------------------------------------------ connections

    def number_connections_from(self, first: int) -> None:
        """Give the next connections the ids ``first``, ``first + 1``, ... (a gateway
        numbers its clients in a range of its own, unique across the cluster).

        Raises:
            ValueError: ``first`` is below 1 or beyond 2**53 (ids must stay exact in JSON).
        """
        if not 1 <= first < 2**53:
            raise ValueError(f"connection ids start at 1 and stay below 2**53, got {first}")
        self._next_id = first

    @property
    def connections(self) -> list[ConnectionId]:
        """The ids of the live connections."""
        return list(self._connections)

    def welcome_of(self, connection: ConnectionId) -> WelcomeFrame:
        """The server's welcome on a connection this network opened with ``connect()``.

        Raises:
            ConnectionNotFound: no live connection has that id.
            NetworkStateError: the connection was accepted, not opened by ``connect()``.
        """
        welcome: WelcomeFrame | None = self._conn(connection).peer_welcome
        if welcome is None:
            raise NetworkStateError(f"connection {connection} was accepted: it has no welcome")
        return welcome

    def request_of(self, connection: ConnectionId) -> HttpRequest | None:
        """The handshake request a client opened ``connection`` with (path, query, headers,
        remote address, subprotocol); ``None`` for a connection this end opened.

        Raises:
            ConnectionNotFound: no live connection has that id.
        """
        return self._conn(connection).link.request

    def has_connection(self, connection: ConnectionId) -> bool:
        """Whether ``connection`` is live."""
        return connection in self._connections

    def disconnect_identity(self, identity: Identity | str, reason: str) -> int:
        """Close every connection of ``identity`` (or of the identity of that name) with
        close code 4003 (``CloseCode.DISCONNECTED``) and ``reason``, dropping what their
        channels hold; returns how many. For a revoked user, say: its credential is refused
        at the next handshake only if the authenticator knows."""
        name = identity if isinstance(identity, str) else identity.name
        return self._credentials.disconnect(list(self._connections.values()), name, reason)

    async def disconnect(
        self, connection: ConnectionId, *, code: int = 1000, reason: str = "disconnected"
    ) -> None:
        """Close one connection after its channel drains (up to ``close_timeout``).

        Returns when the closing handshake is done. Cancelling is safe.

        Raises:
            ConnectionNotFound: no live connection has that id.
        """
        conn = self._conn(connection)
        await conn.close(code, reason, drain_timeout=self.settings.close_timeout)

    def statistics(self) -> NetworkStatistics:
        """A snapshot of the counters."""
        counters = dict(self._counters)
        for conn in self._connections.values():
            counters["frames_received"] += conn.frames_received
            counters["frames_sent"] += conn.frames_sent
            counters["bytes_received"] += conn.bytes_received
            counters["bytes_sent"] += conn.bytes_sent
        kinds = {kind_name(k): n for k, n in self._intake.kinds.items()}
        return NetworkStatistics(
            connections=len(self._connections), received_kinds=kinds, **counters
        )

    def queue_depths(self) -> list[int]:
        """Frames waiting in each live connection's outbound channel."""
        return [len(conn.queue) for conn in self._connections.values()]

    def abort(self, connection: ConnectionId, reason: str) -> None:
        """Drop ``connection`` at once, without a closing handshake (its peer is taken as
        gone: a dead link would never answer one); ``Disconnected`` follows (1006).

        Raises:
            ConnectionNotFound: no live connection has that id.
        """
        conn = self._conn(connection)
        logger.info("Aborting connection %s: %s", connection, reason)
        conn.closing = True
        conn.link.abort()

    def protocol_version(self, connection: ConnectionId) -> int:
        """The protocol version ``connection`` speaks (1 or 2, from its subprotocol; 1 for
        an unknown connection)."""
        conn = self._connections.get(connection)
        return conn.codec.version if conn is not None else 1

    def connection_statistics(self, connection: ConnectionId) -> ConnectionStatistics:
        """A snapshot of one connection's counters.

        Raises:
            ConnectionNotFound: no live connection has that id.
        """
        return self._conn(connection).statistics()

    # ------------------------------------------------------------------ shutdown

    async def close_connections(self, code: int, reason: str) -> None:
        """Close every live connection with ``code`` and ``reason``: each channel gets up to
        ``shutdown_timeout`` seconds to drain first; returns once their closes are reported
        (``Disconnected`` events; at most ``close_timeout`` more). The listeners go on (a
        server that drains refuses new handshakes meanwhile: :meth:`start_draining`); a
        connection that completes its handshake while this runs is closed the same way.
        Cancelling is safe."""
        self._closing_all = (code, reason)
        try:
            await self._close_all(code, reason)
        finally:
            self._closing_all = None

    async def _close_all(self, code: int, reason: str) -> None:
        conns = list(self._connections.values())
        if not conns:
            return
        await asyncio.wait(
            [asyncio.ensure_future(c.drained()) for c in conns],
            timeout=self.settings.shutdown_timeout,
        )
        await asyncio.gather(
            *(c.close(code, reason, drain_timeout=0) for c in conns),
            return_exceptions=True,
        )
        # Let the readers report their closes before we say we are done.
        if self._connections:
            self._none_left = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._none_left.wait(), self.settings.close_timeout)

    async def close(self) -> None:
        """Shut down gracefully.

        New handshakes are refused (503) and ``/healthz`` answers 503; each connection's
        channel gets up to ``shutdown_timeout`` seconds to drain; then every connection is
        closed with 1001 and the listeners stop. Calling it again waits for the first call.
        """
        if self._state is NetworkState.CLOSED:
            return
        if self._state is NetworkState.CLOSING:
            assert self._closed_event is not None
            await self._closed_event.wait()
            return
        self._closed_event = asyncio.Event()
        self._set_state(NetworkState.CLOSING)
        conns = list(self._connections.values())
        reason = "server shutting down" if self._listeners else "client shutting down"
        logger.info("Shutting down: closing %d connection(s)", len(conns))
        try:
            await self._close_all(1001, reason)
            for listener in self._listeners:
                await listener.close()
            self._listeners.clear()
            tasks = [t for t in self._tasks if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=1.0)
        finally:
            self._set_state(NetworkState.CLOSED)
            self._closed_event.set()

    async def __aenter__(self) -> Network:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
