"""The ``pl3xus-rx`` command (also ``python -m pl3xus_rx``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = argparse.ArgumentParser(prog="pl3xus-rx", description="pl3xus_rx tools")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="serve a simulated robot cell")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    demo.add_argument("--robots", type=int, default=3)
    demo.add_argument("--sensors", type=int, default=50)
    demo.add_argument("--rate", type=float, default=30.0, help="max flushes per second")
    demo.add_argument("--debug", action="store_true", help="log at debug level")
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
    insp = sub.add_parser("inspect", help="a live terminal view of a server's entities")
    insp.add_argument("url", help="ws://host:port/ of a SyncServer")
    insp.add_argument("--seconds", type=float, default=None, help="stop after this long")
    insp.add_argument("--once", action="store_true", help="print one snapshot and exit")
    insp.add_argument("--rows", type=int, default=40, help="entities shown at most")
    insp.add_argument("--debug", action="store_true", help="log at debug level")
    insp.add_argument("--token", default=None, help="bearer token for the server")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
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
                    on_ready=announce,
                    token=args.token,
                    viewer_token=args.viewer_token,
                    allow_anonymous=args.allow_anonymous,
                )
            )
        except ValueError as exc:
            print(f"pl3xus-rx demo: {exc}", file=sys.stderr)
            return 2
        print("demo stopped", flush=True)
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
