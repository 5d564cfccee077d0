"""The demo's robot cell as a script: the same server `pl3xus-rx demo` runs.

    python examples/robot_cell.py --port 8080 --robots 3 --sensors 50

The cell itself (components, requests, simulation) is in `src/pl3xus_rx/demo.py`; read it
alongside `docs/sync.md` and `docs/commands.md`. Watch it with `examples/watch_cell.py`.
"""

from __future__ import annotations

import argparse
import asyncio

from pl3xus_rx.demo import describe, run_demo

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--robots", type=int, default=3)
    parser.add_argument("--sensors", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(
        run_demo(
            args.host,
            args.port,
            robots=args.robots,
            sensors=args.sensors,
            on_ready=lambda address, cell: print("\n".join(describe(address, cell)), flush=True),
        )
    )
    print("demo stopped", flush=True)
