"""The plain HTTP side of a listener's port: ``/healthz``, the routes the layers above add
(DevTools, ``/metrics``), a landing page at ``/`` that links them, and 404 for the rest."""

from __future__ import annotations

import html
import inspect
import json
import logging
from collections.abc import Callable

from .._http import HEALTH_PATH, HttpRequest, HttpResponse, RouteHandler, page_csp
from ..exceptions import DuplicateRegistration
from ..protocol import SUBPROTOCOLS
from ._health import HealthChecks, check_body

__all__ = ["Routes"]

logger = logging.getLogger("pl3xus_rx.net")

# what the landing page says of the paths it knows (others are listed by path alone)
_KNOWN = {
    "/devtools": "DevTools: entities, components, connections, live (admin)",
    "/metrics": "Prometheus metrics (admin)",
    HEALTH_PATH: "health, as JSON (200 while running and healthy, else 503)",
    "/pl3xus.js": "the browser client, an ES module (docs/web.md)",
}


class Routes:
    """Path -> handler, and the health answer.

    Args:
        status: ``(state, live connections, uptime in seconds)`` as of the call; the
            state is ``"ok"`` while running, else ``"draining"`` or ``"shutting_down"``.
        checks: The health checks ``/healthz`` reports.
    """

    def __init__(self, status: Callable[[], tuple[str, int, float]], checks: HealthChecks) -> None:
        self.handlers: dict[str, RouteHandler] = {}
        self._status = status
        self._checks = checks

    def add(self, path: str, handler: RouteHandler) -> None:
        """Serve ``path`` with ``handler(request)``.

        Raises:
            DuplicateRegistration: ``path`` is already served.
        """
        if path in self.handlers or path == HEALTH_PATH:
            raise DuplicateRegistration(f"HTTP path {path!r} is already served")
        self.handlers[path] = handler

    def health(self, request: HttpRequest) -> HttpResponse:
        """The ``/healthz`` answer, JSON: 200 while running with every health check ok;
        else 503 with ``"status"`` ``"shutting_down"``, ``"draining"`` or ``"unhealthy"``
        (in that order of precedence)."""
        state, connections, uptime = self._status()
        answer: dict[str, object] = {
            "status": state,
            "connections": connections,
            "uptime_seconds": round(uptime, 3),
        }
        verdicts: dict[str, bool] = {}
        if self._checks.checks:
            results = self._checks.run()
            answer["checks"] = {name: check_body(r) for name, r in results.items()}
            verdicts = {name: r.ok for name, r in results.items()}
            if state == "ok" and not all(verdicts.values()):
                answer["status"] = state = "unhealthy"
        try:
            body = json.dumps(answer, default=str)
        except ValueError:  # (a circular detail: the verdicts without the details)
            logger.exception("a health check's detail cannot be written as JSON")
            answer["checks"] = {name: {"ok": ok} for name, ok in verdicts.items()}
            body = json.dumps(answer)
        return HttpResponse(200 if state == "ok" else 503, body, "application/json")

    async def page(self, request: HttpRequest) -> HttpResponse:
        """The answer to a plain HTTP request: its route's (a handler that raises answers
        500 and is logged), the landing page at ``/``, else 404 naming what is served."""
        route = self.handlers.get(request.path)
        if route is None:
            if request.path == "/":
                return self.landing()
            served = ", ".join(["/", HEALTH_PATH, *self.handlers])
            return HttpResponse(404, f"not found; this server serves {served}\n")
        try:
            answer = route(request)
            return await answer if inspect.isawaitable(answer) else answer
        except Exception:
            logger.exception("HTTP route %r failed", request.path)
            return HttpResponse(500, "internal error\n")

    def landing(self) -> HttpResponse:
        """The page at ``/``: what this port is and links to what it serves (nothing from
        the request is echoed)."""
        items = "".join(
            f'<li><a href="{html.escape(path)}">{html.escape(path)}</a>'
            f"{' — ' + html.escape(_KNOWN[path]) if path in _KNOWN else ''}</li>"
            for path in sorted([HEALTH_PATH, *self.handlers])
            if not path.endswith(".ico")  # (a browser's tab icon: no page)
            and (path in _KNOWN or path.count(".") == 0)  # (the client's other files: no)
        )
        protocols = ", ".join(html.escape(p) for p in SUBPROTOCOLS)
        body = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            "<title>pl3xus_rx</title></head><body>"
            "<h1>pl3xus_rx</h1>"
            "<p>This port speaks WebSocket: connect a <code>SyncProvider</code> (or any client "
            f"of the subprotocols {protocols}) to <code>ws://</code> (or <code>wss://</code>) "
            "and this address.</p>"
            f"<ul>{items}</ul>"
            "<p>Documentation: <code>docs/</code> in the pl3xus_rx repository "
            "(getting-started.md, then protocol.md for other clients).</p>"
            "</body></html>"
        )
        # no script, no style: the strictest page policy (the tab icon may load)
        headers = {"Content-Security-Policy": page_csp(body), "Cache-Control": "no-store"}
        return HttpResponse(200, body, "text/html; charset=utf-8", headers)
