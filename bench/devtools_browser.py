"""DevTools at 10,000 entities, in Debian's Chromium (headless, driven by Playwright).

Starts ``pl3xus-rx demo --sensors N`` in its own process (20,000 sensor readings/s, robots
at 100 Hz), opens DevTools and works it as an operator would, measuring each step:

- how long until the first rows show and until every entity is listed;
- filtering by type, searching by name, selecting an entity (time from the input event to the
  next painted frame, measured in the page);
- frames per second while values stream in, and while scrolling through the list;
- the worst input delay and event duration Chromium's Event Timing API saw;
- a live chart of a robot's joint angles (points added while watching);
- taking control of a robot and editing its speed (checked on the server by a client);
- that the page stays connected the whole time (no close, no channel drop on the server).

Writes the table to bench/results/devtools_browser.md and docs/performance.md (unless
``--no-docs``), the figures as JSON with ``--json``, screenshots with ``--screenshots DIR``.
Exits 1 if a step fails (the figures are reported, not judged: goals are in the table).

    python bench/devtools_browser.py --sensors 10000 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# In-page measurement: run an action, then wait for the next frame to be painted.
TIMED = """async (action) => {
  const t0 = performance.now();
  eval(action);
  await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
  return performance.now() - t0;
}"""

FPS = """async (ms) => {
  let frames = 0; const t0 = performance.now();
  await new Promise(done => {
    const tick = () => {
      frames++;
      if (performance.now() - t0 < ms) requestAnimationFrame(tick); else done();
    };
    requestAnimationFrame(tick);
  });
  return frames * 1000 / (performance.now() - t0);
}"""

SCROLL_FPS = """async (ms) => {
  const s = document.getElementById('scroller'); let frames = 0; const t0 = performance.now();
  await new Promise(done => {
    const tick = () => {
      frames++; s.scrollTop += 60;
      if (performance.now() - t0 < ms) requestAnimationFrame(tick); else done();
    };
    requestAnimationFrame(tick);
  });
  return frames * 1000 / (performance.now() - t0);
}"""

EVENT_TIMING = """() => {
  window.__events = [];
  new PerformanceObserver(list => { for (const e of list.getEntries()) window.__events.push(
    {name: e.name, delay: e.processingStart - e.startTime, duration: e.duration}); })
    .observe({type: 'event', buffered: true, durationThreshold: 16});
}"""


def expected_matches(sensors: int, text: str) -> int:
    """How many demo entity names contain ``text`` (the demo's naming: see build_cell)."""
    kinds = ["temperature", "pressure", "vibration", "current"]
    names = [f"{kinds[i % 4]} {i + 1}" for i in range(sensors)]
    names += ["cell 1", "conveyor"] + [f"robot {i + 1}" for i in range(3)]
    return sum(text in name.lower() for name in names)


async def start_demo(sensors: int) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pl3xus_rx",
        "demo",
        "--sensors",
        str(sensors),
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        if not line:
            raise RuntimeError("the demo stopped before it served")
        if "WebSocket:" in line:
            return proc, line.split()[1]


def dropped_on_server(base: str) -> float:
    with urllib.request.urlopen(base + "metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("pl3xus_channel_dropped_total "):
                return float(line.split()[1])
    return -1.0


async def scenario(sensors: int, seconds: float, shots: Path | None) -> dict[str, Any]:
    from playwright.async_api import async_playwright, expect

    from client_sync import ClientTypeRegistry, SyncProvider
    from pl3xus_rx.demo import RobotStatus

    out: dict[str, Any] = {"sensors": sensors}
    proc, url = await start_demo(sensors)
    http = url.replace("ws://", "http://")
    try:
        registry = ClientTypeRegistry.builder().register(RobotStatus).build()
        async with SyncProvider(url, registry) as client, async_playwright() as p:
            statuses = client.components(RobotStatus)
            statuses.subscribe(lambda _: None)
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            started = time.monotonic()
            await page.goto(http + "devtools")
            await page.evaluate(EVENT_TIMING)
            await page.locator(".row[data-entity]").first.wait_for(timeout=60_000)
            out["first_rows_s"] = time.monotonic() - started
            total = sensors + 5  # the cell, 3 robots, the conveyor
            await expect(page.locator("#count")).to_have_text(str(total), timeout=120_000)
            out["all_listed_s"] = time.monotonic() - started
            if shots:
                await page.screenshot(path=str(shots / "1-all-entities.png"))

            out["fps_streaming"] = await page.evaluate(FPS, 3000)
            out["fps_scrolling"] = await page.evaluate(SCROLL_FPS, 3000)

            # filter by type: the sensor table, its fields as columns
            out["filter_ms"] = await page.evaluate(
                TIMED, "document.querySelector('#types button[data-type=\"Sensor\"]').click()"
            )
            await expect(page.locator("#head")).to_contain_text("value")
            await expect(page.locator("#shown")).to_have_text(f"{sensors} of {total} shown")
            # search by name
            out["search_ms"] = await page.evaluate(
                TIMED,
                "const s = document.getElementById('search'); s.value = 'temperature 77';"
                " s.dispatchEvent(new Event('input'))",
            )
            want = expected_matches(sensors, "temperature 77")
            await expect(page.locator("#shown")).to_have_text(f"{want} of {total} shown")
            out["search_matches"] = want
            first = page.locator(".row[data-entity]").first
            await expect(first).to_contain_text("temperature 77")
            # select: the detail pane shows one row per field
            entity = await first.get_attribute("data-entity")
            out["select_ms"] = await page.evaluate(
                TIMED, f"document.querySelector('.row[data-entity=\"{entity}\"]').click()"
            )
            await expect(page.locator("#detail h3")).to_contain_text(f"entity {entity}")
            await expect(page.locator('#detail tr[data-field="unit"]')).to_be_visible()
            if shots:
                await page.screenshot(path=str(shots / "2-sensor-search-detail.png"))

            # a robot: chart its joint angles, take control, edit its speed
            await page.fill("#search", "robot 1")
            await page.locator('#types button[data-type=""]').click()
            robot_row = page.locator(".row[data-entity]").filter(has_text="robot 1").first
            robot = int(await robot_row.get_attribute("data-entity") or "0")
            await robot_row.click()
            await page.locator('button.chartbtn[data-series="Joints.angles"]').click()
            await page.wait_for_timeout(1000)
            points_before = await page.evaluate("window.devtools.chartPoints || 0")
            await page.wait_for_timeout(2000)
            points_after = await page.evaluate("window.devtools.chartPoints || 0")
            out["chart_points_added_in_2s"] = points_after - points_before
            if points_after <= points_before:
                raise AssertionError(f"the chart did not move ({points_before} points)")
            await page.click("#take")
            await expect(page.locator("#detail-holder")).to_have_text("you", timeout=20_000)
            speed = page.locator('#detail fieldset[data-type="RobotStatus"] [data-edit="speed"]')
            await speed.fill("0.25")
            await page.locator('#detail fieldset[data-type="RobotStatus"] button.apply').click()
            answer = page.locator('#detail fieldset[data-type="RobotStatus"] .component-answer')
            await expect(answer).to_have_text("applied", timeout=20_000)
            for _ in range(200):
                if (status := statuses.get().get(robot)) is not None and status.speed == 0.25:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the edit did not reach the server's World")
            out["edit_applied"] = True
            if shots:
                await page.screenshot(path=str(shots / "3-robot-chart-control-edit.png"))

            # stay connected: sample the connection state once a second
            while time.monotonic() - started < seconds:
                state = await page.locator("#conn").text_content()
                if state != "open":
                    raise AssertionError(f"the page lost its connection: {state!r}")
                await asyncio.sleep(1)
            out["connected_s"] = time.monotonic() - started
            out["closes"] = await page.evaluate("window.devtools.closes || 0")
            out["dropped_on_server"] = dropped_on_server(http)
            events = await page.evaluate("window.__events")
            out["max_input_delay_ms"] = max((e["delay"] for e in events), default=0.0)
            out["max_event_ms"] = max((e["duration"] for e in events), default=0.0)
            out["console_errors"] = errors
            if shots:
                await page.screenshot(path=str(shots / "4-after-the-minute.png"))
            await browser.close()
    finally:
        proc.terminate()
        await proc.wait()
    if out["closes"] or out["dropped_on_server"] or errors:
        raise AssertionError(f"closes, drops or page errors: {out}")
    return out


def table(r: dict[str, Any]) -> str:
    rows = [
        ("first rows shown", f"{r['first_rows_s']:.2f} s", "≤ 2 s"),
        (f"all {r['sensors'] + 5:,} entities listed", f"{r['all_listed_s']:.2f} s", ""),
        ("frames/s while values stream in", f"{r['fps_streaming']:.0f}", "smooth (≥ 30)"),
        ("frames/s while scrolling", f"{r['fps_scrolling']:.0f}", "smooth (≥ 30)"),
        ("filter by type (input to painted frame)", f"{r['filter_ms']:.0f} ms", "≤ 200 ms"),
        ("search by name", f"{r['search_ms']:.0f} ms", "≤ 200 ms"),
        ("select an entity (detail pane)", f"{r['select_ms']:.0f} ms", "≤ 200 ms"),
        ("worst input delay (Event Timing)", f"{r['max_input_delay_ms']:.0f} ms", ""),
        ("worst event duration (Event Timing)", f"{r['max_event_ms']:.0f} ms", ""),
        ("chart points added in 2 s (10 Hz cap)", str(r["chart_points_added_in_2s"]), "> 0"),
        ("edit under control applied", "yes" if r["edit_applied"] else "no", "yes"),
        ("connected for", f"{r['connected_s']:.0f} s, {r['closes']} closes", "no close"),
        ("frames dropped by the server", f"{r['dropped_on_server']:.0f}", "0"),
    ]
    lines = ["| step | measured | goal |", "|---|---:|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="DevTools in Chromium (see docstring).")
    parser.add_argument("--sensors", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--screenshots", type=Path, default=None)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        print(f"needs Debian's chromium at {CHROMIUM}", file=sys.stderr)
        return 2
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(scenario(args.sensors, args.seconds, args.screenshots))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    text = (
        f"DevTools in headless Chromium against `pl3xus-rx demo --sensors {args.sensors}` "
        f"(20,000 sensor readings/s), {args.seconds:.0f} s, 1400x900 viewport, demo, "
        "browser and this script on the same 2 cores.\n\n" + table(result)
    )
    publish(
        "devtools_browser",
        f"python bench/devtools_browser.py --sensors {args.sensors} --seconds {args.seconds:.0f}",
        text,
        docs=not args.no_docs,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
