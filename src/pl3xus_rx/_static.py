"""A folder of page files served under one path prefix (``pl3xus-rx demo --serve DIR``).

The files are read once, when the routes are added: the regular files directly inside the
folder whose names end in an allowed extension, each at ``PREFIX/<name>`` with its
``Content-Type``, and ``index.html`` at ``PREFIX/`` too. Nothing else is reachable: no
subfolder, no symlink that leaves the folder, no dotfile, no name that would need escaping
in a URL, no file added later. Every answer carries :data:`APP_CSP` (the page's scripts,
styles and WebSocket from this origin only) besides the listener's usual page headers, and
the listener's ``Host`` check applies as on every route.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from ._http import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from .net import Network

__all__ = ["APP_CSP", "CONTENT_TYPES", "MAX_FILE_BYTES", "serve_directory"]

logger = logging.getLogger(__name__)

CONTENT_TYPES: Final[Mapping[str, str]] = MappingProxyType(
    {
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".d.ts": "application/typescript; charset=utf-8",
        ".json": "application/json",
        ".svg": "image/svg+xml",
        ".png": "image/png",
    }
)
"""The extensions served, with their ``Content-Type`` (any other file is left out)."""

APP_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
"""The ``Content-Security-Policy`` of every served file: scripts, styles, images and the
WebSocket from this origin only (no inline script or style), framed by nobody."""

MAX_FILE_BYTES: Final = 8 * 1024 * 1024
"""A larger file is left out (with a warning): these are pages, not downloads."""

_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


def _content_type(name: str) -> str | None:
    # (".d.ts" before ".ts" would matter if ".ts" were served: the longest suffix wins)
    for ext in sorted(CONTENT_TYPES, key=len, reverse=True):
        if name.endswith(ext) and len(name) > len(ext):
            return CONTENT_TYPES[ext]
    return None


def _files(folder: Path) -> dict[str, tuple[bytes, str]]:
    """The servable files of ``folder``: name -> (content, content type)."""
    found: dict[str, tuple[bytes, str]] = {}
    for path in sorted(folder.iterdir()):
        name = path.name
        content_type = _content_type(name)
        if content_type is None or not _NAME.match(name):
            logger.debug("not serving %s: not an allowed name or extension", path)
            continue
        try:
            real = path.resolve(strict=True)
        except OSError:
            continue  # (a dangling symlink)
        if real.parent != folder or not real.is_file():
            logger.warning("not serving %s: not a regular file directly inside %s", path, folder)
            continue
        body = real.read_bytes()
        if len(body) > MAX_FILE_BYTES:
            logger.warning("not serving %s: larger than %d bytes", path, MAX_FILE_BYTES)
            continue
        found[name] = (body, content_type)
    return found


def serve_directory(net: Network, directory: str | Path, *, prefix: str = "/app") -> list[str]:
    """Serve the page files of ``directory`` (read now) at ``prefix/<name>``, with
    ``prefix/`` answering ``index.html`` and ``prefix`` redirecting to ``prefix/``.

    Args:
        net: The network whose listener serves them (``server.net``).
        directory: The folder.
        prefix: The path they are served under (no trailing slash).

    Returns:
        The paths served.

    Raises:
        ValueError: ``directory`` is not a folder, or holds no file that can be served.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise ValueError(f"--serve {directory}: not a directory")
    folder = folder.resolve()
    files = _files(folder)
    if not files:
        allowed = " ".join(CONTENT_TYPES)
        raise ValueError(f"--serve {directory}: no file to serve (served extensions: {allowed})")

    def answer(body: bytes, content_type: str) -> HttpResponse:
        return HttpResponse(200, body, content_type, {"Content-Security-Policy": APP_CSP})

    def route(name: str) -> None:
        body, content_type = files[name]
        net.add_route(f"{prefix}/{name}", lambda request: answer(body, content_type))

    for name in files:
        route(name)
    paths = [f"{prefix}/{name}" for name in files]
    if "index.html" in files:
        body, content_type = files["index.html"]
        net.add_route(f"{prefix}/", lambda request: answer(body, content_type))

        def redirect(request: HttpRequest) -> HttpResponse:
            # (relative imports in the page resolve against the folder, not its parent)
            return HttpResponse(308, "", headers={"Location": f"{prefix}/"})

        net.add_route(prefix, redirect)
        paths[:0] = [f"{prefix}/", prefix]
    logger.info("serving %d files of %s under %s/", len(files), folder, prefix)
    return paths
