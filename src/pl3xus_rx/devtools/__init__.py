"""The browser DevTools page that every ``SyncServer`` serves at ``/devtools``.

A single static page (no build step, nothing fetched from outside) that speaks the JSON
subprotocol, made for tens of thousands of entities: a type filter and search, a virtually
scrolled table (fields as columns), a detail pane with typed editors (from the
``pl3xus.schemas`` query) and the server's answers, take / release control, a live chart of
any numeric field, a form for each of the server's requests and queries (typed the same
way; a targeted request goes to the selected entity) and its answer, the entity tree, the
connections (``pl3xus.connections``), server notifications, recent commands and a raw
message log. Its subscriptions are capped at 10 Hz per entity.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from pydantic import BaseModel

__all__ = [
    "DEVTOOLS_PATH",
    "DEVTOOLS_QUERIES",
    "FAVICON",
    "FAVICON_PATH",
    "CallSchema",
    "ComponentSchemas",
    "ComponentSchemasQuery",
    "ConnectionInfo",
    "Connections",
    "ConnectionsQuery",
    "EntityTree",
    "EntityTreeQuery",
    "SubscriptionRow",
    "page",
]

DEVTOOLS_PATH = "/devtools"
FAVICON_PATH = "/favicon.ico"
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<circle cx="8" cy="8" r="7" fill="#1565c0"/><circle cx="8" cy="8" r="3" fill="#fff"/></svg>'
)
"""DevTools' icon (an SVG, served at ``/favicon.ico`` so that browsers find it)."""
DEVTOOLS_QUERIES = ("pl3xus.tree", "pl3xus.schemas", "pl3xus.connections")
"""DevTools' own queries (left out of the requests and queries its panel offers)."""


class EntityTreeQuery(BaseModel):
    """Parameters of the built-in ``pl3xus.tree`` query (none)."""


class EntityTree(BaseModel):
    """Every entity's parent (entities without one are absent)."""

    parents: dict[int, int]


class ComponentSchemasQuery(BaseModel):
    """Parameters of the built-in ``pl3xus.schemas`` query (none)."""


class CallSchema(BaseModel):
    """A request or query type of the server, for DevTools' forms.

    Attributes:
        name: Its wire name.
        params: The JSON schema (pydantic's, validation mode) of its payload (a request's)
            or parameters (a query's).
        targeted: A request sent on an entity (a query never is).
    """

    name: str
    params: dict[str, Any]
    targeted: bool = False


class ComponentSchemas(BaseModel):
    """Every synced component type's JSON schema (pydantic's, validation mode), by wire
    name, and which types clients may write: what DevTools builds its typed editors from;
    and the server's request and query types, for its request panel.

    Attributes:
        schemas: Wire name -> JSON schema.
        writable: The types clients may mutate (under their policies).
        targeted: Of those, the ones whose mutations pass an entity policy (by default:
            the client must hold control of the entity).
        requests: Every registered request type, in registration order.
        queries: Every registered query type but DevTools' own (:data:`DEVTOOLS_QUERIES`).
    """

    schemas: dict[str, dict[str, Any]]
    writable: list[str] = []
    targeted: list[str] = []
    requests: list[CallSchema] = []
    queries: list[CallSchema] = []


class ConnectionsQuery(BaseModel):
    """Parameters of the built-in ``pl3xus.connections`` query (none)."""


class SubscriptionRow(BaseModel):
    """One subscription of a connection."""

    id: int
    component: str
    entity: int | None = None
    max_rate_hz: float | None = None
    deadband: float | None = None
    snapshot_under_way: bool = False


class ConnectionInfo(BaseModel):
    """One live connection: who, from where, what it watches and how far behind it is."""

    id: int
    name: str
    roles: list[str]
    anonymous: bool
    remote: str
    encoding: str
    subscriptions: list[SubscriptionRow] = []
    # the counters of its socket (``ConnectionStatistics``); 0 for a gateway's client,
    # whose socket is the gateway's
    queue_depth: int = 0
    queued_bytes: int = 0
    max_queue_depth: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    dropped: int = 0
    bad_frames: int = 0
    rate_limited: int = 0


class Connections(BaseModel):
    """Every live connection (the built-in ``pl3xus.connections`` query, admins only)."""

    connections: list[ConnectionInfo]


def page() -> str:
    """The DevTools page's HTML."""
    return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
