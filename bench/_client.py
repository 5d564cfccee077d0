"""The benchmarks' client process: N bare WebSocket clients that count frames.

Server frames are unmasked, so a few lines parse them; the client side then costs the same
whatever server path is measured. Usage (by the benchmarks)::

    python bench/_client.py PORT N EXPECTED SKIP [HELLO_HEX]

Each client skips its first SKIP frames (welcome, snapshot), then counts EXPECTED frames and
their payload bytes. HELLO_HEX, if given, is sent (as one masked binary frame) right after
the handshake, e.g. a SUBSCRIBE. Prints "ready" once all are connected, then
"done SECONDS BYTES" when all have their frames; exits after a line on stdin.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any


def masked_binary_frame(payload: bytes) -> bytes:
    """A client-to-server binary frame (mask key 0: the payload is unchanged)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x82, 0x80 | n))
    elif n < 65536:
        head = bytes((0x82, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x82, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\x00\x00\x00\x00" + payload


def strip_handshake(buf: bytearray) -> bool:
    """Drop the server's HTTP 101 response from ``buf``; False until it has all arrived."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    del buf[: end + 4]
    return True


def take_frames(buf: bytearray) -> list[tuple[int, int, bytes]]:
    """The whole (unmasked, server-sent) frames at the start of ``buf``, removed from it:
    ``(opcode, payload length, payload)`` each; the payload is copied for control frames
    (ping, pong, close) only, else empty."""
    frames: list[tuple[int, int, bytes]] = []
    pos, n = 0, len(buf)
    while n - pos >= 2:
        length, head = buf[pos + 1] & 0x7F, 2
        if length == 126:
            if n - pos < 4:
                break
            length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            if n - pos < 10:
                break
            length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
        if n - pos < head + length:
            break
        opcode = buf[pos] & 0x0F
        payload = bytes(buf[pos + head : pos + head + length]) if opcode >= 8 else b""
        frames.append((opcode, length, payload))
        pos += head + length
    del buf[:pos]
    return frames


class Counter(asyncio.Protocol):
    """Counts data frames after the first ``skip``."""

    def __init__(
        self, expected: int, skip: int, done: asyncio.Future[None], stats: dict[str, Any]
    ) -> None:
        self.buf = bytearray()
        self.handshaken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.expected, self.skip, self.done, self.stats = expected, skip, done, stats
        self.seen = 0

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.handshaken.done():
            if not strip_handshake(self.buf):
                return
            self.handshaken.set_result(None)
        for opcode, length, _ in take_frames(self.buf):
            if opcode in (1, 2):
                self.seen += 1
                if self.seen > self.skip:
                    if self.stats["first"] is None:
                        self.stats["first"] = time.perf_counter()
                    self.stats["bytes"] += length
        if self.seen >= self.expected + self.skip and not self.done.done():
            self.done.set_result(None)


async def run_clients(port: int, n: int, expected: int, skip: int, hello: bytes) -> None:
    loop = asyncio.get_running_loop()
    stats: dict[str, Any] = {"bytes": 0, "first": None}
    dones, transports = [], []
    for _ in range(n):
        done: asyncio.Future[None] = loop.create_future()
        transport, proto = await loop.create_connection(
            lambda d=done: Counter(expected, skip, d, stats), "127.0.0.1", port
        )
        transport.write(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await asyncio.wait_for(proto.handshaken, 10)
        if hello:
            transport.write(masked_binary_frame(hello))
        dones.append(done)
        transports.append(transport)
    print("ready", flush=True)
    await asyncio.wait_for(asyncio.gather(*dones), 300)
    end = time.perf_counter()
    print(f"done {end - stats['first']:.6f} {stats['bytes']}", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    for t in transports:
        t.close()


if __name__ == "__main__":
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the server runs on core 0
    args = sys.argv[1:]
    port, n, expected, skip = map(int, args[:4])
    hello = bytes.fromhex(args[4]) if len(args) > 4 else b""
    asyncio.run(run_clients(port, n, expected, skip, hello))
