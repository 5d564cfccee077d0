"""Abuse benchmark: what hostile or greedy clients cost everyone else.

A server at default settings (``bench/_abuse_server.py``, its own process on core 0: 10,000
entities, 2,000 sensors updating at 10,000 updates/s) serves W watching clients (this
process, core 1), each subscribed to every sensor. Then each attack runs in turn from a third
process (core 1 too), for a few seconds:

- **poison**: mutations carrying lone surrogates (JSON ``\\ud800``, msgpack invalid UTF-8);
- **command burst**: 2,000 ``pl3xus.tree`` queries over 10,000 entities in one burst, again
  each second, plus ``take`` spam on the root of the 10,000;
- **decoder bomb**: 4 MiB frames of empty msgpack maps, back to back;
- **non-reading subscribers**: two clients with 1,000 subscriptions each that never read
  (new ones every second);
- **hanging handlers**: 1,000 requests whose handler never returns, then leave; repeated;
- **notice flood**: four clients asking, in a loop, for an entity a fifth one holds;
- **handshake flood**: connections opened and dropped as fast as they go, and 200 half-open.

Reported per attack: the watchers' delivered bytes/s as a percentage of the no-attack
phases of the same run (the same updates every time, so bytes measure updates), the
server's peak RSS during the attack, log records with a traceback, and what the attacker
met. Goals at default settings: >= 80 %, <= 300 MB, 0. Usage::

    python bench/abuse.py                      # writes bench/results/ and docs
    python bench/abuse.py --seconds 1 --watchers 5 --no-docs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _client import masked_binary_frame, strip_handshake, take_frames
from _report import publish

from pl3xus_rx.protocol import FrameKind

ATTACKS = [
    "poison",
    "command burst",
    "decoder bomb",
    "non-reading subscribers",
    "hanging handlers",
    "notice flood",
    "handshake flood",
]
HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu})


# ---------------------------------------------------------------- watchers (this process)


class Watcher(asyncio.Protocol):
    """A bare client that counts the payload bytes of the frames it receives."""

    def __init__(self, totals: list[int]) -> None:
        self.transport: Any = None
        self.buf = bytearray()
        self.totals = totals
        self.handshaken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.handshaken.done():
            if not strip_handshake(self.buf):
                return
            self.handshaken.set_result(None)
        for opcode, length, payload in take_frames(self.buf):
            if opcode == 0x9:  # ping: answer it, or the server's keepalive closes us
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
            elif opcode in (0x1, 0x2):
                self.totals[0] += length


async def start_watchers(port: int, n: int, totals: list[int]) -> list[asyncio.Transport]:
    loop = asyncio.get_running_loop()
    hello = masked_binary_frame(msgpack.packb([FrameKind.SUBSCRIBE, 1, "Sensor", None, {}]))
    out = []
    for _ in range(n):
        transport, proto = await loop.create_connection(lambda: Watcher(totals), "127.0.0.1", port)
        transport.write(HANDSHAKE + b"\r\n")
        await asyncio.wait_for(proto.handshaken, 10)
        transport.write(hello)
        out.append(transport)
    return out


async def server_stats(port: int, reset: bool = False) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    path = "/bench/stats?reset=1" if reset else "/bench/stats"
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return json.loads(data.split(b"\r\n\r\n", 1)[1])  # type: ignore[no-any-return]


# ---------------------------------------------------------------- attacks (a third process)


class Tally:
    """What the attacker met: closes by code, errors by code, replies by status."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def frame(self, data: bytes | str) -> None:
        try:
            f = msgpack.unpackb(data, strict_map_key=False) if isinstance(data, bytes) else None
            if f is None:
                f = json.loads(data)
        except Exception:
            return
        if f and f[0] == FrameKind.ERROR:
            self.seen[f"error {f[1].get('code')}"] += 1
        elif f and f[0] == FrameKind.REPLY:
            self.seen[f"reply {f[2]}"] += 1
        elif f and f[0] == FrameKind.NOTICE:
            self.seen[f"notice {f[1]}"] += 1

    def closed(self, exc: BaseException) -> None:
        code = getattr(getattr(exc, "rcvd", None), "code", None)
        self.seen[f"closed {code}"] += 1


async def ws(port: int, tally: Tally, json_mode: bool = False) -> Any:
    from websockets.asyncio.client import connect

    extra: dict[str, Any] = {"subprotocols": ["pl3xus.json.v1"]} if json_mode else {}
    conn = await connect(
        f"ws://127.0.0.1:{port}/", compression=None, max_size=None, ping_interval=None, **extra
    )
    await conn.recv()  # welcome

    async def drain() -> None:
        try:
            async for data in conn:
                tally.frame(data)
        except Exception as exc:
            tally.closed(exc)

    conn.drainer = asyncio.create_task(drain())  # type: ignore[attr-defined]
    return conn


async def until(deadline: float, body: Any, tally: Tally) -> None:
    """Run ``body()`` again and again (reconnecting after a close) until ``deadline``."""
    while time.monotonic() < deadline:
        try:
            await body()
        except Exception as exc:
            tally.closed(exc)
            await asyncio.sleep(0.05)


async def poison(port: int, deadline: float, tally: Tally, info: dict[str, Any]) -> None:
    cell = info["cell"]
    packer = msgpack.Packer(use_bin_type=True, unicode_errors="surrogatepass")

    async def body() -> None:
        j, m = await ws(port, tally, json_mode=True), await ws(port, tally)
        for i in range(10**9):
            if time.monotonic() > deadline:
                break
            frame = [FrameKind.MUTATE, i, "Label", cell, {"text": "\ud800"}]
            await j.send(json.dumps(frame))  # (escaped: "\\ud800", a lone surrogate)
            await m.send(packer.pack(frame))
            if i % 50 == 0:
                await asyncio.sleep(0.01)
        await j.close()
        await m.close()

    await until(deadline, body, tally)


async def command_burst(port: int, deadline: float, tally: Tally, info: dict[str, Any]) -> None:
    async def takes() -> None:
        conn = await ws(port, tally)
        take = msgpack.packb([FrameKind.CONTROL, 0, "take", info["cell"]])
        while time.monotonic() < deadline:
            for _ in range(100):
                await conn.send(take)
            await asyncio.sleep(0.01)
        await conn.close()

    async def queries() -> None:
        conn = await ws(port, tally)
        frames = [msgpack.packb([FrameKind.QUERY, i, "pl3xus.tree", {}]) for i in range(2000)]
        while time.monotonic() < deadline:
            for f in frames:
                await conn.send(f)
            await asyncio.sleep(1.0)
        await conn.close()

    await asyncio.gather(until(deadline, queries, tally), until(deadline, takes, tally))


async def decoder_bomb(port: int, deadline: float, tally: Tally, info: dict[str, Any]) -> None:
    n = 4 * 1024 * 1024 - 64
    bomb = b"\xdd" + n.to_bytes(4, "big") + b"\x80" * n

    async def body() -> None:
        conn = await ws(port, tally)
        while time.monotonic() < deadline:
            await conn.send(bomb)
        await conn.close()

    await until(deadline, body, tally)


async def non_reading(port: int, deadline: float, tally: Tally, info: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    subscribe = FrameKind.SUBSCRIBE
    subs = b"".join(
        masked_binary_frame(msgpack.packb([subscribe, i, "Sensor", None, {}])) for i in range(1000)
    )

    async def one() -> None:
        while time.monotonic() < deadline:  # a new one every second
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, HANDSHAKE + b"\r\n" + subs)
            tally.seen["1000 subscriptions, never read"] += 1
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            sock.close()

    await asyncio.gather(one(), one())


async def hanging(port: int, deadline: float, tally: Tally, info: dict[str, Any]) -> None:
    async def body() -> None:
        conn = await ws(port, tally)
        for i in range(1000):
            await conn.send(msgpack.packb([FrameKind.REQUEST, i, "Hang", None, {"n": i}]))
        await asyncio.sleep(0.5)
        await conn.close()
        tally.seen["left 1000 hanging"] += 1

    await until(deadline, body, tally)


async def notice_flood(port: int, deadline: float, tally: Tally, info: dict[str, Any]) -> None:
    holder = await ws(port, tally)
    await holder.send(msgpack.packb([FrameKind.CONTROL, 0, "take", info["sensor"]]))

    async def asker() -> None:
        conn = await ws(port, tally)
        take = msgpack.packb([FrameKind.CONTROL, 1, "take", info["sensor"]])
        while time.monotonic() < deadline:
            for _ in range(50):
                await conn.send(take)
            await asyncio.sleep(0.01)
        await conn.close()

    await asyncio.gather(*(until(deadline, asker, tally) for _ in range(4)))
    await holder.close()


async def handshake_flood(port: int, deadline: float, tally: Tally, info: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    half_open = []
    for _ in range(200):
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\n")  # and never the rest
        half_open.append(sock)

    async def churn() -> None:
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(HANDSHAKE + b"\r\n")
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                writer.transport.abort()
                tally.seen["handshakes"] += 1
            except Exception as exc:
                tally.seen[type(exc).__name__] += 1

    await asyncio.gather(*(churn() for _ in range(8)))
    for sock in half_open:
        sock.close()


RUN = {
    "poison": poison,
    "command burst": command_burst,
    "decoder bomb": decoder_bomb,
    "non-reading subscribers": non_reading,
    "hanging handlers": hanging,
    "notice flood": notice_flood,
    "handshake flood": handshake_flood,
}


async def attack(name: str, port: int, seconds: float, info: dict[str, Any]) -> None:
    tally = Tally()
    await RUN[name](port, time.monotonic() + seconds, tally, info)
    print(json.dumps(dict(tally.seen.most_common(4))), flush=True)


# ---------------------------------------------------------------- the run


@dataclass
class Phase:
    name: str
    rate: float  # delivered payload bytes/s, all watchers
    peak_mb: float
    tracebacks: int
    met: str


async def phase(
    name: str | None, port: int, watched: list[int], seconds: float, info: dict[str, Any]
) -> Phase:
    await server_stats(port, reset=True)
    before = await server_stats(port)
    proc = None
    if name is not None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--attack",
            name,
            "--port",
            str(port),
            "--seconds",
            str(seconds + 1.0),
            "--info",
            json.dumps(info),
            stdout=asyncio.subprocess.PIPE,
        )
    await asyncio.sleep(0.5)  # the attack gets going
    start, t0 = watched[0], time.perf_counter()
    await asyncio.sleep(seconds)
    rate = (watched[0] - start) / (time.perf_counter() - t0)
    met = ""
    if proc is not None:
        assert proc.stdout is not None
        out = await asyncio.wait_for(proc.stdout.read(), 60 + seconds)
        await proc.wait()
        met = ", ".join(f"{k} x{v}" for k, v in json.loads(out or b"{}").items())
    after = await server_stats(port)
    counted = {
        "1013 closes": "channel_full_closes",
        "rate-limited": "rate_limited",
        "bad frames": "bad_frames",
    }
    server_side = ", ".join(
        f"{label} x{after[key] - before[key]}"
        for label, key in counted.items()
        if after[key] > before[key]
    )
    if server_side:
        met = f"{met}; server: {server_side}" if met else f"server: {server_side}"
    await asyncio.sleep(1.0)  # cool down: closes, cancellations
    return Phase(
        name or "no attack",
        rate,
        after["peak_mb"],
        after["tracebacks"] - before["tracebacks"],
        met,
    )


async def main(watchers: int, seconds: float, attacks: list[str]) -> list[Phase]:
    pin(1)
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("_abuse_server.py")),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert server.stdout is not None and server.stdin is not None
    port = int(await asyncio.wait_for(server.stdout.readline(), 60))
    watched = [0]
    transports = await start_watchers(port, watchers, watched)
    info = await server_stats(port)
    await asyncio.sleep(1.0)  # snapshots out
    phases = [await phase(None, port, watched, seconds, info)]
    for name in attacks:
        phases.append(await phase(name, port, watched, seconds, info))
        print(f"{phases[-1]}", flush=True)
    phases.append(await phase(None, port, watched, seconds, info))
    for t in transports:
        t.close()
    server.stdin.close()
    await asyncio.wait_for(server.wait(), 30)
    return phases


def table(phases: list[Phase], watchers: int) -> str:
    calm = [p for p in phases if p.name == "no attack"]
    base = sum(p.rate for p in calm) / len(calm)
    lines = [
        f"{watchers} watchers of 2,000 sensors (10,000 updates/s) on a 10,000-entity server at "
        "default settings; each attack for a few seconds from a third process. Delivered: the "
        "watchers' bytes/s as a share of the no-attack phases (first and last).",
        "",
        "| phase | delivered | server peak RSS MB | tracebacks | what the attacker met |",
        "|---|---:|---:|---:|---|",
    ]
    for p in phases:
        lines.append(
            f"| {p.name} | {p.rate / base:.0%} | {p.peak_mb:.0f} | {p.tracebacks} | {p.met} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Abuse benchmark (see docstring).")
    parser.add_argument("--watchers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--attack", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--info", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attack:
        pin(1)
        asyncio.run(attack(args.attack, args.port, args.seconds, json.loads(args.info)))
        sys.exit(0)
    chosen = [a for a in args.attacks.split(",") if a]
    res = asyncio.run(main(args.watchers, args.seconds, chosen))
    publish("abuse", "python bench/abuse.py", table(res, args.watchers), docs=not args.no_docs)
