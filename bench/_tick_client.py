"""The side-by-side benchmark's client process: N bare WebSocket clients that count frames
and note when every client has had each one.

Like ``bench/_client.py`` (whose frame parser it uses), so the client side costs the same
whatever server is measured, but it also speaks the first words of each server's protocol:

- ``raw``: nothing (the server broadcasts);
- ``pl3xus``: a SUBSCRIBE to every ``Position`` (the welcome and the snapshot are skipped);
- ``sio``: Engine.IO v4 over a WebSocket at ``/socket.io/``, then a Socket.IO CONNECT to the
  ``/`` namespace, msgpack-encoded (the server's OPEN and the CONNECT ack are skipped).

Usage (by ``bench/socketio_side_by_side.py``)::

    python bench/_tick_client.py PORT N PROTOCOL EXPECTED TIMEOUT

Prints "ready" once all are connected; then, when every client has its EXPECTED frames
(or "short ..." if some have not after TIMEOUT seconds),
"done " and a JSON object: ``bytes`` (payload bytes counted) and ``complete`` (per frame
index, the ``time.perf_counter()`` at which the last client had it: the clock is the
system's monotonic one, shared with the server process). Exits after a line on stdin.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgpack
from _client import masked_binary_frame, strip_handshake, take_frames

PATHS = {"raw": "/", "pl3xus": "/", "sio": "/socket.io/?EIO=4&transport=websocket"}
SKIP = {"raw": 0, "pl3xus": 2, "sio": 2}


class Counter(asyncio.Protocol):
    """Counts data frames after the first ``skip``; notes when each one arrived."""

    def __init__(
        self, expected: int, skip: int, complete: list[float], done: asyncio.Future[None]
    ) -> None:
        self.buf = bytearray()
        self.handshaken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.expected, self.skip, self.complete, self.done = expected, skip, complete, done
        self.seen = 0
        self.bytes = 0

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buf += data
        if not self.handshaken.done():
            if not strip_handshake(self.buf):
                return
            self.handshaken.set_result(None)
        for opcode, length, _ in take_frames(self.buf):
            if opcode in (1, 2):
                self.seen += 1
                if self.seen == 1 and not self.first.done():
                    self.first.set_result(None)
                index = self.seen - self.skip - 1
                if 0 <= index < self.expected:
                    self.bytes += length
                    if now > self.complete[index]:
                        self.complete[index] = now
        if self.seen >= self.expected + self.skip and not self.done.done():
            self.done.set_result(None)


async def run_clients(port: int, n: int, protocol: str, expected: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    complete = [0.0] * expected
    hello = {
        "raw": b"",
        "pl3xus": msgpack.packb([3, 1, "Position", None, {}]),
        "sio": msgpack.packb({"type": 0, "data": None, "nsp": "/"}),
    }[protocol]
    request = (
        f"GET {PATHS[protocol]} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    protos: list[Counter] = []
    transports: list[Any] = []
    dones = []
    for _ in range(n):
        done: asyncio.Future[None] = loop.create_future()
        transport, proto = await loop.create_connection(
            lambda d=done: Counter(expected, SKIP[protocol], complete, d), "127.0.0.1", port
        )
        transport.write(request)
        await asyncio.wait_for(proto.handshaken, 30)
        if protocol == "sio":
            await asyncio.wait_for(proto.first, 30)  # Engine.IO's OPEN, then connect
        if hello:
            transport.write(masked_binary_frame(hello))
        protos.append(proto)
        transports.append(transport)
        dones.append(done)
    print("ready", flush=True)
    try:
        await asyncio.wait_for(asyncio.gather(*dones), timeout)
    except TimeoutError:
        short = [p.seen - p.skip for p in protos if p.seen < p.expected + p.skip]
        print(f"short {len(short)} clients, fewest frames {min(short)}", flush=True)
    else:
        total = sum(p.bytes for p in protos)
        print("done " + json.dumps({"bytes": total, "complete": complete}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    for t in transports:
        t.close()


if __name__ == "__main__":
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the server runs on core 0
    port, n, protocol, expected, timeout = sys.argv[1:6]
    asyncio.run(run_clients(int(port), int(n), protocol, int(expected), float(timeout)))
