"""DevTools on a server: the page and its icon as HTTP routes, and its queries
(``pl3xus.tree``, ``pl3xus.schemas``, ``pl3xus.connections``), all behind the same rule
(``admin``: with an authenticator, the ``admin`` role)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .._http import HttpRequest, HttpResponse, page_csp
from ..net import Network
from ..security import ADMIN_ROLE, Identity
from ..sync import Authorized, ComponentRegistry, Denied, MutationContext, SyncEngine
from ..world import EntityId, World
from . import (
    DEVTOOLS_PATH,
    DEVTOOLS_QUERIES,
    FAVICON,
    FAVICON_PATH,
    CallSchema,
    ComponentSchemas,
    ComponentSchemasQuery,
    ConnectionInfo,
    Connections,
    ConnectionsQuery,
    EntityTree,
    EntityTreeQuery,
    SubscriptionRow,
    page,
)

if TYPE_CHECKING:
    from ..commands import Commands

__all__ = ["install"]

_HTML = page()
# the page's own inline script and style run (by hash), and the browser client it imports
# from this origin (/pl3xus.js); its WebSocket goes back to this origin, nothing else loads,
# and nobody may frame it (no clickjacking "take control")
_PAGE = HttpResponse(
    200,
    _HTML,
    "text/html; charset=utf-8",
    {
        "Content-Security-Policy": page_csp(_HTML, connect=True, scripts_from_self=True),
        "Cache-Control": "no-store",
    },
)


def install(
    *,
    net: Network,
    engine: SyncEngine,
    registry: ComponentRegistry,
    query: Callable[[type[Any]], Any],
    sees: Callable[[Identity, EntityId], bool],
    admin: Callable[[Identity], bool],
    remote: Callable[[], Iterable[tuple[int, Identity]]],
    commands: Commands,
) -> None:
    """Serve DevTools on ``net`` and register its queries with ``query`` (a server's
    ``query`` builder). ``admin(identity)`` says who may use it, ``sees`` what an identity
    sees, ``remote()`` the gateways' clients (for the connections view), ``commands`` the
    request and query types its panel offers (read when asked: registered ones show)."""

    async def serve_page(request: HttpRequest) -> HttpResponse:
        found = await net.identify(request)
        if isinstance(found, HttpResponse):
            return found
        if not admin(found):
            return HttpResponse(403, f"DevTools needs the {ADMIN_ROLE!r} role\n")
        return _PAGE

    net.add_route(DEVTOOLS_PATH, serve_page)
    icon = HttpResponse(200, FAVICON, "image/svg+xml", {"Cache-Control": "max-age=86400"})

    async def serve_icon(request: HttpRequest) -> HttpResponse:
        return icon

    net.add_route(FAVICON_PATH, serve_icon)

    def admins_only(world: World, ctx: MutationContext) -> Authorized | Denied:
        if admin(ctx.identity):
            return Authorized()
        return Denied(f"needs the {ADMIN_ROLE!r} role")

    def tree(world: World, ctx: MutationContext, query: EntityTreeQuery) -> EntityTree:
        # Only entities the identity sees a synced component of; a parent it cannot
        # see is left out (the child shows as a root).
        visible: dict[EntityId, bool] = {}

        def seen(entity: EntityId) -> bool:
            known = visible.get(entity)
            if known is None:
                known = visible[entity] = sees(ctx.identity, entity)
            return known

        parents = {}
        for entity in world.entities():
            parent = world.parent(entity)
            if parent is not None and seen(entity) and seen(parent):
                parents[int(entity)] = int(parent)
        return EntityTree(parents=parents)

    query(EntityTreeQuery).name("pl3xus.tree").returns(EntityTree).with_policy(
        admins_only
    ).register(tree)

    def schemas(world: World, query: ComponentSchemasQuery) -> ComponentSchemas:
        regs = list(registry)
        return ComponentSchemas(
            schemas={reg.name: reg.model.model_json_schema(mode="validation") for reg in regs},
            writable=[reg.name for reg in regs if reg.mutable],
            targeted=[reg.name for reg in regs if reg.mutable and reg.targeted],
            requests=[
                CallSchema(
                    name=r.name,
                    params=r.model.model_json_schema(mode="validation"),
                    targeted=r.targeted,
                )
                for r in commands.requests.values()
            ],
            queries=[
                CallSchema(name=q.name, params=q.model.model_json_schema(mode="validation"))
                for q in commands.queries.values()
                if q.name not in DEVTOOLS_QUERIES
            ],
        )

    query(ComponentSchemasQuery).name("pl3xus.schemas").returns(ComponentSchemas).with_policy(
        admins_only
    ).register(schemas)

    def connections(world: World, query: ConnectionsQuery) -> Connections:
        return Connections(connections=_rows(net, engine, remote))

    query(ConnectionsQuery).name("pl3xus.connections").returns(Connections).with_policy(
        admins_only
    ).register(connections)


def _rows(
    net: Network, engine: SyncEngine, remote: Callable[[], Iterable[tuple[int, Identity]]]
) -> list[ConnectionInfo]:
    rows = []
    for cid in net.connections:
        identity = net.identity_of(cid)
        counters = dataclasses.asdict(net.connection_statistics(cid))
        del counters["subprotocol"]
        subs = [SubscriptionRow(**dataclasses.asdict(sub)) for sub in engine.subscriptions_of(cid)]
        rows.append(
            ConnectionInfo(
                **counters,
                name=identity.name,
                roles=sorted(identity.roles),
                anonymous=identity.anonymous,
                encoding="msgpack" if net.is_binary(cid) else "json",
                subscriptions=subs,
            )
        )
    for connection, identity in remote():
        # a gateway's client: its socket, subscriptions and queue are the gateway's
        rows.append(
            ConnectionInfo(
                id=connection,
                name=identity.name,
                roles=sorted(identity.roles),
                anonymous=identity.anonymous,
                remote=f"via gateway {connection >> 32}",
                encoding="msgpack",
            )
        )
    return rows
