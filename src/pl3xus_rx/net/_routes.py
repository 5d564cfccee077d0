"""The plain HTTP side of a listener's port: ``/healthz`` and the routes the layers above
add (DevTools, ``/metrics``)."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable

from .._http import HEALTH_PATH, HttpRequest, HttpResponse, RouteHandler
from ..exceptions import DuplicateRegistration

__all__ = ["Routes"]

logger = logging.getLogger("pl3xus_rx.net")


class Routes:
    """Path -> handler, and the health answer.

    Args:
        status: ``(running, live connections, uptime in seconds)`` as of the call.
    """

    def __init__(self, status: Callable[[], tuple[bool, int, float]]) -> None:
        self.handlers: dict[str, RouteHandler] = {}
        self._status = status

    def add(self, path: str, handler: RouteHandler) -> None:
        """Serve ``path`` with ``handler(request)``.

        Raises:
            DuplicateRegistration: ``path`` is already served.
        """
        if path in self.handlers or path == HEALTH_PATH:
            raise DuplicateRegistration(f"HTTP path {path!r} is already served")
        self.handlers[path] = handler

    def health(self, request: HttpRequest) -> HttpResponse:
        """The ``/healthz`` answer: 200 JSON while running, 503 while closing."""
        ok, connections, uptime = self._status()
        body = json.dumps(
            {
                "status": "ok" if ok else "shutting_down",
                "connections": connections,
                "uptime_seconds": round(uptime, 3),
            }
        )
        return HttpResponse(200 if ok else 503, body, "application/json")

    async def page(self, request: HttpRequest) -> HttpResponse | None:
        """The answer to a plain HTTP request, if its path is served (a handler that
        raises answers 500 and is logged)."""
        route = self.handlers.get(request.path)
        if route is None:
            return None
        try:
            answer = route(request)
            return await answer if inspect.isawaitable(answer) else answer
        except Exception:
            logger.exception("HTTP route %r failed", request.path)
            return HttpResponse(500, "internal error\n")
