"""Health checks: what the application (or a gateway) says about its own health, for
``/healthz`` and for admitting new WebSocket handshakes. No socket I/O."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .._http import HttpResponse
from ..exceptions import DuplicateRegistration

__all__ = ["HealthCheck", "HealthChecks"]

logger = logging.getLogger(__name__)

_NOTHING: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """What one health check says, each time it is asked.

    Attributes:
        ok: Whether this part is healthy; any check not ok makes ``/healthz`` answer 503
            with ``"status": "unhealthy"``.
        detail: More to show under the check's name in ``/healthz`` (JSON-able); a
            ``"reason"`` key says why, in words (it is also the text of a refused
            handshake).
        admit: ``False`` refuses new WebSocket handshakes (HTTP 503 naming the reason)
            while live connections go on: a gateway that lost the authority, say.
    """

    ok: bool
    detail: Mapping[str, Any] = field(default_factory=lambda: _NOTHING)
    admit: bool = True


HealthCheckFn = Callable[[], HealthCheck]
"""``check() -> HealthCheck``: called at every ``/healthz`` request and every handshake."""


class HealthChecks:
    """The named checks of one network.

    Args:
        interval: Seconds between two log lines about the same failing check (a check
            that raises at every handshake must not flood the log).
    """

    def __init__(self, interval: Callable[[], float]) -> None:
        self.checks: dict[str, HealthCheckFn] = {}
        self._interval = interval
        self._logged: dict[str, tuple[float, int]] = {}  # name -> (last logged, since)

    def add(self, name: str, check: HealthCheckFn) -> None:
        """Ask ``check`` from now on, under ``name``.

        Raises:
            DuplicateRegistration: a check of that name is installed.
            TypeError: ``check`` is not callable.
        """
        if name in self.checks:
            raise DuplicateRegistration(
                f"a health check named {name!r} is installed already; remove it first"
            )
        if not callable(check):
            raise TypeError(f"a health check is a callable returning HealthCheck, got {check!r}")
        self.checks[name] = check

    def remove(self, name: str) -> None:
        """Stop asking the check ``name`` (nothing happens if there is none)."""
        self.checks.pop(name, None)
        self._logged.pop(name, None)

    def run(self) -> dict[str, HealthCheck]:
        """Ask every check now; one that raises (or returns something else than a
        :class:`HealthCheck`) counts as not ok, and is logged at most once per interval."""
        results: dict[str, HealthCheck] = {}
        for name, check in list(self.checks.items()):
            try:
                result = check()
                if not isinstance(result, HealthCheck):
                    raise TypeError(f"it returned {type(result).__name__}, not a HealthCheck")
            except Exception as exc:
                self._log_failure(name, exc)
                result = HealthCheck(False, {"reason": f"the check failed: {type(exc).__name__}"})
            results[name] = result
        return results

    def refusal(self) -> HttpResponse | None:
        """The answer to a handshake while a check says not to admit (``None``: admit)."""
        if not self.checks:
            return None
        for name, result in self.run().items():
            if not result.admit:
                reason = result.detail.get("reason") or f"health check {name!r} says so"
                return HttpResponse(
                    503, f"server is not admitting new connections: {str(reason)[:200]}\n"
                )
        return None

    def _log_failure(self, name: str, exc: Exception) -> None:
        now = time.monotonic()
        last, quiet = self._logged.get(name, (-float("inf"), 0))
        if now - last < self._interval():
            self._logged[name] = (last, quiet + 1)
            return
        self._logged[name] = (now, 0)
        more = f" ({quiet} more failures not logged since the last one)" if quiet else ""
        logger.error("health check %r failed%s", name, more, exc_info=exc)


def check_body(result: HealthCheck) -> dict[str, Any]:
    """A check's entry in the ``/healthz`` JSON: ``{"ok": ..., **detail}`` (``ok`` is the
    check's own; ``"admit": false`` is added while it refuses handshakes)."""
    body: dict[str, Any] = {"ok": bool(result.ok)}
    body.update((k, v) for k, v in result.detail.items() if k not in ("ok", "admit"))
    if not result.admit:
        body["admit"] = False
    return body
