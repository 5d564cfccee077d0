"""Which ``Host`` and ``Origin`` values name this server: the defence against DNS rebinding
(a foreign page whose name resolves to this machine) and cross-site WebSocket hijacking.

A browser sets ``Host`` from the URL it loads, so a page at ``http://rebind.example:8080``
whose name an attacker pointed at 127.0.0.1 reaches a loopback server with ``Host:
rebind.example:8080`` and the matching ``Origin``: comparing the two proves nothing. What
does is whether the name is one of this server's: ``localhost``, a loopback address, the
bound address, and for a wildcard bind this machine's addresses and host name, plus what
``NetworkSettings.allowed_hosts`` adds.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from ..security import is_loopback

__all__ = ["HostNames", "host_of"]

_WILDCARDS = frozenset({"", "0.0.0.0", "::"})
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_PROBED_AT_MOST = 1024  # IP literals remembered (each costs one bind() to learn)


def host_of(value: str) -> str | None:
    """The host part of a ``Host`` header or an origin's netloc, lower case, without the
    port, brackets or a trailing dot (``"[::1]:80"`` -> ``"::1"``); ``None`` if it is not
    a host."""
    try:
        parts = urlsplit(f"//{value.strip()}")
        name = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        return None
    if not name or parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        return None
    return name.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    return True


class HostNames:
    """The names one network answers to, learnt as it listens."""

    def __init__(self) -> None:
        self._bound: set[str] = set()
        self._wildcard = False
        self._machine: set[str] = set()
        self._probed: dict[str, bool] = {}
        self.tls: set[bool] = set()
        """Whether each listener speaks TLS (``{False}``: plain only)."""

    def listening(self, address: str, tls: bool, machine_names: Iterable[str]) -> None:
        """A listener is bound to ``address``; ``machine_names`` are this machine's host
        name and FQDN (asked once by the caller: a DNS lookup may be slow)."""
        name = host_of(address) if address not in _WILDCARDS else None
        if name is None:
            self._wildcard = True
            self._machine.update(n.lower().rstrip(".") for n in machine_names if n)
        else:
            self._bound.add(name)
        self.tls.add(tls)

    @property
    def wildcard(self) -> bool:
        """Whether a listener is bound to every interface (``0.0.0.0``, ``::``)."""
        return self._wildcard

    def allowed(self, name: str, extra: Iterable[str] | None) -> bool:
        """Whether ``name`` (from :func:`host_of`) names this server; ``extra`` is
        ``NetworkSettings.allowed_hosts`` (``"*"``: any host)."""
        if name in _LOCAL_NAMES or name in self._bound or is_loopback(name):
            return True
        if extra is not None:
            listed = {host_of(e) or e.lower() for e in extra}
            if "*" in listed or name in listed:
                return True
        if not self._wildcard:
            return False
        if name in self._machine:
            return True
        return _is_ip(name) and self._is_local(name)

    def _is_local(self, ip: str) -> bool:
        """Whether ``ip`` is an address of this machine: one it can bind (remembered)."""
        known = self._probed.get(ip)
        if known is not None:
            return known
        address = ipaddress.ip_address(ip.split("%", 1)[0])
        local = False
        if not (address.is_multicast or address.is_unspecified):
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            try:
                with socket.socket(family, socket.SOCK_DGRAM) as probe:
                    probe.bind((str(address), 0))
                local = True
            except OSError:
                local = False
        if len(self._probed) >= _PROBED_AT_MOST:
            self._probed.clear()
        self._probed[ip] = local
        return local
