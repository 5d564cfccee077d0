"""What the browser tests share: Debian's Chromium, how it is started, and the rule that a
page reaches only loopback addresses."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (.ci/run installs it)",
)
"""Skips a test without Chromium, except under CI (which installs it: there it fails)."""


async def loopback_only(route: Any) -> None:
    """A Playwright route handler: requests to 127.0.0.1 / localhost go on, others abort."""
    if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
        await route.continue_()
    else:
        await route.abort()
