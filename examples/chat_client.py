"""A chat client: sends what you type, prints what others say.

    python examples/chat_client.py ws://127.0.0.1:8080 --name ann

Non-interactive use (scripts, tests): `--say TEXT` (repeatable) sends lines at start, and
`--expect N` exits after N messages or notices were received (the server's welcome counts).
Ctrl-C (or end of input) leaves.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from urllib.parse import quote

from chat_types import ChatMessage, ServerNotice

from pl3xus_rx import ConnectFailed, Disconnected, Network, NetworkData


async def main(url: str, name: str, say: list[str], expect: int | None) -> int:
    net = Network()
    net.register_message(ChatMessage)
    net.register_message(ServerNotice)
    received = 0
    done = asyncio.Event()

    def count() -> None:
        nonlocal received
        received += 1
        if expect is not None and received >= expect:
            done.set()

    def show_chat(data: NetworkData[ChatMessage]) -> None:
        print(f"<{data.message.user}> {data.message.text}", flush=True)
        count()

    def show_notice(data: NetworkData[ServerNotice]) -> None:
        print(f"* {data.message.text}", flush=True)
        count()

    net.messages(ChatMessage).subscribe(show_chat)
    net.messages(ServerNotice).subscribe(show_notice)
    net.events.subscribe(lambda e: done.set() if isinstance(e, Disconnected) else None)

    async with net:
        server = await net.connect(f"{url.rstrip('/')}/?name={quote(name)}")
        print(f"connected to {url} as {name}", flush=True)
        for line in say:
            net.send(server, ChatMessage(user=name, text=line))
        if expect is not None or say:
            if expect is not None:
                await done.wait()
            return 0
        lines: asyncio.Queue[str] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def read() -> None:  # a daemon thread: Ctrl-C never waits for a blocked readline
            for line in sys.stdin:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, "")

        threading.Thread(target=read, daemon=True).start()
        while not done.is_set():
            line = await lines.get()
            if not line:
                break
            if line.strip():
                net.send(server, ChatMessage(user=name, text=line.strip()))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="ws://127.0.0.1:8080")
    parser.add_argument("--name", default="anon")
    parser.add_argument("--say", action="append", default=[])
    parser.add_argument("--expect", type=int, default=None)
    args = parser.parse_args()
    try:
        sys.exit(asyncio.run(main(args.url, args.name, args.say, args.expect)))
    except KeyboardInterrupt:
        sys.exit(130)
    except ConnectFailed as exc:
        sys.exit(f"chat_client: {exc}")
