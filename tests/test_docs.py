"""Every Python block in the docs is a complete program; run each one."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [
    "docs/websocket-patterns.md",
    "docs/sync.md",
    "docs/client.md",
    "docs/commands.md",
    "docs/getting-started.md",
    "docs/security.md",
    "docs/scaling.md",
    "docs/persistence.md",
    "docs/recording.md",
    "docs/web.md",
    "README.md",
]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


FILE = "# file: "  # a block that is a file of a multi-process walk-through (run below)


def blocks() -> list[tuple[str, int, str]]:
    found = []
    for doc in DOCS:
        text = (ROOT / doc).read_text()
        for i, match in enumerate(BLOCK.finditer(text)):
            if not match.group(1).startswith(FILE):
                found.append((doc, i, match.group(1)))
    return found


def files_of(doc: str) -> dict[str, str]:
    """The ``# file: NAME`` blocks of ``doc``, by name."""
    found = {}
    for match in BLOCK.finditer((ROOT / doc).read_text()):
        code = match.group(1)
        if code.startswith(FILE):
            found[code.splitlines()[0][len(FILE) :].strip()] = code
    return found


@pytest.mark.parametrize(
    ("doc", "index", "code"), blocks(), ids=[f"{d}#{i}" for d, i, _ in blocks()]
)
def test_doc_block_runs(doc: str, index: int, code: str, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"{doc} block {index} failed:\n{result.stderr}"
    assert "Traceback" not in result.stderr


def test_the_two_process_walk_through_runs_as_it_says(tmp_path: Path) -> None:
    import signal

    files = files_of("docs/getting-started.md")
    assert set(files) == {"oven_server.py", "oven_client.py"}
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    # the client alone: one clear line, no traceback
    alone = subprocess.run(
        [sys.executable, "oven_client.py", "ws://127.0.0.1:9/"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert alone.returncode == 1 and "Traceback" not in alone.stderr
    assert alone.stderr.startswith("cannot reach the server:"), alone.stderr
    assert "is oven_server.py running?" in alone.stderr

    server = subprocess.Popen(
        [sys.executable, "oven_server.py", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = None
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert first.startswith("serving ws://127.0.0.1:"), first
        url = first.split()[1]
        client = subprocess.Popen(
            [sys.executable, "oven_client.py", url],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        assert client.stdout.readline() == "{}\n"  # the signal's first value: nothing yet
        readings = [client.stdout.readline() for _ in range(5)]
        values = [float(line.split(":")[1].strip(" }\n")) for line in readings if line]
        assert len(values) == 5 and len(set(values)) > 1  # live: the temperature moves
        client.send_signal(signal.SIGINT)
        out, err = client.communicate(timeout=30)
        assert "client stopped" in out and "Traceback" not in err, err
    finally:
        if client is not None and client.poll() is None:
            client.kill()
        server.send_signal(signal.SIGINT)
        try:
            out, err = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # never leave it behind for the next tests
            server.kill()
            out, err = server.communicate()
            raise
    assert "server stopped" in out and "Traceback" not in err, err


EXTRAS_DOCS = {"docs/dashboards.md"}
"""Docs whose blocks need an optional extra: checked by their own test below (with the
extras installed, top-level ``await`` allowed)."""


def every_block() -> list[tuple[str, int, str]]:
    """Every ``python`` block of every doc (docs/*.md, listed in DOCS or not, and README.md),
    the ``# file:`` blocks of the walk-throughs included: ``(doc, index, code)``; the blocks
    of :data:`EXTRAS_DOCS` have a test of their own."""
    docs = sorted(
        doc
        for doc in (p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))
        if doc not in EXTRAS_DOCS
    )
    found = []
    for doc in [*docs, "README.md"]:
        for i, match in enumerate(BLOCK.finditer((ROOT / doc).read_text())):
            found.append((doc, i, match.group(1)))
    return found


def test_every_doc_block_type_checks_under_mypy_strict(tmp_path: Path) -> None:
    """A reader who copies a block and runs ``mypy --strict`` on it gets no error. Each block
    is a module of its own (named after its doc and index), all checked in one mypy run from
    ``tmp_path``, so that the repository's own mypy configuration (its pydantic plugin) does
    not apply: a user's plain ``mypy --strict`` is the judge. No block is skipped: there is
    no fragment marker, every block is a whole program."""
    found = every_block()
    assert {doc for doc, _, _ in found} >= set(DOCS)
    files = []
    for doc, index, code in found:
        name = re.sub(r"\W", "_", Path(doc).stem).lower() + f"_block_{index}.py"
        (tmp_path / name).write_text(code)
        files.append(name)
    assert len(set(files)) == len(found)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *files],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"mypy --strict on {len(files)} doc blocks:\n{output}"


def test_dashboard_blocks_type_check_under_mypy_strict(tmp_path: Path) -> None:
    """docs/dashboards.md's blocks are apps (``ui.run``, top-level ``await`` in a notebook):
    not run here (the NiceGUI and notebook tests run the real ones), but each type-checks
    under a user's plain ``mypy --strict`` when the extras are installed."""
    pytest.importorskip("nicegui")
    pytest.importorskip("anywidget")
    text = (ROOT / "docs" / "dashboards.md").read_text()
    files = []
    for index, match in enumerate(BLOCK.finditer(text)):
        name = f"dashboards_block_{index}.py"
        (tmp_path / name).write_text(match.group(1))
        files.append(name)
    assert len(files) >= 2
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--disable-error-code=top-level-await",  # (a notebook's cells may await)
            *files,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"mypy --strict on {len(files)} dashboard blocks:\n{output}"
