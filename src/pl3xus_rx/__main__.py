"""The ``pl3xus-rx`` command (also ``python -m pl3xus_rx``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .exceptions import BindError, Pl3xusError

if TYPE_CHECKING:
    from .scaleout import NatsOptions
    from .security import Authenticator

logger = logging.getLogger(__name__)

MAX_GATEWAY_ID = 2**20
"""The highest ``--gateway-id`` (``scaleout._wire.MAX_GATEWAY``, not imported: this module
loads without nats-py)."""

STATUS_TIMEOUT = 3.0
"""Seconds ``pl3xus-rx cluster`` waits for the authority's answer by default."""


def _version() -> str:
    try:
        return metadata.version("pl3xus-rx")
    except metadata.PackageNotFoundError:  # (run from a source tree, not installed)
        return "unknown"


def _count(text: str) -> int:
    """An argument that must be a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _port(text: str) -> int:
    value = _count(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _positive(text: str) -> float:
    """An argument that must be a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


def _seconds(text: str) -> float:
    """An argument that must be a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be 0 seconds or more, got {text}")
    return value


def _gateway_id(text: str) -> int:
    value = _count(text)
    if not 1 <= value <= MAX_GATEWAY_ID:
        raise argparse.ArgumentTypeError(f"a gateway id is 1 to {MAX_GATEWAY_ID}, got {value}")
    return value


def _cluster_name(text: str) -> str:
    """A cluster name: one word of a NATS subject (no dots, wildcards or spaces)."""
    if not text or any(c in ".*>" or c.isspace() for c in text):
        raise argparse.ArgumentTypeError(
            "a cluster name must be one word of a NATS subject (no '.', '*', '>' or spaces), "
            f"got {text!r}"
        )
    return text


def _inbox_prefix(text: str) -> str:
    """``--nats-inbox-prefix``: subject tokens separated by dots, no wildcards."""
    words = text.split(".")
    if any(not w or any(c in "*>" or c.isspace() for c in w) for w in words):
        raise argparse.ArgumentTypeError(
            "an inbox prefix is words separated by dots, without wildcards or spaces (e.g. "
            f"_INBOX.gateway1), got {text!r}"
        )
    return text


def _name_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument(
        "--name",
        default="demo",
        type=_cluster_name,
        metavar="NAME",
        help=f"{help}: its NATS subjects are pl3xus.NAME.* (default demo)",
    )


def _security_options(parser: argparse.ArgumentParser) -> None:
    """Who may connect: the same options for ``demo`` and ``gateway``."""
    group = parser.add_argument_group(
        "client authentication",
        "Secrets are best read from files: a command line is visible to every user of the "
        "machine (ps). A gateway needs the same options as its authority.",
    )
    token = group.add_mutually_exclusive_group()
    token.add_argument(
        "--token",
        default=None,
        help="require this bearer token; its holder is an operator (and admin: DevTools)",
    )
    token.add_argument("--token-file", default=None, metavar="FILE", help="--token, read from FILE")
    viewer = group.add_mutually_exclusive_group()
    viewer.add_argument(
        "--viewer-token", default=None, help="a second token whose holder may only watch"
    )
    viewer.add_argument(
        "--viewer-token-file", default=None, metavar="FILE", help="--viewer-token, from FILE"
    )
    group.add_argument(
        "--jwt-key-file",
        default=None,
        metavar="FILE",
        help="accept JSON Web Tokens verified with the key in FILE (an HMAC secret, or a "
        "PEM public key); their roles claim counts: operator may act, admin opens "
        "DevTools, anything else may only watch",
    )
    group.add_argument(
        "--jwt-algorithm",
        default="HS256",
        help="the JWTs' signing algorithm (default HS256; RS256, ES256... with a public key)",
    )
    group.add_argument("--jwt-audience", default=None, help="JWTs must name this audience")
    group.add_argument("--jwt-issuer", default=None, help="JWTs must come from this issuer")
    group.add_argument(
        "--allowed-host",
        action="append",
        default=None,
        dest="allowed_hosts",
        metavar="NAME",
        help="also answer to this Host name (NetworkSettings.allowed_hosts; repeatable)",
    )


def _nats_options(parser: argparse.ArgumentParser) -> None:
    """NATS credentials and TLS: the same options for ``demo`` and ``gateway``."""
    group = parser.add_argument_group(
        "NATS credentials and TLS",
        "Credentials may also be put in the --nats URL (nats://user:password@host:4222): "
        "they are never printed or logged, but the URL is in the process list.",
    )
    group.add_argument("--nats-user", default=None, metavar="USER", help="NATS user name")
    group.add_argument(
        "--nats-password-file", default=None, metavar="FILE", help="its password, from FILE"
    )
    group.add_argument(
        "--nats-token-file", default=None, metavar="FILE", help="a NATS token, from FILE"
    )
    group.add_argument(
        "--nats-creds", default=None, metavar="FILE", help="a NATS .creds file (needs nkeys)"
    )
    group.add_argument(
        "--nats-nkey-seed", default=None, metavar="FILE", help="an nkey seed file (needs nkeys)"
    )
    group.add_argument(
        "--nats-ca", default=None, metavar="FILE", help="TLS: trust this CA (PEM) for NATS"
    )
    group.add_argument(
        "--nats-cert", default=None, metavar="FILE", help="TLS: client certificate (PEM)"
    )
    group.add_argument("--nats-key", default=None, metavar="FILE", help="TLS: its private key")
    group.add_argument(
        "--nats-tls",
        action="store_true",
        help="use TLS with the system's CAs (implied by --nats-ca/--nats-cert or tls://)",
    )
    group.add_argument(
        "--nats-inbox-prefix",
        default=None,
        type=_inbox_prefix,
        metavar="PREFIX",
        help="receive request replies on PREFIX.* instead of _INBOX.* (e.g. _INBOX.gateway1, "
        "for a NATS user that may subscribe to its own inbox only; docs/scaling.md)",
    )


def _secret(path: str, what: str) -> str:
    """A secret read from a file: its text without the trailing newline.

    Raises:
        OSError: the file cannot be read (the message names the file, never its content).
        ValueError: the file is empty.
    """
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise OSError(f"cannot read {what} from {path!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{what} file {path!r} is not UTF-8 text") from None
    if not text:
        raise ValueError(f"{what} file {path!r} is empty")
    return text


@dataclass(frozen=True)
class _Security:
    """What the security options of ``demo`` and ``gateway`` asked for, secrets read."""

    token: str | None
    viewer_token: str | None
    jwt: Authenticator | None
    allowed_hosts: tuple[str, ...] | None
    nats: NatsOptions | None

    def __repr__(self) -> str:  # (never shows a secret)
        return f"_Security(token={self.token is not None}, jwt={self.jwt is not None})"

    @classmethod
    def of(cls, args: argparse.Namespace) -> _Security:
        """Read the files the options name and build the authenticators and NATS options.

        Raises:
            OSError: a file cannot be read.
            ValueError: the options do not fit together.
        """
        token = args.token
        if args.token_file is not None:
            token = _secret(args.token_file, "--token-file")
        viewer = args.viewer_token
        if args.viewer_token_file is not None:
            viewer = _secret(args.viewer_token_file, "--viewer-token-file")
        jwt: Authenticator | None = None
        if args.jwt_key_file is not None:
            from .security import jwt_verifier

            try:
                jwt = jwt_verifier(
                    _secret(args.jwt_key_file, "--jwt-key-file"),
                    algorithms=(args.jwt_algorithm,),
                    audience=args.jwt_audience,
                    issuer=args.jwt_issuer,
                )
            except ImportError as exc:
                raise ValueError(str(exc)) from None
        elif args.jwt_audience is not None or args.jwt_issuer is not None:
            raise ValueError("--jwt-audience and --jwt-issuer need --jwt-key-file")
        hosts = tuple(args.allowed_hosts) if args.allowed_hosts else None
        return cls(token, viewer, jwt, hosts, _nats_of(args))


def _nats_of(args: argparse.Namespace) -> NatsOptions | None:
    """The NATS options the command line asked for (``None``: none)."""
    names = (
        "nats_user",
        "nats_password_file",
        "nats_token_file",
        "nats_creds",
        "nats_nkey_seed",
        "nats_ca",
        "nats_cert",
        "nats_key",
        "nats_inbox_prefix",
    )
    if not args.nats_tls and all(getattr(args, name) is None for name in names):
        return None
    if args.nats is None:
        raise ValueError("the --nats-... options need --nats")
    if args.nats_password_file is not None and args.nats_user is None:
        raise ValueError("--nats-password-file needs --nats-user")
    try:
        from .scaleout import NatsOptions
    except ImportError as exc:
        raise ValueError(f"{exc}; pip install nats-py") from None
    tls = None
    if args.nats_tls or args.nats_ca or args.nats_cert or args.nats_key:
        try:
            tls = NatsOptions.tls_context(args.nats_ca, args.nats_cert, args.nats_key)
        except OSError as exc:
            raise OSError(f"cannot load the NATS TLS files: {exc.strerror or exc}") from None
    return NatsOptions(
        user=args.nats_user,
        password=(
            _secret(args.nats_password_file, "--nats-password-file")
            if args.nats_password_file is not None
            else None
        ),
        token=(
            _secret(args.nats_token_file, "--nats-token-file")
            if args.nats_token_file is not None
            else None
        ),
        creds_file=args.nats_creds,
        nkey_seed_file=args.nats_nkey_seed,
        tls=tls,
        extra=(
            {"inbox_prefix": args.nats_inbox_prefix} if args.nats_inbox_prefix is not None else {}
        ),
    )


def _fatal_types() -> tuple[type[BaseException], ...]:
    """The errors with which a command stops with one line: NATS unreachable or refusing,
    the fencing lease held by another authority or unreachable, any other error of ours."""
    types: list[type[BaseException]] = [ConnectionError, Pl3xusError]
    try:
        lease = importlib.import_module("pl3xus_rx.scaleout._lease")
    except ImportError:  # (no nats-py, or a version without fencing)
        return tuple(types)
    for name in ("LeaseHeld", "LeaseUnavailable"):
        error = getattr(lease, name, None)
        if isinstance(error, type) and issubclass(error, BaseException):
            types.append(error)
    return tuple(types)


def _fatal(exc: BaseException) -> BaseException | None:
    """``exc``, or the first such error in an exception group, if it is one of
    :func:`_fatal_types`; else ``None`` (a bug: let its traceback show)."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _fatal(inner)
            if found is not None:
                return found
        return None
    return exc if isinstance(exc, _fatal_types()) else None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _run(command: str, main: Callable[[], Coroutine[Any, Any, None]], port_hint: str) -> int:
    """Run a serving command until it stops: 0, or 1 with one line on stderr when it cannot
    start or keep going (the port is taken, NATS is unreachable, the lease is held...)."""
    try:
        asyncio.run(main())
    except BindError as exc:
        print(f"pl3xus-rx {command}: {exc.strerror}; {port_hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    except (Exception, BaseExceptionGroup) as exc:
        fatal = _fatal(exc)
        if fatal is None:
            raise
        print(f"pl3xus-rx {command}: {_one_line(fatal)}", file=sys.stderr)
        return 1
    return 0


def _app_setup(spec: str) -> Callable[[Any], Any]:
    """The ``--app MODULE:FUNCTION`` function (``setup`` when no function is named): it
    registers an application's types on the ``SyncServer`` it is given.

    Raises:
        ImportError: the module cannot be imported.
        AttributeError: it has no such function.
    """
    module, _, name = spec.partition(":")
    setup: Callable[[Any], Any] = getattr(importlib.import_module(module), name or "setup")
    return setup


def _replay(args: argparse.Namespace) -> int:
    from .demo import DEMO_APP
    from .exceptions import RecordingError
    from .recording import ReplayServer, open_recording

    try:
        recording = open_recording(args.file)
    except RecordingError as exc:
        print(f"pl3xus-rx replay: {exc}", file=sys.stderr)
        return 2
    # A recording is data: the app it names is a suggestion, never imported on its word
    # (a crafted file would choose what code runs), except the demo's own.
    named = recording.header.app
    spec = args.app or (named if named == DEMO_APP else None)
    if spec is None:
        suggestion = f" (it names {named!r}: pass --app {named} if you trust it)" if named else ""
        print(
            f"pl3xus-rx replay: give --app MODULE:FUNCTION, what registers {args.file}'s "
            f"types on a server{suggestion}",
            file=sys.stderr,
        )
        return 2
    try:
        setup = _app_setup(str(spec))
    except (ImportError, AttributeError) as exc:
        print(f"pl3xus-rx replay: cannot load --app {spec!r}: {exc}", file=sys.stderr)
        return 2
    header = recording.header
    if recording.damaged is not None:
        print(
            f"pl3xus-rx replay: {args.file}: {recording.damaged}; replaying what comes "
            f"before it ({recording.torn} bytes left out)",
            file=sys.stderr,
        )
    elif recording.torn:
        print(
            f"pl3xus-rx replay: {args.file}: its last {recording.torn} bytes are a record cut "
            "short (the recorder stopped mid-write); replaying what is whole",
            file=sys.stderr,
        )

    async def run() -> None:
        import signal

        from .net import NetworkSettings
        from .server import SyncServer
        from .sync import SyncSettings

        server = SyncServer(NetworkSettings(), SyncSettings(max_update_rate_hz=args.rate))
        setup(server)
        replay = ReplayServer(
            server,
            recording,
            speed=args.speed,
            start=recording.start + args.start,
            playing=not args.paused,
            loop=args.loop,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with server.serve(args.host, args.port) as address:
            span = recording.end - recording.start
            print(
                f"replaying {args.file} ({header.source} recording, {span:.1f} s, "
                f"{len(recording)} records) on ws://{address[0]}:{address[1]}/\n"
                f"DevTools: http://{address[0]}:{address[1]}/devtools\n"
                f"control: pl3xus-rx replay-control ws://{address[0]}:{address[1]}/ "
                "play | pause | seek SECONDS | speed X | status",
                flush=True,
            )
            missing = replay.replayer.missing
            if missing:
                more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
                print(
                    f"pl3xus-rx replay: {', '.join(missing[:10])}{more} not registered by "
                    f"{spec}: left out"
                )
            replay.start()
            try:
                await stop.wait()
            finally:
                await replay.stop()

    return _run("replay", run, "pick another port with --port (0 picks a free one).")


def _replay_control(args: argparse.Namespace) -> int:
    from client_sync import ClientTypeRegistry, SyncProvider

    from .exceptions import Pl3xusError
    from .protocol import REPLAY_REQUEST, ReplayControl, ReplayState

    registry = (
        ClientTypeRegistry.builder()
        .register_request(ReplayControl, ReplayState, name=REPLAY_REQUEST)
        .build()
    )

    async def run() -> ReplayState:
        async with SyncProvider(args.url, registry, token=args.token) as sync:
            state: ReplayState = await sync.request(
                ReplayControl(action="status"), timeout=args.timeout
            )
            if args.action != "status":
                value = args.value
                command = ReplayControl(action=args.action)
                if args.action == "seek":
                    if value is None:
                        raise ValueError("seek needs SECONDS (from the recording's start)")
                    command = ReplayControl(action="seek", at=state.start + value)
                elif args.action == "speed":
                    if value is None:
                        raise ValueError("speed needs X (recording seconds per second)")
                    command = ReplayControl(action="speed", speed=value)
                state = await sync.request(command, timeout=args.timeout)
            return state

    try:
        state = asyncio.run(run())
    except (Pl3xusError, ValueError, OSError, TimeoutError) as exc:
        print(f"pl3xus-rx replay-control: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{'playing' if state.playing else 'paused'} at {state.position - state.start:.2f} s "
        f"of {state.end - state.start:.2f} s, speed {state.speed:g}"
    )
    return 0


def _record(args: argparse.Namespace) -> int:
    import signal

    from client_sync.recorder import ClientRecorder

    from .exceptions import ConnectFailed, RecordingError

    try:
        recorder = ClientRecorder(
            args.url,
            args.output,
            token=args.token,
            types=args.types,
            keyframe_seconds=args.keyframe_seconds,
            rotate_bytes=args.rotate_bytes,
            rotate_seconds=args.rotate_seconds,
        )
    except (ValueError, RecordingError) as exc:
        print(f"pl3xus-rx record: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with recorder:
            print(f"recording {args.url} into {args.output} (Ctrl-C stops)", flush=True)
            await recorder.wait(seconds=args.seconds, stop=stop)

    try:
        asyncio.run(run())
    except (ConnectFailed, ValueError, RecordingError, OSError) as exc:
        print(f"pl3xus-rx record: {exc}", file=sys.stderr)
        return 1
    stats = recorder.statistics()
    files = ", ".join(str(p) for p in stats.paths) or "nothing (no complete snapshot)"
    print(
        f"recorded {stats.items} values in {stats.batches} batches and {stats.keyframes} "
        f"keyframes, {stats.bytes} bytes: {files}",
        flush=True,
    )
    if recorder.failed is not None:
        print(f"pl3xus-rx record: {recorder.failed}", file=sys.stderr)
        return 1
    return 0


def _gateway(args: argparse.Namespace) -> int:
    try:
        setup = _app_setup(str(args.app))
    except (ImportError, AttributeError) as exc:
        print(f"pl3xus-rx gateway: cannot load --app {args.app!r}: {exc}", file=sys.stderr)
        return 2
    from .demo import demo_security

    try:
        from .scaleout import Gateway, redact_url
    except ImportError as exc:
        print(f"pl3xus-rx gateway: {exc}; pip install nats-py", file=sys.stderr)
        return 2
    try:
        security = _Security.of(args)
        authenticate, authorizer = demo_security(
            security.token, security.viewer_token, jwt=security.jwt
        )
    except (OSError, ValueError) as exc:
        print(f"pl3xus-rx gateway: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        import signal

        from .net import NetworkSettings
        from .server import SyncServer
        from .sync import SyncSettings

        server = SyncServer(
            NetworkSettings(
                allow_anonymous=args.allow_anonymous, allowed_hosts=security.allowed_hosts
            ),
            SyncSettings(max_update_rate_hz=args.rate),
        )
        setup(server)
        if authenticate is not None:  # (else the app's own, if its setup configured one)
            server.authenticate(authenticate)
            server.authorizer = authorizer
        if args.activity:
            from .instruments import ActivityLog

            server.instrument(ActivityLog(address_of=server.address_of))
        stop = asyncio.Event()
        draining: list[asyncio.Task[Any]] = []

        def stop_or_hurry() -> None:
            # the first signal stops (draining first); another one cuts the draining short
            if stop.is_set():
                for task in draining:
                    task.cancel()
            stop.set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_or_hurry)
        async with server.serve(args.host, args.port) as (host, port):
            gateway = Gateway(
                server, args.nats, args.name, gateway=args.gateway_id, nats_options=security.nats
            )
            # (without --gateway-id, Gateway.start warns that NATS cannot confine it)
            # (ConnectionError: NATS does not answer; a signal meanwhile stops at once)
            starting = asyncio.ensure_future(gateway.start())
            signalled = asyncio.ensure_future(stop.wait())
            await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
            signalled.cancel()
            if not starting.done():
                starting.cancel()
                await asyncio.wait({starting})
                await gateway.stop()
                return
            starting.result()
            print(
                f"pl3xus_rx gateway {gateway.gateway} of cluster {args.name!r} "
                f"({redact_url(args.nats)})\n"
                f"  WebSocket: ws://{host}:{port}/\n"
                f"  DevTools:  http://{host}:{port}/devtools\n"
                + (
                    "  Clients authenticate with Authorization: Bearer <token> (or ?token=).\n"
                    if authenticate is not None
                    else ""
                )
                + "Ctrl-C or SIGTERM to stop.",
                flush=True,
            )
            try:
                await stop.wait()
                drain = getattr(gateway, "drain", None)
                if drain is not None:
                    print(
                        f"draining (at most {args.drain_timeout:g} s; Ctrl-C again to stop now)",
                        flush=True,
                    )
                    draining.append(asyncio.ensure_future(drain(args.drain_timeout)))
                    # (asyncio.wait: a second signal cancels the draining, not this task)
                    await asyncio.wait(draining)
                    failed = None if draining[0].cancelled() else draining[0].exception()
                    if failed is not None:
                        logger.warning("draining failed: %s", _one_line(failed))
            finally:
                await gateway.stop()

    code = _run("gateway", run, "pick another --port")
    if not code:
        print("gateway stopped", flush=True)
    return code


class _NoAnswer(Exception):
    """``pl3xus-rx cluster`` got no status: the message says why, in one line."""


async def _ask_status(
    url: str, cluster: str, options: NatsOptions | None, timeout: float
) -> Mapping[str, Any]:
    """The authority's answer on ``pl3xus.CLUSTER.status``.

    Raises:
        _NoAnswer: NATS or the authority did not answer, or not with a status.
    """
    import msgpack
    import nats.errors
    from nats.aio.client import Client as NatsClient

    from .scaleout import redact_url

    shown = redact_url(url)
    problems: list[str] = []

    async def error(exc: Exception) -> None:  # (nats-py's default logs a traceback)
        problems.append(_one_line(exc))

    kwargs: dict[str, Any] = options.connect_kwargs() if options is not None else {}
    kwargs.update(
        name=f"pl3xus-rx-cluster-{cluster}",
        allow_reconnect=False,
        connect_timeout=timeout,
        error_cb=error,
    )
    nc = NatsClient()
    try:
        servers = [part.strip() for part in url.split(",") if part.strip()]
        await asyncio.wait_for(nc.connect(servers=servers, **kwargs), timeout + 1.0)
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        with contextlib.suppress(Exception):  # (else its socket may stay open)
            await nc.close()
        # (nats-py's text may quote the URL with its credentials: not printed)
        refused = any("authorization" in p.lower() for p in [*problems, str(exc)])
        raise _NoAnswer(
            f"NATS at {shown} refused the credentials"
            if refused
            else f"no NATS server answered at {shown}"
        ) from exc
    subject = f"pl3xus.{cluster}.status"
    try:
        reply = await nc.request(subject, b"", timeout=timeout)
    except (TimeoutError, nats.errors.Error) as exc:
        denied = [p for p in problems if "permissions violation" in p.lower()]
        why = f" (NATS: {denied[0].removeprefix('nats: ')})" if denied else ""
        raise _NoAnswer(f"no authority answered on cluster {cluster} at {shown}{why}") from exc
    finally:
        with contextlib.suppress(nats.errors.Error):  # (best effort: the answer is in)
            await nc.close()
    try:
        status = msgpack.unpackb(reply.data, raw=False)
    except Exception as exc:  # (msgpack raises several unrelated types)
        raise _NoAnswer(f"the answer on {subject} is not msgpack ({type(exc).__name__})") from exc
    if not isinstance(status, Mapping):
        raise _NoAnswer(f"the answer on {subject} is not a cluster status (a map)")
    return status


def _text(value: Any) -> str:
    """``value`` as printable text (what NATS brought is shown, not obeyed by the terminal)."""
    return "".join(c if c.isprintable() else "?" for c in str(value))


def _duration(seconds: float) -> str:
    """``seconds`` as 4.2s, 12m05s, 3h02m or 2d04h."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _show(record: Mapping[str, Any], key: str, form: Callable[[Any], str] = _text) -> str:
    """``record[key]`` shown with ``form``: ``?`` when it is missing or not of its kind."""
    if key not in record:
        return "?"
    value = record[key]
    try:
        return form(value)
    except (TypeError, ValueError, OverflowError):
        return _text(value) or "?"


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError
    return f"{value:,}"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"


def _ago(value: Any) -> str:
    return f"{_duration(float(value))} ago"


def _since(value: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(value)))


def _status_lines(status: Mapping[str, Any], url: str) -> list[str]:
    """The cluster status as ``pl3xus-rx cluster`` prints it."""
    from .scaleout import redact_url

    cluster = _text(status.get("cluster", "?"))
    version = status.get("version")
    lines = [f"cluster {cluster} at {redact_url(url)}"]
    if version != 2:
        lines[0] += f" (cluster wire version {_text(version)}; this pl3xus-rx speaks 2)"
    lease = _show(status, "lease", lambda v: "none" if v is None else _number(v))
    lines.append(
        f"authority  epoch {_show(status, 'epoch')}  lease {lease}  "
        f"up {_show(status, 'uptime', lambda v: _duration(float(v)))} "
        f"(since {_show(status, 'started', _since)})  "
        f"entities {_show(status, 'entities', _number)}  "
        f"clients {_show(status, 'clients', _number)}  seq {_show(status, 'seq', _number)}"
    )
    gateways = status.get("gateways")
    if not isinstance(gateways, list):
        lines.append("gateways   ?")
        return lines
    if not gateways:
        lines.append("gateways   none heard")
        return lines
    rows = [("gateway", "address", "clients", "lag seq", "lag ms", "heard", "state")]
    for gateway in sorted(
        (g if isinstance(g, Mapping) else {} for g in gateways),
        key=lambda g: (not isinstance(g.get("id"), int), g.get("id") or 0),
    ):
        rows.append(
            (
                _show(gateway, "id"),
                _show(gateway, "address", lambda v: "-" if v is None else _text(v)),
                _show(gateway, "clients", _number),
                _show(gateway, "lag_seq", _number),
                _show(gateway, "lag_ms", _ms),
                _show(gateway, "heard", _ago),
                _show(gateway, "state"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {0, 2, 3, 4}  # (numbers)
    for row in rows:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def _cluster(args: argparse.Namespace) -> int:
    try:
        import msgpack  # noqa: F401
        import nats  # noqa: F401
    except ImportError as exc:
        print(f"pl3xus-rx cluster: {exc}; pip install nats-py", file=sys.stderr)
        return 2
    try:
        options = _nats_of(args)
    except (OSError, ValueError) as exc:
        print(f"pl3xus-rx cluster: {exc}", file=sys.stderr)
        return 2
    try:
        status = asyncio.run(_ask_status(args.nats, args.name, options, args.timeout))
    except _NoAnswer as exc:
        print(f"pl3xus-rx cluster: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 1
    try:
        print("\n".join(_status_lines(status, args.nats)), flush=True)
    except BrokenPipeError:  # (| head: the reader has what it wanted)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _state_lines(path: str) -> list[str]:
    """What the state file at ``path`` holds, as ``pl3xus-rx state`` prints it.

    Raises:
        StateUnreadable: there is no file, or it cannot be read (named).
    """
    import datetime

    from .exceptions import StateUnreadable
    from .state._file import read_state
    from .state._format import decode_state

    data = read_state(path)
    if data is None:
        raise StateUnreadable(f"{path} does not exist", path=path)
    saved = decode_state(data, path)
    when = datetime.datetime.fromtimestamp(saved.written_at, datetime.UTC)
    anonymous = sum(1 for name in saved.owners.values() if name is None)
    lines = [
        f"{path}: state format {saved.format}, written {when:%Y-%m-%d %H:%M:%S} UTC by "
        f"{saved.writer or 'an unknown version'}, {saved.size:,} bytes",
        f"  {len(saved.entities):,} entities (next id {saved.next_id:,}), "
        f"{len(saved.parents):,} with a parent; {len(saved.owners):,} spawned by clients"
        + (f" ({anonymous:,} by anonymous ones)" if anonymous else ""),
    ]
    if saved.types:
        width = max(len("type"), *(len(t.name) for t in saved.types))
        lines.append(f"  {'type':<{width}}  {'values':>9}  {'shape':<16}  fields")
        for t in saved.types:
            lines.append(
                f"  {t.name:<{width}}  {len(t.ids):>9,}  {t.hash:<16}  {', '.join(t.fields)}"
            )
    return lines


def _state(args: argparse.Namespace) -> int:
    try:
        lines = _state_lines(args.path)
    except Pl3xusError as exc:
        print(f"pl3xus-rx state: {_one_line(exc)}", file=sys.stderr)
        return 1
    try:
        print("\n".join(lines), flush=True)
    except BrokenPipeError:  # (| head: the reader has what it wanted)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _typescript(args: argparse.Namespace) -> int:
    """``pl3xus-rx typescript``: write an app's types, or the wire vocabulary, as TypeScript."""
    from .typescript import COMMAND, javascript_for, protocol_typescript, typescript_for

    if args.protocol == (args.app is not None):
        print(
            "pl3xus-rx typescript: give either MODULE:FUNCTION (an app's types) or --protocol "
            "(the wire vocabulary)",
            file=sys.stderr,
        )
        return 2
    # types.js: plain JavaScript, its types in types.d.ts beside it
    javascript = args.output is not None and args.output.endswith(".js") and not args.protocol
    declarations_path = Path(args.output[: -len(".js")] + ".d.ts") if javascript else Path()
    declarations = ""
    if args.protocol:
        text = protocol_typescript()
    else:
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # (as python -m does: the app may be right here)
        try:
            setup = _app_setup(args.app)
        except (ImportError, AttributeError) as exc:
            print(f"pl3xus-rx typescript: cannot load {args.app!r}: {exc}", file=sys.stderr)
            return 2
        if not callable(setup):
            print(f"pl3xus-rx typescript: {args.app!r} is not a function", file=sys.stderr)
            return 2
        from .server import SyncServer

        server = SyncServer()
        try:
            setup(server)
            command = f"{COMMAND} {args.app}"
            if javascript:
                text, declarations = javascript_for(
                    server, command=command, declarations=declarations_path.name
                )
            else:
                text = typescript_for(server, command=command)
        except Exception as exc:  # one clear line for a command-line user
            print(
                f"pl3xus-rx typescript: {args.app}: {type(exc).__name__}: {_one_line(exc)}",
                file=sys.stderr,
            )
            return 1
    if args.output is None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:  # (| head: the reader has what it wanted)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
        if javascript:
            declarations_path.write_text(declarations, encoding="utf-8")
    except OSError as exc:
        print(
            f"pl3xus-rx typescript: cannot write {args.output}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    return 0


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def _log_options(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--log-level",
        choices=list(_LEVELS),
        default=default,
        help=f"info: who connects, what each client does, who leaves (default {default}); "
        "warning: problems only; debug: everything pl3xus_rx logs",
    )
    parser.add_argument("--debug", action="store_true", help="the same as --log-level debug")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = argparse.ArgumentParser(prog="pl3xus-rx", description="pl3xus_rx tools")
    parser.add_argument("--version", action="version", version=f"pl3xus-rx {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="serve a simulated robot cell")
    demo.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every "
        "interface, with --token or --allow-anonymous)",
    )
    demo.add_argument("--port", type=_port, default=8080, help="0 picks a free port")
    demo.add_argument("--robots", type=_count, default=3, help="robots in the cell (default 3)")
    demo.add_argument(
        "--sensors",
        type=_count,
        default=50,
        help="simulated sensors, each with a live reading (default 50)",
    )
    demo.add_argument("--rate", type=_positive, default=30.0, help="max flushes per second")
    demo.add_argument(
        "--sensor-updates",
        type=_positive,
        default=20_000.0,
        help="sensor readings per second in all, at most (more sensors: each one slower)",
    )
    _log_options(demo, "info")
    _security_options(demo)
    demo.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="without --token, admit clients from other machines too (else loopback only)",
    )
    demo.add_argument(
        "--nats",
        default=None,
        metavar="URL",
        help="also be the authority of cluster --name on this NATS server, for gateways to "
        "serve clients from (docs/scaling.md)",
    )
    demo.add_argument(
        "--state",
        default=None,
        metavar="PATH",
        help="keep the cell in this file across restarts: robot states and speeds, poses, "
        "the conveyor and the programs come back; sensor readings start afresh "
        "(docs/persistence.md)",
    )
    demo.add_argument(
        "--serve",
        default=None,
        metavar="DIR",
        help="also serve the page files directly inside DIR (.html .js .css .d.ts .json .svg "
        ".png, read at startup) at /app/<name>, index.html at /app/: e.g. examples/web_hmi "
        "(docs/web.md)",
    )
    demo.add_argument(
        "--record",
        default=None,
        metavar="FILE",
        help="record the session into FILE (a new numbered name if FILE exists); "
        "pl3xus-rx replay FILE serves it again (docs/recording.md)",
    )
    _name_option(demo, "with --nats, the cluster's name")
    _nats_options(demo)
    gw = sub.add_parser("gateway", help="serve clients from an authority's replica over NATS")
    gw.add_argument(
        "--nats", required=True, metavar="URL", help="the NATS server, e.g. nats://127.0.0.1:4222"
    )
    _name_option(gw, "the cluster's name (its authority's --name)")
    gw.add_argument(
        "--gateway-id",
        type=_gateway_id,
        default=None,
        metavar="N",
        help=f"this gateway's id, 1 to {MAX_GATEWAY_ID}: the N of the NATS subjects its user "
        "may use (pl3xus.NAME.up.N, pl3xus.NAME.down.N); fixed per NATS credential. Without "
        "it, a random id, which NATS permissions cannot confine",
    )
    gw.add_argument(
        "--drain-timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="at SIGTERM or Ctrl-C, the longest the gateway waits for its clients to move to "
        "another gateway before it stops (default 10; a second signal stops at once)",
    )
    gw.add_argument("--host", default="127.0.0.1", help="address to listen on")
    gw.add_argument("--port", type=_port, default=8081, help="0 picks a free port")
    gw.add_argument(
        "--app",
        default="pl3xus_rx.demo:register_cell",
        help="MODULE:FUNCTION registering the authority's types on a server (its setup)",
    )
    gw.add_argument(
        "--rate",
        type=_positive,
        default=120.0,
        help="max flushes per second (above the authority's: batches come at its pace)",
    )
    gw.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="without --token or --jwt-key-file, admit remote clients too (else loopback only)",
    )
    _security_options(gw)
    _nats_options(gw)
    _log_options(gw, "info")
    cl = sub.add_parser(
        "cluster",
        help="print the status of a scale-out cluster: its authority and gateways",
        description="Ask the authority of cluster --name, over NATS, for its status and print "
        "it with each gateway it hears. Exit code 0 when it answered, 1 when not.",
    )
    cl.add_argument(
        "--nats", required=True, metavar="URL", help="the NATS server, e.g. nats://127.0.0.1:4222"
    )
    _name_option(cl, "the cluster's name (its authority's --name)")
    cl.add_argument(
        "--timeout",
        type=_positive,
        default=STATUS_TIMEOUT,
        metavar="SECONDS",
        help=f"wait this long for the authority (default {STATUS_TIMEOUT:g})",
    )
    _nats_options(cl)
    _log_options(cl, "warning")
    st = sub.add_parser(
        "state",
        help="what a state file holds (a server's saved World: docs/persistence.md)",
        description="Read a state file (SyncServer(state=PATH), pl3xus-rx demo --state) and "
        "print what it holds: when and by which version it was written, its entities, and "
        "each component type with its values, shape hash and fields. Exit code 1, with one "
        "line saying what is wrong, when it cannot be read.",
    )
    st.add_argument("path", help="the state file")
    _log_options(st, "warning")
    insp = sub.add_parser("inspect", help="a live terminal view of a server's entities")
    insp.add_argument("url", help="ws://host:port/ of a SyncServer")
    insp.add_argument("--seconds", type=float, default=None, help="stop after this long")
    insp.add_argument("--once", action="store_true", help="print one snapshot and exit")
    insp.add_argument("--rows", type=_count, default=40, help="entities shown at most")
    _log_options(insp, "warning")
    insp.add_argument("--token", default=None, help="bearer token for the server")
    insp.add_argument(
        "--type", action="append", dest="types", help="show this component type (repeatable)"
    )
    insp.add_argument(
        "--fields", default=None, help="comma-separated fields to show (field or Type.field)"
    )
    insp.add_argument(
        "--spark",
        action="append",
        default=[],
        metavar="TYPE.FIELD",
        help="also draw a sparkline of this numeric field's recent values (repeatable)",
    )
    ts = sub.add_parser(
        "typescript",
        help="write TypeScript types for an app's models, or the wire vocabulary",
        description="Write a self-contained TypeScript module with an interface for every "
        "model an app registers (components, requests, queries, messages) and a descriptor "
        "with each type's wire name and schema hash, as the server sends them in its WELCOME; "
        "or, with --protocol, the wire vocabulary (frame kinds, flags, statuses...) for the "
        "browser client (js/src/protocol.ts). docs/web.md.",
    )
    ts.add_argument(
        "app",
        nargs="?",
        default=None,
        metavar="MODULE:FUNCTION",
        help="the function that registers the app's types on a SyncServer it is given (as "
        "gateway --app; e.g. pl3xus_rx.demo:register_cell)",
    )
    ts.add_argument(
        "--protocol",
        action="store_true",
        help="write the wire vocabulary of pl3xus_rx.protocol instead of an app's types",
    )
    ts.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="FILE",
        help="write to FILE (default: stdout); a FILE ending in .js gets plain JavaScript, "
        "its types in the .d.ts next to it (for pages without a build step)",
    )
    _log_options(ts, "warning")
    rp = sub.add_parser("replay", help="serve a recording as a read-only server")
    rp.add_argument(
        "file",
        metavar="FILE",
        help="a recording (SyncServer(record=...), pl3xus-rx demo --record, pl3xus-rx record)",
    )
    rp.add_argument(
        "--app",
        default=None,
        metavar="MODULE:FUNCTION",
        help="what registers the recorded types on a server (default: what the recording "
        "names, if it does)",
    )
    rp.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    rp.add_argument("--port", type=_port, default=8080, help="0 picks a free port")
    rp.add_argument("--speed", type=_positive, default=1.0, help="recording seconds per second")
    rp.add_argument(
        "--start", type=_finite, default=0.0, help="seconds from the recording's start to begin at"
    )
    rp.add_argument("--paused", action="store_true", help="start paused")
    rp.add_argument("--loop", action="store_true", help="start again at the end")
    rp.add_argument("--rate", type=_positive, default=30.0, help="max flushes per second")
    _log_options(rp, "warning")
    rc = sub.add_parser("replay-control", help="play, pause, seek or speed a replay server")
    rc.add_argument("url", help="the replay server, e.g. ws://127.0.0.1:8080/")
    rc.add_argument("action", choices=["status", "play", "pause", "seek", "speed"])
    rc.add_argument(
        "value",
        nargs="?",
        type=_finite,
        default=None,
        help="seek: SECONDS from the start; speed: X",
    )
    rc.add_argument("--token", default=None, help="a bearer token, if the server asks for one")
    rc.add_argument("--timeout", type=_positive, default=5.0, help="seconds to wait (default 5)")
    _log_options(rc, "warning")
    rec = sub.add_parser("record", help="record what a client (an identity) is sent")
    rec.add_argument("url", help="ws://host:port/ of an authority or a gateway")
    rec.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="the recording (numbered if taken)"
    )
    rec.add_argument("--token", default=None, help="a bearer token: whose view is recorded")
    rec.add_argument("--seconds", type=_positive, default=None, help="stop after this long")
    rec.add_argument(
        "--type", action="append", dest="types", help="record this type (repeatable; default all)"
    )
    rec.add_argument(
        "--keyframe-seconds", type=_positive, default=5.0, help="at most this between keyframes"
    )
    rec.add_argument("--rotate-bytes", type=_count, default=None, help="a new file past this")
    rec.add_argument("--rotate-seconds", type=_positive, default=None, help="a new file after")
    _log_options(rec, "warning")
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else _LEVELS[args.log_level]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # websockets' own log says what ours says, louder (every HTTP header at debug level)
    for noisy in ("websockets", "pl3xus_rx.net.websockets"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    args.activity = level <= logging.INFO
    if args.command == "demo":
        from .demo import describe, run_demo

        try:
            security = _Security.of(args)
        except (OSError, ValueError) as exc:
            print(f"pl3xus-rx demo: {exc}", file=sys.stderr)
            return 2

        def announce(address: tuple[str, int], cell: dict[str, Any]) -> None:
            # a token given on the command line is shown in the DevTools link (it is in the
            # process list anyway); one read from a file is never printed
            secured = security.token is not None or security.jwt is not None
            lines = describe(
                address,
                cell,
                args.token,
                authenticated=secured,
                nats=args.nats,
                cluster=args.name,
                state=args.state,
                app=args.serve is not None,
            )
            print("\n".join(lines), flush=True)

        async def serve() -> None:
            await run_demo(
                args.host,
                args.port,
                robots=args.robots,
                sensors=args.sensors,
                rate_hz=args.rate,
                sensor_updates=args.sensor_updates,
                on_ready=announce,
                token=security.token,
                viewer_token=security.viewer_token,
                allow_anonymous=args.allow_anonymous,
                nats=args.nats,
                cluster=args.name,
                activity=args.activity,
                jwt=security.jwt,
                allowed_hosts=security.allowed_hosts,
                nats_options=security.nats,
                state=args.state,
                serve=args.serve,
                record=args.record,
            )

        if args.nats is not None:
            try:
                import nats  # noqa: F401
            except ImportError as exc:
                print(f"pl3xus-rx demo: {exc}; pip install nats-py", file=sys.stderr)
                return 2
        try:
            code = _run(
                "demo",
                serve,
                "is another server running there? Pick another port with --port "
                "(0 picks a free one).",
            )
        except ValueError as exc:  # (the tokens do not fit together)
            print(f"pl3xus-rx demo: {exc}", file=sys.stderr)
            return 2
        if code:
            return code
        print("demo stopped", flush=True)
    elif args.command == "gateway":
        return _gateway(args)
    elif args.command == "replay":
        return _replay(args)
    elif args.command == "replay-control":
        return _replay_control(args)
    elif args.command == "record":
        return _record(args)
    elif args.command == "cluster":
        return _cluster(args)
    elif args.command == "state":
        return _state(args)
    elif args.command == "typescript":
        return _typescript(args)
    elif args.command == "inspect":
        from client_sync.inspect import inspect

        try:
            asyncio.run(
                inspect(
                    args.url,
                    seconds=args.seconds,
                    once=args.once,
                    max_rows=args.rows,
                    token=args.token,
                    types=args.types,
                    fields=args.fields.split(",") if args.fields else None,
                    spark=args.spark,
                )
            )
        except KeyboardInterrupt:
            pass
        except Exception as exc:  # one clear line for a command-line user
            print(f"pl3xus-rx inspect: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
