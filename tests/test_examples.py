"""The chat examples work against each other, as separate processes."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import UNIT

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

Procs = list[subprocess.Popen[str]]


@pytest.fixture
def procs() -> Iterator[Procs]:
    """The processes a test starts: whatever is still running when it ends (a failed
    assertion, a timeout) is killed, and every one is reaped with its pipes closed."""
    started: Procs = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def start_server(procs: Procs) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "chat_server.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs.append(proc)
    try:
        line = read_until(proc, "chat server on ws://")  # "... ws://127.0.0.1:PORT/ ..."
    except AssertionError as exc:
        proc.kill()
        raise AssertionError(f"{exc}; stderr: {proc.communicate()[1][-2000:]!r}") from None
    return proc, line.splitlines()[-1].split()[3]


def client(procs: Procs, url: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "chat_client.py"), url, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs.append(proc)
    return proc


def read_until(proc: subprocess.Popen[str], prefix: str, units: float = 30.0) -> str:
    """What ``proc`` printed up to and including its first line starting with ``prefix``.

    It reads the pipe a byte at a time and never past that line: ``communicate()`` reads
    the pipe itself, not ``proc.stdout``'s buffer, so whatever a buffered ``readline()``
    had read beyond the line (a client's welcome notice, printed just after "connected to")
    would never reach it.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + units * UNIT
    seen = b""
    line = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no line starting {prefix!r} in time: {seen!r}")
        byte = os.read(fd, 1)
        if not byte:
            raise AssertionError(f"exited before a line starting {prefix!r}: {seen!r}")
        seen += byte
        line += byte
        if byte == b"\n":
            if line.startswith(prefix.encode()):
                return seen.decode()
            line = b""


def until_connected(proc: subprocess.Popen[str]) -> str:
    """The lines a chat client printed up to and including "connected to"."""
    return read_until(proc, "connected to")


def test_chat_server_and_clients(procs: Procs) -> None:
    server, url = start_server(procs)
    try:
        listener = client(procs, url, "--name", "bob", "--expect", "3")
        # wait until bob is connected before ann speaks
        early = until_connected(listener)
        talker = client(procs, url, "--name", "ann", "--say", "hello bob")
        out, err = listener.communicate(timeout=30 * UNIT)
        out = early + out
        assert listener.returncode == 0, err
        assert "* welcome, bob; 0 other(s) here" in out
        assert "* ann joined" in out and "<ann> hello bob" in out
        # the README's line: bob says hello and leaves after one thing arrives (the welcome)
        quick = client(procs, url, "--name", "cy", "--say", "hi all", "--expect", "1")
        out, err = quick.communicate(timeout=30 * UNIT)
        assert quick.returncode == 0 and "* welcome, cy;" in out, err
        # an interactive client leaves at once on Ctrl-C, quietly
        chatty = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "chat_client.py"), url, "--name", "dee"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(chatty)
        until_connected(chatty)
        chatty.send_signal(signal.SIGINT)
        _, err = chatty.communicate(timeout=10 * UNIT)
        assert chatty.returncode == 130 and "Traceback" not in err, err
        talker.kill()
        talker.communicate(timeout=10 * UNIT)
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30 * UNIT)
    assert server.returncode == 0, err
    assert "shutting down" in out and "Traceback" not in err


def test_server_exits_cleanly_on_sigterm(procs: Procs) -> None:
    server, _ = start_server(procs)
    time.sleep(0.1)
    server.send_signal(signal.SIGTERM)
    _, err = server.communicate(timeout=30 * UNIT)
    assert server.returncode == 0 and "Traceback" not in err


def test_robot_cell_and_watch_cell(procs: Procs) -> None:
    cell = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "robot_cell.py"), "--port", "0", "--sensors", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs.append(cell)
    assert cell.stdout is not None
    try:
        cell.stdout.readline()
        url = cell.stdout.readline().split()[1]
        watch = subprocess.run(
            [sys.executable, str(EXAMPLES / "watch_cell.py"), url, "--seconds", "1", "--jog"],
            capture_output=True,
            text=True,
            timeout=60 * UNIT,
        )
        assert watch.returncode == 0, watch.stderr
        assert "jogged to x=25.0" in watch.stdout
        assert "robot 1" in watch.stdout and "5 sensors live; stale=False" in watch.stdout
    finally:
        cell.send_signal(signal.SIGINT)
        _, err = cell.communicate(timeout=30 * UNIT)
    assert cell.returncode == 0 and "Traceback" not in err


def test_sensor_wall_shows_conflation_and_rate_limits() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "sensor_wall.py"), "--sensors", "200", "--seconds", "1.5"],
        capture_output=True,
        text=True,
        timeout=120 * UNIT,
    )
    assert result.returncode == 0, result.stderr
    numbers = {}
    for line in result.stdout.splitlines():
        words = line.split()
        if line.startswith("server changed"):
            numbers["changed"] = int(words[2].replace(",", ""))
        elif "client received" in line:
            numbers[words[0]] = int(words[3].replace(",", ""))
    assert 0 < numbers["capped_2hz"] < numbers["plain"] < numbers["changed"]
    assert 0 < numbers["deadband_1.0"] < numbers["plain"]


def test_examples_say_plainly_when_the_server_is_not_there() -> None:
    for script in ("watch_cell.py", "robot_dashboard.py"):
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / script), "ws://127.0.0.1:1/"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 1, (script, result.stderr[-500:])
        text = result.stdout + result.stderr
        assert "cannot connect to ws://127.0.0.1:1/" in text, script
        assert "Traceback" not in text and "AttributeError" not in text, script
