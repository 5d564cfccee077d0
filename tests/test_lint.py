"""The packages stay `mypy --strict` and `ruff` clean (configured in pyproject.toml)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_clean() -> None:
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_clean() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_examples_are_mypy_strict_clean(tmp_path: Path) -> None:
    """As a user's mypy sees them: from outside the repository (none of its config). The
    examples of an optional extra (nicegui) are checked when the extra is installed."""
    import importlib.util

    optional = {"nicegui_hmi.py": "nicegui"}
    examples = sorted(
        str(p)
        for p in (ROOT / "examples").glob("*.py")
        if p.name not in optional or importlib.util.find_spec(optional[p.name]) is not None
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *examples],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_example_type_checks_without_the_pydantic_plugin(tmp_path: Path) -> None:
    """A user's mypy may not load pydantic's plugin: settings must still declare defaults
    that mypy sees (``Field(default=...)``), so README's example checks clean as it is."""
    import re

    block = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[0]
    example = tmp_path / "readme_example.py"
    example.write_text(block)
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\nfollow_imports = silent\n")
    result = run("mypy", "--config-file", str(config), str(example))
    assert result.returncode == 0, result.stdout + result.stderr


USER_PROGRAM = """
from pydantic import BaseModel

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import SyncServer


class Pose(BaseModel):
    x: float = 0.0


server = SyncServer()
server.sync_component(Pose)
registry = ClientTypeRegistry.builder().register(Pose).build()
sync = SyncProvider("ws://127.0.0.1:8080/", registry)
poses = sync.components(Pose)
"""


def test_a_users_program_type_checks_where_the_package_was_installed(tmp_path: Path) -> None:
    """After the README's ``pip install -e``, a program outside the repository finds both
    packages with ``mypy --strict`` (the editable install is a plain path, not an import
    hook a type checker cannot follow), and nothing inside them is reported."""
    program = tmp_path / "user_program.py"
    program.write_text(USER_PROGRAM)
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(program)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
