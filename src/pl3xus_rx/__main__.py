"""The ``pl3xus-rx`` command (also ``python -m pl3xus_rx``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from importlib import metadata
from typing import Any

from .exceptions import BindError


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


def _gateway(args: argparse.Namespace) -> int:
    import importlib

    module, _, name = str(args.app).partition(":")
    try:
        setup = getattr(importlib.import_module(module), name or "setup")
    except (ImportError, AttributeError) as exc:
        print(f"pl3xus-rx gateway: cannot load --app {args.app!r}: {exc}", file=sys.stderr)
        return 2
    try:
        from .scaleout import Gateway
    except ImportError as exc:
        print(f"pl3xus-rx gateway: {exc}; pip install nats-py", file=sys.stderr)
        return 2

    async def run() -> None:
        import signal

        from .net import NetworkSettings
        from .server import SyncServer
        from .sync import SyncSettings

        server = SyncServer(
            NetworkSettings(allow_anonymous=args.allow_anonymous),
            SyncSettings(max_update_rate_hz=args.rate),
        )
        setup(server)
        if args.activity:
            from .instruments import ActivityLog

            server.instrument(ActivityLog(address_of=server.address_of))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with server.serve(args.host, args.port) as (host, port):
            gateway = Gateway(server, args.nats, args.name)
            await gateway.start()  # (ConnectionError: NATS does not answer)
            print(
                f"pl3xus_rx gateway {gateway.gateway} of cluster {args.name!r} ({args.nats})\n"
                f"  WebSocket: ws://{host}:{port}/\n"
                f"  DevTools:  http://{host}:{port}/devtools\n"
                "Ctrl-C to stop.",
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
    demo.add_argument(
        "--token", default=None, help="require this bearer token; its holder is an operator"
    )
    demo.add_argument(
        "--viewer-token", default=None, help="a second token whose holder may only watch"
    )
    demo.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="without --token, admit clients from other machines too (else loopback only)",
    )
    demo.add_argument("--nats", default=None, help="also be the authority on this NATS server")
    demo.add_argument("--name", default="demo", help="the cluster's name on NATS")
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
    gw.add_argument("--allow-anonymous", action="store_true", help="admit remote clients too")
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

        def announce(address: tuple[str, int], cell: dict[str, Any]) -> None:
            print("\n".join(describe(address, cell, args.token)), flush=True)

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
                    token=args.token,
                    viewer_token=args.viewer_token,
                    allow_anonymous=args.allow_anonymous,
                    nats=args.nats,
                    cluster=args.name,
                    activity=args.activity,
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
