"""A chat server on pl3xus_rx's Network: relays every ChatMessage to every other client.

Run it, then one or more `examples/chat_client.py`:

    python examples/chat_server.py --port 8080
    python examples/chat_client.py ws://127.0.0.1:8080 --name ann

Ctrl-C shuts it down gracefully (clients are closed with 1001 after their queues drain).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from chat_types import ChatMessage, ServerNotice

from pl3xus_rx import Connected, Disconnected, Network, NetworkData, NetworkSettings


async def main(host: str, port: int) -> None:
    net = Network(NetworkSettings(channel_capacity=1000, max_connections=1000))
    net.register_message(ChatMessage)
    net.register_message(ServerNotice)

    names: dict[int, str] = {}  # connection -> the name it chose (?name= in its URL)

    def relay(data: NetworkData[ChatMessage]) -> None:
        user = names.get(data.source) or data.message.user or f"user{data.source}"
        net.broadcast_except(data.source, ChatMessage(user=user, text=data.message.text))

    def on_event(event: object) -> None:
        if isinstance(event, Connected):
            request = net.request_of(event.id)
            name = (request.param("name") if request else None) or f"user{event.id}"
            names[event.id] = name[:32]
            others = len(names) - 1
            net.send(event.id, ServerNotice(text=f"welcome, {name}; {others} other(s) here"))
            net.broadcast_except(event.id, ServerNotice(text=f"{name} joined"))
        elif isinstance(event, Disconnected):
            name = names.pop(event.id, f"user{event.id}")
            net.broadcast(ServerNotice(text=f"{name} left ({event.reason})"))

    net.messages(ChatMessage).subscribe(relay)
    net.events.subscribe(on_event)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with net:
        bound_host, bound_port = await net.listen(host, port)
        print(
            f"chat server on ws://{bound_host}:{bound_port}/  "
            f"(health: http://{bound_host}:{bound_port}/healthz)",
            flush=True,
        )
        await stop.wait()
        print("shutting down", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--debug", action="store_true", help="log pl3xus_rx at debug level")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    asyncio.run(main(args.host, args.port))
