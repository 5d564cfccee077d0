"""The benchmarks run (tiny sizes, no timing asserted): they cannot rot unnoticed."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize(
    ("script", "args", "expect"),
    [
        ("net_fanout.py", ["--clients", "2", "--total", "2000", "--repeat", "1"], "typed"),
        ("sync_fanout.py", ["--clients", "2", "--flushes", "10", "--repeat", "1"], "| 23.0 |"),
        ("update_path.py", ["--quick"], "| update_many, trusted |"),
        (
            "flush_profile.py",
            ["--clients", "2", "--seconds", "0.3", "--sampler", "itimer"],
            "| **sum of the rows** |",
        ),
        ("client_latency.py", ["--clients", "2", "--seconds", "0.3"], "items/s"),
        ("scaleout.py", ["--clients", "4", "--seconds", "0.5", "--runs", "1"], "added by the hop"),
        ("command_path.py", ["--reps", "2", "--quick", "--only-current"], "| mutate | 100 |"),
        ("instrument_cost.py", ["--rounds", "3", "--clients", "2"], "| on / off |"),
        ("staleness.py", ["--quick"], "| v1 + stall |"),
        ("persist.py", ["--quick"], "| bytes per value: file / wire |"),
        ("recording.py", ["--quick"], "| client's view = `state_at` (checked) | 3/3 |"),
        ("history.py", ["--quick"], "| keeping 1,000 updates per flush"),
        (
            "abuse.py",
            ["--watchers", "2", "--seconds", "0.5", "--attacks", "poison,decoder bomb"],
            "| decoder bomb |",
        ),
    ],
)
def test_benchmark_runs(script: str, args: list[str], expect: str) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--no-docs"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert expect in result.stdout


def test_socketio_side_by_side_benchmark_runs() -> None:
    for module in ("socketio", "aiohttp"):
        pytest.importorskip(module, reason="python-socketio and aiohttp (the nicegui extra)")
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / "socketio_side_by_side.py"),
            *("--quick", "--paths", "raw,fast,sio", "--no-docs"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| python-socketio, msgpack (aiohttp) |" in result.stdout
    assert "| 23.0 |" in result.stdout


@pytest.mark.skipif(
    not os.path.exists("/usr/bin/chromium") and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (.ci/run installs it)",
)
def test_web_client_benchmark_runs() -> None:
    tiny = ["--entities", "100", "--updates", "10", "--frames", "5", "--rounds", "1"]
    result = subprocess.run(
        [sys.executable, str(BENCH / "web_client.py"), *tiny, "--watched", "5", "--no-docs"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| msgpack | 5 |" in result.stdout and "| json | 5 |" in result.stdout


@pytest.mark.skipif(
    importlib.util.find_spec("nicegui") is None,
    reason="the nicegui extra is not installed (.ci/run installs it)",
)
@pytest.mark.skipif(
    not os.path.exists("/usr/bin/chromium") and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (.ci/run installs it)",
)
def test_dashboards_nicegui_benchmark_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "dashboards_nicegui.py"), "--quick", "--no-docs"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| **NiceGUI process CPU** |" in result.stdout
    assert "| Chromium ≥ 20 frames/s |" in result.stdout
