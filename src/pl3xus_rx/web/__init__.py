"""The browser client, shipped with the package and served by every ``SyncServer``.

``/pl3xus.js`` is the client core as one ES module (its TypeScript source is ``js/`` in the
repository; ``npm run build`` there writes the files of this folder, and CI checks they equal a
fresh build). ``/pl3xus-react.js`` holds the optional React hooks, ``/pl3xus.d.ts`` and
``/pl3xus-react.d.ts`` their types. They are public code, the same for everyone: served to any
origin (``Access-Control-Allow-Origin: *``), with the content's hash as ``ETag``, and under
``/pl3xus.<hash>.js`` as well, a name that never changes content (cached for a year).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources

from .._http import HttpRequest, HttpResponse

__all__ = ["CLIENT_PATH", "ClientAssets"]

logger = logging.getLogger(__name__)

CLIENT_PATH = "/pl3xus.js"
"""Where a server serves the browser client's core module."""

_FILES = {
    "pl3xus.js": "text/javascript; charset=utf-8",
    "pl3xus-react.js": "text/javascript; charset=utf-8",
    "pl3xus.d.ts": "application/typescript; charset=utf-8",
    "pl3xus-react.d.ts": "application/typescript; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    content_type: str
    etag: str


class ClientAssets:
    """The shipped client files, read once, answered by path."""

    def __init__(self) -> None:
        self._assets: dict[str, _Asset] = {}
        self._immutable: set[str] = set()
        folder = resources.files(__name__)
        for name, content_type in _FILES.items():
            try:
                body = folder.joinpath(name).read_bytes()
            except (FileNotFoundError, OSError):
                if name == "pl3xus.js":
                    logger.warning("the browser client %s is missing from the package", name)
                continue
            digest = hashlib.sha256(body).hexdigest()[:16]
            asset = _Asset(body, content_type, f'"{digest}"')
            self._assets[f"/{name}"] = asset
            stem, _, ext = name.partition(".")
            hashed = f"/{stem}.{digest}.{ext}"  # (immutable: the name is the content)
            self._assets[hashed] = asset
            self._immutable.add(hashed)

    @property
    def paths(self) -> list[str]:
        """Every path served."""
        return list(self._assets)

    def hashed_path(self, path: str = CLIENT_PATH) -> str | None:
        """The content-hashed path of ``path`` (``/pl3xus.<hash>.js``), or None if absent."""
        asset = self._assets.get(path)
        if asset is None:
            return None
        stem, _, ext = path.partition(".")
        return f"{stem}.{asset.etag.strip(chr(34))}.{ext}"

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
