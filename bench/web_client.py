"""The browser client's cost of applying frames, in Debian's Chromium (headless).

In one page, for each encoding, frames of U ``Position`` updates (among E entities the client
already holds) are measured two ways, interleaved, several rounds:

- **decode**: the codec alone turns the frame's bytes into arrays (the floor: nothing can
  apply a frame it has not decoded);
- **apply**: the whole client path, the same bytes handed to the client as a WebSocket
  message and applied to its view (checked, decoded into objects by field name, the Map
  updated, per-entity signals set, the version bumped once, effects run), with watchers:
  one effect on the view's version and effects on W entities' own signals (a table showing W
  rows: 100 by default, and the same run again with 1,000).

The figure is apply's rate as a share of decode's (goal ≥ 50 %), with the package's size
(minified, gzipped; goal ≤ 30 kB for the core). Writes bench/results/web_client.md and a
section of docs/performance.md (unless ``--no-docs``).

    python bench/web_client.py --updates 1000 --entities 10000 --frames 200 --rounds 5 \
        --watched 100 1000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import hashlib
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish

from pl3xus_rx import SyncServer
from pl3xus_rx._http import HttpRequest, HttpResponse

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
WEB = Path(__file__).resolve().parent.parent / "src" / "pl3xus_rx" / "web"

SCRIPT = 'import * as pl3xus from "/pl3xus.js"; window.pl3xus = pl3xus; window.ready = true;'
PAGE = (
    '<!doctype html><html><head><meta charset="utf-8"><title>bench</title></head><body>'
    f'<script type="module">{SCRIPT}</script></body></html>'
)

# In the page: build the frames once, then time decode-only and the client's whole path.
MEASURE = """
async ([encoding, updates, entities, frames, rounds, watched]) => {
  const { connect, effect, MsgpackCodec, JsonCodec, protocol } = window.pl3xus;
  const { FrameKind, SyncFlag } = protocol;
  const codec = encoding === "json" ? new JsonCodec() : new MsgpackCodec();
  let socket = null;
  const client = connect("ws://bench.invalid/", {
    encoding, acknowledge: false,
    webSocket: () => (socket = {
      binaryType: "", protocol: "", readyState: 0, onmessage: null, onclose: null,
      onerror: null, onopen: null, send() {}, close() {},
    }),
  });
  await new Promise((r) => setTimeout(r, 0));
  socket.readyState = 1;
  const deliver = (data) => socket.onmessage({ data });
  deliver(codec.encode([FrameKind.WELCOME, {
    version: 2, connection_id: 1, as_of_interval: 0.5,
    components: [[0, "Position", "h", ["x", "y"]]],
  }]));
  const view = client.components("Position");
  let seq = 1;
  const all = [];
  for (let e = 1; e <= entities; e++) all.push([e, [e, -e]]);
  const full = SyncFlag.SNAPSHOT | SyncFlag.COMPLETE;
  deliver(codec.encode([FrameKind.SYNC, seq++, [[1, full, all, [], []]], 1, 0]));
  client.drain();
  if (view.map.size !== entities) throw new Error("snapshot not applied: " + view.map.size);
  let seen = 0;
  const stops = [effect(() => { void view.version.value; seen++; })];
  for (let e = 1; e <= watched; e++) {
    const s = view.get(e);
    stops.push(effect(() => { void s.value; seen++; }));
  }
  // the frames: `updates` distinct random entities each
  let state = 12345;
  const random = () => ((state = (state * 1103515245 + 12345) % 2147483648) / 2147483648);
  const bodies = [];
  for (let f = 0; f < frames; f++) {
    const picked = new Set();
    while (picked.size < updates) picked.add(1 + Math.floor(random() * entities));
    const ups = [...picked].map((e) => [e, [random() * 100, random() * 100]]);
    bodies.push(codec.encode([FrameKind.SYNC, 0, [[1, 0, ups, [], []]], 2, 0]));
  }
  const decode = () => {
    const t0 = performance.now();
    let n = 0;
    for (const b of bodies) n += codec.decode(b).length;
    return performance.now() - t0 + (n < 0 ? 1 : 0);
  };
  // the client checks sequence numbers: each round's frames carry the next ones (encoded
  // before timing)
  const apply = () => {
    const encoded = bodies.map((b) => {
      const frame = codec.decode(b);
      frame[1] = seq++;
      return codec.encode(frame);
    });
    const t0 = performance.now();
    for (const data of encoded) {
      deliver(data);
      client.drain();
    }
    return performance.now() - t0;
  };
  decode(); apply(); // warm-up
  const d = [], a = [];
  for (let r = 0; r < rounds; r++) { d.push(decode()); a.push(apply()); }
  const errors = [...client.badFrames.entries()];
  stops.forEach((s) => s());
  client.close();
  const bytes = bodies[0].length ?? bodies[0].byteLength;
  return { decode: d, apply: a, bytes, effects: seen, errors };
}
"""


def median(values: list[float]) -> float:
    return statistics.median(values)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    server = SyncServer()

    def page(request: HttpRequest) -> HttpResponse:
        digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
        csp = f"default-src 'none'; script-src 'self' 'sha256-{digest}'"
        return HttpResponse(200, PAGE, "text/html; charset=utf-8", {"Content-Security-Policy": csp})

    server.net.add_route("/bench", page)
    results: dict[str, Any] = {}
    async with server.serve("127.0.0.1", 0) as (host, port), async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            tab = await browser.new_page()
            await tab.goto(f"http://{host}:{port}/bench")
            for _ in range(200):
                if await tab.evaluate("window.ready === true"):
                    break
                await asyncio.sleep(0.05)
            for watched in args.watched:
                for encoding in ("msgpack", "json"):
                    results[f"{encoding}|{watched}"] = await tab.evaluate(
                        MEASURE,
                        [
                            encoding,
                            args.updates,
                            args.entities,
                            args.frames,
                            args.rounds,
                            watched,
                        ],
                    )
        finally:
            await browser.close()
    return results


def table(args: argparse.Namespace, results: dict[str, Any]) -> str:
    rows = [
        f"Chromium (headless), frames of {args.updates:,} `Position` updates among "
        f"{args.entities:,} held entities, {args.frames} frames per round, medians of "
        f"{args.rounds} interleaved rounds; watchers: one effect on the view's version and "
        "effects on the own signals of as many entities as the table says (the rows a page "
        "shows).",
        "",
        "| encoding | entities watched | frame bytes | decode only, frames/s "
        "| client applies, frames/s | updates/s applied | apply / decode (goal ≥ 50 %) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, r in results.items():
        encoding, watched = key.split("|")
        # (performance.now() is coarse in a page: at least 0.1 ms)
        decode_rate = args.frames / (max(median(r["decode"]), 0.1) / 1000)
        apply_rate = args.frames / (max(median(r["apply"]), 0.1) / 1000)
        rows.append(
            f"| {encoding} | {int(watched):,} | {r['bytes']:,} | {decode_rate:,.0f} "
            f"| {apply_rate:,.0f} "
            f"| {apply_rate * args.updates:,.0f} | {apply_rate / decode_rate:.0%} |"
        )
    sizes = []
    for name in ("pl3xus.js", "pl3xus-react.js"):
        path = WEB / name
        if path.exists():
            body = path.read_bytes()
            sizes.append(
                f"`{name}` {len(body) / 1024:.1f} kB minified, "
                f"{len(gzip.compress(body, 9)) / 1024:.1f} kB gzipped"
            )
    rows += ["", "Package size: " + "; ".join(sizes) + " (goal ≤ 30 kB gzipped for the core)."]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--watched", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(measure(args))
    for encoding, r in results.items():
        if r["errors"]:
            sys.exit(f"{encoding}: the client could not read frames: {r['errors']}")
    command = "python bench/web_client.py " + " ".join(sys.argv[1:])
    publish("web_client", command.strip(), table(args, results), docs=not args.no_docs)


if __name__ == "__main__":
    main()
