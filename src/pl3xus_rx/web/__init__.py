"""The browser client, shipped with the package and served by every ``SyncServer``.

``/pl3xus.js`` is the client core as one ES module (its TypeScript source is ``js/`` in the
repository; ``npm run build`` there writes the files of this folder, and CI checks they equal a
fresh build). ``/pl3xus-react.js`` holds the optional React hooks, ``/pl3xus.d.ts`` and
``/pl3xus-react.d.ts`` their types. They are public code, the same for everyone: served to any
origin (``Access-Control-Allow-Origin: *``), with the content's hash as ``ETag``, and under
``/pl3xus.<hash>.js`` as well, a name that never changes content (cached for a year).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from importlib import resources

from .._http import HttpRequest, HttpResponse
from .._static import CONTENT_TYPES

__all__ = ["CLIENT_PATH", "ClientAssets"]

logger = logging.getLogger(__name__)

CLIENT_PATH = "/pl3xus.js"
"""Where a server serves the browser client's core module."""

_FILES = ("pl3xus.js", "pl3xus-react.js", "pl3xus.d.ts", "pl3xus-react.d.ts")


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    content_type: str
    etag: str
    hashed: str  # its immutable path: /pl3xus.<hash>.js


@functools.cache
def _load() -> dict[str, _Asset]:
    """The shipped files by plain path, read once per process (every server serves the same)."""
    assets: dict[str, _Asset] = {}
    folder = resources.files(__name__)
    for name in _FILES:
        try:
            body = folder.joinpath(name).read_bytes()
        except OSError:
            if name == "pl3xus.js":
                logger.warning("the browser client %s is missing from the package", name)
            continue
        digest = hashlib.sha256(body).hexdigest()[:16]
        stem, _, ext = name.partition(".")
        content_type = CONTENT_TYPES[".d.ts" if ext == "d.ts" else f".{ext}"]
        assets[f"/{name}"] = _Asset(body, content_type, f'"{digest}"', f"/{stem}.{digest}.{ext}")
    return assets


class ClientAssets:
    """The shipped client files, answered by path: each at its plain path and at its
    immutable content-hashed one."""

    def __init__(self) -> None:
        plain = _load()
        self._assets: dict[str, _Asset] = {**plain, **{a.hashed: a for a in plain.values()}}
        self._immutable = {a.hashed for a in plain.values()}

    @property
    def paths(self) -> list[str]:
        """Every path served."""
        return list(self._assets)

    def hashed_path(self, path: str = CLIENT_PATH) -> str | None:
        """The content-hashed path of ``path`` (``/pl3xus.<hash>.js``), or None if absent."""
        asset = self._assets.get(path)
        return None if asset is None else asset.hashed

    def serve(self, request: HttpRequest) -> HttpResponse:
        """The file at ``request.path``: 200, or 304 when the browser holds this content."""
        asset = self._assets[request.path]
        immutable = request.path in self._immutable
        headers = {
            "Access-Control-Allow-Origin": "*",
            "Cache-Control": ("public, max-age=31536000, immutable" if immutable else "no-cache"),
            "ETag": asset.etag,
            "Cross-Origin-Resource-Policy": "cross-origin",
        }
        if _matches(request.headers.get("if-none-match"), asset.etag):
            return HttpResponse(304, b"", asset.content_type, headers)
        return HttpResponse(200, asset.body, asset.content_type, headers)


def _matches(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (a list, weak tags, or ``*``)."""
    if not header:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag in tags
