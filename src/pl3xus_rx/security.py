"""Who a client is: identities, authenticators and the checks made at the handshake. No I/O.

An *authenticator* looks at the handshake request (:class:`~pl3xus_rx.net.HttpRequest`) and
returns the :class:`Identity` of the client, or raises :class:`AuthenticationFailed` to refuse
it (HTTP 401 or 403, with the reason). It may be a coroutine function. Every decision the
server makes for that connection (policies, the authorizer, control) sees the identity.

Without an authenticator the server runs in *protected mode*: clients connecting from a
loopback address are anonymous and allowed, every other address is refused at the handshake,
unless anonymous access is switched on explicitly. See ``docs/security.md``.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .exceptions import AuthenticationFailed

if TYPE_CHECKING:
    from ._http import HttpRequest

__all__ = [
    "ADMIN_ROLE",
    "ANONYMOUS",
    "TOKEN_COOKIE",
    "TOKEN_PARAM",
    "AuthenticationFailed",
    "Authenticator",
    "Identity",
    "bearer_tokens",
    "is_loopback",
    "jwt_verifier",
    "origin_allowed",
    "token_of",
]

TOKEN_PARAM = "token"
"""The query parameter a browser puts its token in (it cannot set headers on a WebSocket)."""
TOKEN_COOKIE = "pl3xus_token"
"""The cookie that may carry the token instead."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is on the other end of a connection.

    Attributes:
        name: A name for logs and notices (a user, a service, ``"anonymous"``).
        roles: What the identity may do, as the server's policies understand it
            (``"operator"``, ``"viewer"``, ``"admin"``...).
        claims: Anything else the authenticator learned (a JWT's claims).
        anonymous: No credentials were checked.
        expires_at: When the credential stops being valid, in seconds since the epoch (a
            JWT's ``exp``; ``None``: never). A connection not refreshed by then (plus
            ``NetworkSettings.credential_grace``) is closed with
            :attr:`~pl3xus_rx.protocol.CloseCode.CREDENTIAL_EXPIRED`.
    """

    name: str
    roles: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    anonymous: bool = False
    expires_at: float | None = None

    @classmethod
    def of(cls, name: str, *roles: str, **claims: Any) -> Identity:
        """Shorthand: ``Identity.of("ann", "operator")``."""
        return cls(name, frozenset(roles), MappingProxyType(dict(claims)))

    def has_role(self, *roles: str) -> bool:
        """Whether the identity has any of ``roles``."""
        return not self.roles.isdisjoint(roles)

    def __str__(self) -> str:
        return self.name


ADMIN_ROLE = "admin"
"""With an authenticator, DevTools, its queries (``pl3xus.tree``, ``pl3xus.schemas``,
``pl3xus.connections``) and ``/metrics`` need this role."""

ANONYMOUS = Identity("anonymous", anonymous=True)
"""The identity of a client nobody authenticated (protected mode, or anonymous access)."""

Authenticator = Callable[["HttpRequest"], "Identity | Awaitable[Identity]"]
"""``fn(request) -> Identity`` (sync or async); raises :class:`AuthenticationFailed` to
refuse the handshake."""


def token_of(request: HttpRequest) -> str | None:
    """The credential a client sent: ``Authorization: Bearer <token>``, else the ``token``
    query parameter, else the ``pl3xus_token`` cookie."""
    auth = request.header("authorization")
    if auth is not None:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    param = request.param(TOKEN_PARAM)
    if param:
        return param
    cookie_header = request.header("cookie")
    if cookie_header:
        try:
            jar = SimpleCookie(cookie_header)
        except CookieError:
            return None
        morsel = jar.get(TOKEN_COOKIE)
        if morsel is not None and morsel.value:
            return morsel.value
    return None


def bearer_tokens(tokens: Mapping[str, Identity]) -> Authenticator:
    """An authenticator for static tokens: each token stands for one identity.

    A missing token is refused with 401, an unknown one with 403. Tokens are compared in
    constant time.
    """
    table = [(token.encode(), identity) for token, identity in tokens.items()]
    if not table:
        raise ValueError("bearer_tokens needs at least one token")

    def authenticate(request: HttpRequest) -> Identity:
        given = token_of(request)
        if given is None:
            raise AuthenticationFailed("a token is required", status=401)
        found: Identity | None = None
        raw = given.encode()
        for token, identity in table:  # no early exit: the time does not tell which matched
            if hmac.compare_digest(raw, token):
                found = identity
        if found is None:
            raise AuthenticationFailed("the token is not valid", status=403)
        return found

    return authenticate


def jwt_verifier(
    key: Any,
    *,
    algorithms: Iterable[str] = ("HS256",),
    audience: str | None = None,
    issuer: str | None = None,
    name_claim: str = "sub",
    roles_claim: str = "roles",
    leeway: float = 0.0,
) -> Authenticator:
    """An authenticator for JSON Web Tokens, verified with PyJWT (``pip install
    'pl3xus-rx[jwt]'``): signature, expiry, and audience / issuer when given.

    The identity's name is the ``name_claim`` claim, its roles the ``roles_claim`` claim (a
    list of strings, or one string), its claims the whole payload.

    Raises:
        ImportError: PyJWT is not installed.
    """
    try:
        import jwt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("jwt_verifier needs PyJWT: pip install 'pl3xus-rx[jwt]'") from exc
    allowed = list(algorithms)

    def authenticate(request: HttpRequest) -> Identity:
        token = token_of(request)
        if token is None:
            raise AuthenticationFailed("a token is required", status=401)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=allowed,
                audience=audience,
                issuer=issuer,
                leeway=leeway,
                options={"require": ["exp"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationFailed("the token has expired", status=401) from exc
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed(f"the token is not valid ({exc})", status=403) from exc
        name = claims.get(name_claim)
        if not isinstance(name, str):
            raise AuthenticationFailed(
                f"the token's {name_claim!r} claim must be a string", status=403
            )
        roles = claims.get(roles_claim, [])
        if isinstance(roles, str):
            roles = [roles]
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise AuthenticationFailed(
                f"the token's {roles_claim!r} claim must be a list of strings or one string, "
                f"not {_kind(roles)}",
                status=403,
            )
        expires = claims.get("exp")  # (required and checked by PyJWT: a number)
        return Identity(
            name,
            frozenset(roles),
            MappingProxyType(dict(claims)),
            expires_at=float(expires) if isinstance(expires, int | float) else None,
        )

    return authenticate


def _kind(value: Any) -> str:
    """How a claim's value reads in a refusal (its JSON kind, never its content)."""
    if isinstance(value, list):
        return "a list with other things than strings"
    names = {dict: "a map", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), "null" if value is None else type(value).__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address as a peer reports it) is a loopback address: all of
    127.0.0.0/8, ``::1``, and IPv4-mapped loopback."""
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def origin_allowed(request: HttpRequest, allowed: Iterable[str | None] | None) -> bool:
    """Whether a handshake's ``Origin`` may connect: no Origin (a non-browser client), the
    server's own origin (the Origin's host and port are the request's ``Host``), an origin in
    ``allowed``, or anything when ``allowed`` holds ``"*"``."""
    origin = request.header("origin")
    if origin is None:
        return True
    extra = set(allowed or ())
    if "*" in extra or origin in extra:
        return True
    parts = urlsplit(origin)
    host = request.header("host")
    if parts.scheme not in ("http", "https") or not parts.netloc or host is None:
        return False
    default = {"http": 80, "https": 443}[parts.scheme]

    def netloc(value: str, port: int) -> str:
        value = value.lower()
        if value.endswith(f":{port}"):
            value = value[: -len(f":{port}")]
        return value

    return netloc(parts.netloc, default) == netloc(host, default)
