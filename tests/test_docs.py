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
    "README.md",
]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def blocks() -> list[tuple[str, int, str]]:
    found = []
    for doc in DOCS:
        text = (ROOT / doc).read_text()
        for i, match in enumerate(BLOCK.finditer(text)):
            found.append((doc, i, match.group(1)))
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
