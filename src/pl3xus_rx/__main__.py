"""The ``pl3xus-rx`` command (also ``python -m pl3xus_rx``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .exceptions import BindError

if TYPE_CHECKING:
    from .scaleout import NatsOptions
    from .security import Authenticator


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


def _positive(text: str) -> float:
    """An argument that must be a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


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
    )


def _gateway(args: argparse.Namespace) -> int:
    import importlib

    module, _, name = str(args.app).partition(":")
    try:
        setup = getattr(importlib.import_module(module), name or "setup")
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
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with server.serve(args.host, args.port) as (host, port):
            gateway = Gateway(server, args.nats, args.name, nats_options=security.nats)
            await gateway.start()  # (ConnectionError: NATS does not answer)
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
                + "Ctrl-C to stop.",
                flush=True,
            )
            try:
                await stop.wait()
            finally:
                await gateway.stop()

    try:
        asyncio.run(run())
    except BindError as exc:
        print(f"pl3xus-rx gateway: {exc.strerror}; pick another --port", file=sys.stderr)
        return 1
    except ConnectionError as exc:
        print(f"pl3xus-rx gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    print("gateway stopped", flush=True)
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
    demo.add_argument("--nats", default=None, help="also be the authority on this NATS server")
    demo.add_argument("--name", default="demo", help="the cluster's name on NATS")
    _nats_options(demo)
    gw = sub.add_parser("gateway", help="serve clients from an authority's replica over NATS")
    gw.add_argument("--nats", required=True, help="the NATS server, e.g. nats://127.0.0.1:4222")
    gw.add_argument("--name", default="demo", help="the cluster's name (the authority's)")
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
            lines = describe(address, cell, args.token, authenticated=secured)
            print("\n".join(lines), flush=True)

        try:
            asyncio.run(
                run_demo(
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
                )
            )
        except BindError as exc:
            print(
                f"pl3xus-rx demo: {exc.strerror}; is another server running there? "
                "Pick another port with --port (0 picks a free one).",
                file=sys.stderr,
            )
            return 1
        except ValueError as exc:
            print(f"pl3xus-rx demo: {exc}", file=sys.stderr)
            return 2
        except ConnectionError as exc:
            print(f"pl3xus-rx demo: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            pass
        print("demo stopped", flush=True)
    elif args.command == "gateway":
        return _gateway(args)
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
