"""The client's credential: where its token comes from, and when to refresh it.

A token may be a string (sent as is with every connection) or a callable returning one
(sync or async), asked at every connection and before each refresh: a callable is how a
client keeps a short-lived token fresh without reconnecting. No I/O here.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Credential", "TokenSource", "refresh_delay"]

TokenSource = str | Callable[[], "str | Awaitable[str]"]
"""A token, or ``fn() -> token`` (sync or async) asked each time one is needed."""

_LEAD_MAX = 30.0
_LEAD_MIN = 1.0


def refresh_delay(expires_in: float) -> float:
    """Seconds to wait before refreshing a credential that expires in ``expires_in``
    seconds: a fifth of its life ahead of expiry, between 1 and 30 seconds ahead."""
    lead = max(_LEAD_MIN, min(_LEAD_MAX, expires_in * 0.2))
    return max(0.0, expires_in - lead)


class Credential:
    """A client's token source.

    Args:
        source: The token, a callable giving one, or ``None`` (no credential).
    """

    def __init__(self, source: TokenSource | None) -> None:
        if source is not None and not isinstance(source, str) and not callable(source):
            raise TypeError(f"token must be a string or a callable, not {type(source).__name__}")
        self._source = source

    @property
    def renewable(self) -> bool:
        """Whether a new token can be had (a callable source)."""
        return callable(self._source)

    async def token(self) -> str | None:
        """The token to send now (the callable is asked; its errors propagate)."""
        source = self._source
        if source is None or isinstance(source, str):
            return source
        value: Any = source()
        if inspect.isawaitable(value):
            value = await value
        if not isinstance(value, str) or not value:
            raise TypeError(
                f"the token callable must return a non-empty string, got {type(value).__name__}"
            )
        return value
