"""The browser DevTools page that every ``SyncServer`` serves at ``/devtools``.

A single static page (no build step, nothing fetched from outside) that speaks the JSON
subprotocol: live entities and components, edits as mutations with the server's answer,
take / release control, the entity tree, subscriptions, update rates, recent commands and a
raw message log.
"""

from __future__ import annotations

from importlib import resources

from pydantic import BaseModel

__all__ = ["DEVTOOLS_PATH", "FAVICON", "FAVICON_PATH", "EntityTree", "EntityTreeQuery", "page"]

DEVTOOLS_PATH = "/devtools"
FAVICON_PATH = "/favicon.ico"
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<circle cx="8" cy="8" r="7" fill="#1565c0"/><circle cx="8" cy="8" r="3" fill="#fff"/></svg>'
)
"""DevTools' icon (an SVG, served at ``/favicon.ico`` so that browsers find it)."""


class EntityTreeQuery(BaseModel):
    """Parameters of the built-in ``pl3xus.tree`` query (none)."""


class EntityTree(BaseModel):
    """Every entity's parent (entities without one are absent)."""

    parents: dict[int, int]


def page() -> str:
    """The DevTools page's HTML."""
    return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
