"""Where the benchmarks put their tables: bench/results/NAME.md and a section of
docs/performance.md between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``."""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def publish(name: str, command: str, text: str, *, docs: bool) -> None:
    """Write the table to bench/results/ and, if ``docs``, into docs/performance.md."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(f"# {name}, {stamp}\n\n{text}\n")
    print(text)
    if docs:
        doc = ROOT / "docs" / "performance.md"
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        before, rest = doc.read_text().split(start, 1)
        _, after = rest.split(end, 1)
        doc.write_text(f"{before}{start}\nRun {stamp}, `{command}`.\n\n{text}\n{end}{after}")
