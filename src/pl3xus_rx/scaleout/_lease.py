"""Fencing: the authority's lease on its cluster, a key in a NATS JetStream KeyValue bucket.

One authority per cluster name: :meth:`Lease.acquire` creates the key ``authority`` in the
bucket ``pl3xus_<cluster>`` (whose TTL makes an unrenewed key vanish) and fails with
:class:`LeaseHeld` while another authority keeps it alive. A task renews it every TTL / 4 by
compare-and-set on its revision, so an authority that wakes from a stall after its key
lapsed learns whether someone else took it (``on_lost``) or it could take it again with a
new fencing token (``on_new_token``).

The fencing token is the KV revision of the create that began the holding: JetStream
sequences only grow within a bucket, so a newer holding always has a greater token, and
anyone who sees two tokens can tell the stale authority from the live one. (Deleting the
bucket restarts its sequence: do not delete it while authorities run.)

The key's value is JSON: ``{"v": 1, "lease": <this Lease's id>, "token": <token or null>,
"holder": <the holder dict>}`` (the token is null in the create, which fixes it).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.client import KV_STREAM_TEMPLATE
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from ..exceptions import NetworkStateError, Pl3xusError, SettingsError
from ._link import redact_url

__all__ = [
    "LEASE_TTL",
    "Lease",
    "LeaseHeld",
    "LeaseUnavailable",
    "describe_holder",
    "lease_bucket",
    "read_holder",
]

logger = logging.getLogger(__name__)

LEASE_TTL = 12.0
"""Seconds an unrenewed lease lasts: longer than the longest stall an authority rides out
(6 s), so that a stall alone does not cost it the lease."""

LEASE_TIMEOUT = 5.0
"""Seconds :meth:`Lease.acquire`, :meth:`Lease.release` and :func:`read_holder` wait for
each JetStream answer."""

_KEY = "authority"
_WARN_EVERY = 30.0  # seconds between WARNINGs about an unreachable NATS
# a failure to reach JetStream (or to hear from it in time), as opposed to its answer
_UNREACHABLE = (TimeoutError, OSError, nats.errors.Error)


class LeaseHeld(Pl3xusError):
    """Another authority holds the cluster's lease; the message names it in one line.

    Attributes:
        cluster: The cluster's name.
        holder: The holder's description (epoch, host, pid, started), with its ``token``.
    """

    def __init__(self, cluster: str, holder: Mapping[str, Any]) -> None:
        super().__init__(
            f"cluster {cluster!r} already has an authority: {describe_holder(holder)}; "
            "stop it first or use another cluster name"
        )
        self.cluster = cluster
        self.holder = dict(holder)


class LeaseLost(Pl3xusError):
    """This authority lost its cluster's lease to another (it woke after a stall longer
    than the lease): it stopped being the authority. The message says who holds it now."""


class LeaseUnavailable(Pl3xusError):
    """The lease cannot be kept in NATS: no JetStream there, no answer in time, or the
    bucket was refused. The message says which and what to do."""


def lease_bucket(cluster: str) -> str:
    """The KV bucket holding ``cluster``'s lease: ``pl3xus_<cluster>``, characters a bucket
    name may not hold ([A-Za-z0-9_-] only) replaced by ``_`` and, then, a short hash of the
    name added so that two names differing only there do not share a bucket."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", cluster)
    if safe != cluster:
        safe += "_" + hashlib.sha256(cluster.encode()).hexdigest()[:8]
    return f"pl3xus_{safe}"


def describe_holder(holder: Mapping[str, Any]) -> str:
    """One line for a holder dict: ``epoch 3f2a, host h, pid 123, up 42 s``."""
    parts = [f"{name} {holder[name]}" for name in ("epoch", "host", "pid") if name in holder]
    started = holder.get("started")
    if isinstance(started, int | float) and not isinstance(started, bool):
        parts.append(f"up {max(0.0, time.time() - started):.0f} s")
    if "token" in holder:
        parts.append(f"fencing token {holder['token']}")
    return ", ".join(parts) if parts else json.dumps(dict(holder), default=str)


async def read_holder(
    js: JetStreamContext, cluster: str, *, timeout: float = LEASE_TIMEOUT
) -> dict[str, Any] | None:
    """Who holds ``cluster``'s lease, for the cluster status: the holder's dict with its
    fencing token as ``token``, or ``None`` if nobody does. Creates nothing. Cancelling it
    is safe.

    Raises:
        LeaseUnavailable: no JetStream at that NATS, or no answer within ``timeout``.
    """
    try:
        kv = await asyncio.wait_for(js.key_value(lease_bucket(cluster)), timeout)
    except nats.js.errors.BucketNotFoundError:
        return None
    except _UNREACHABLE as exc:
        raise _unavailable(js, exc, timeout) from exc
    try:
        entry = await asyncio.wait_for(kv.get(_KEY), timeout)
    except nats.js.errors.KeyNotFoundError:
        return None
    except _UNREACHABLE as exc:
        raise _unavailable(js, exc, timeout) from exc
    return _decode(entry).described


class _State(enum.Enum):
    NEW = "new"  # not acquired yet (or acquire failed)
    HELD = "held"
    LOST = "lost"  # someone else took it, or it was deleted
    RELEASED = "released"


class Lease:
    """The authority's lease on cluster ``cluster``: acquire it, it renews itself, release it.

    Args:
        js: The JetStream context of the authority's NATS connection.
        cluster: The cluster's name.
        holder: Describes the holder (epoch, host, pid, started wall time): JSON-encodable;
            shown to whoever is refused the lease.
        ttl: Seconds an unrenewed lease lasts (the bucket's TTL; renewed every ttl / 4).
            If the bucket exists with another TTL, the bucket's is used (with a warning).
        on_lost: Called with a one-line reason (naming the new holder) once the lease is
            lost: another authority took it after it lapsed, or it was deleted. Renewal
            stops; the token stays the old one.
        on_new_token: Called with the new fencing token when the lease lapsed (a stall, or
            NATS away for longer than the TTL) and was taken again before anyone else did.

    Callbacks run in the renewal task; an exception from one is logged, never raised.
    NATS being unreachable never makes the lease lost: :attr:`held_until` tells until when
    the last renewal keeps it valid.
    """

    def __init__(
        self,
        js: JetStreamContext,
        cluster: str,
        holder: Mapping[str, Any],
        ttl: float = LEASE_TTL,
        *,
        on_lost: Callable[[str], None] | None = None,
        on_new_token: Callable[[int], None] | None = None,
    ) -> None:
        if not ttl > 0:
            raise SettingsError(f"Lease ttl must be > 0 seconds, got {ttl!r}")
        self._js = js
        self.cluster = cluster
        self.bucket = lease_bucket(cluster)
        self._holder = dict(holder)
        self._ttl = float(ttl)
        self._on_lost = on_lost
        self._on_new_token = on_new_token
        self._id = secrets.token_hex(8)  # tells our own writes from anyone else's
        self._state = _State.NEW
        self._kv: KeyValue | None = None
        self._token: int | None = None
        self._revision = 0  # the KV revision of our latest write
        self._written = -1e18  # monotonic time that write was sent (it lasts ttl from then)
        self._task: asyncio.Task[None] | None = None
        self._attempted = 0.0  # monotonic time of the latest renewal attempt
        self._unreachable_since: float | None = None
        self._warned = -1e18

    # -- what the caller reads ----------------------------------------------------------

    @property
    def token(self) -> int | None:
        """The fencing token of the current holding (the revision of the create that began
        it; renewals keep it), or ``None`` before the lease was first acquired."""
        return self._token

    @property
    def holder(self) -> dict[str, Any]:
        """A copy of the holder's description, as given."""
        return dict(self._holder)

    @property
    def ttl(self) -> float:
        """Seconds an unrenewed lease lasts (the bucket's TTL once acquired)."""
        return self._ttl

    @property
    def held_until(self) -> float | None:
        """The ``time.monotonic()`` until which the lease is certainly ours (the last
        successful write + ttl), or ``None`` when not held (never acquired, lost,
        released)."""
        if self._state is not _State.HELD:
            return None
        return self._written + self._ttl

    @property
    def held(self) -> bool:
        """Whether the lease is certainly ours now (see :attr:`held_until`)."""
        until = self.held_until
        return until is not None and time.monotonic() < until

    def __repr__(self) -> str:
        return f"<Lease {self.cluster!r} {self._state.value} token={self._token}>"

    # -- acquire / release ----------------------------------------------------------------

    async def acquire(self, *, timeout: float = LEASE_TIMEOUT) -> int:
        """Take the lease and start renewing it.

        Returns:
            The fencing token.

        Raises:
            LeaseHeld: another authority holds it (the message names it).
            LeaseUnavailable: NATS has no JetStream, or did not answer within ``timeout``.
            NetworkStateError: the lease is already held.

        Cancelling it is safe, but a key it created just then keeps the lease from
        everyone until it lapses (ttl).
        """
        if self._state is _State.HELD:
            raise NetworkStateError(
                f"Lease.acquire: the lease is already held (token {self._token})"
            )
        kv = await self._bucket(timeout)  # (made again if it went: see _restore_bucket)
        for _ in range(3):  # the key may lapse between a failed create and our look at it
            sent = time.monotonic()
            try:
                revision = await asyncio.wait_for(kv.create(_KEY, self._value(None)), timeout)
            except nats.js.errors.KeyWrongLastSequenceError:
                pass
            except _UNREACHABLE as exc:
                raise _unavailable(self._js, exc, timeout) from exc
            else:
                self._took(revision, revision, sent)
                return revision
            try:
                entry = await asyncio.wait_for(kv.get(_KEY), timeout)
            except nats.js.errors.KeyNotFoundError:
                continue
            except _UNREACHABLE as exc:
                raise _unavailable(self._js, exc, timeout) from exc
            found = _decode(entry)
            if found.lease == self._id:
                # our own create, from an attempt that timed out: written when, we cannot
                # tell, so it counts as lapsed until the first renewal (made at once)
                token = found.token or _revision(entry)
                self._took(token, _revision(entry), None)
                return token
            raise LeaseHeld(self.cluster, found.described)
        raise LeaseUnavailable(
            f"the lease key of cluster {self.cluster!r} kept changing; try again"
        )

    async def release(self, *, timeout: float = LEASE_TIMEOUT) -> None:
        """Stop renewing and delete the key if it is still ours, so that another authority
        may start at once. Never raises for a lost lease or an unreachable NATS (the key
        then lapses after ttl). Cancelling it is safe (the key then lapses)."""
        await self._stop_task()
        if self._state is not _State.HELD:
            return
        self._set_state(_State.RELEASED)
        kv = self._kv
        assert kv is not None
        try:
            await asyncio.wait_for(kv.delete(_KEY, last=self._revision), timeout)
        except nats.js.errors.APIError:
            # not our revision: a renewal whose answer we missed, or someone else's key
            try:
                entry = await asyncio.wait_for(kv.get(_KEY), timeout)
                if _decode(entry).lease == self._id:
                    await asyncio.wait_for(kv.delete(_KEY, last=_revision(entry)), timeout)
            except _UNREACHABLE as exc:
                logger.debug("lease on cluster %r: not deleted (%s)", self.cluster, exc)
        except _UNREACHABLE as exc:
            logger.warning(
                "lease on cluster %r: could not delete it (%s); it lapses within %g s",
                self.cluster,
                exc,
                self._ttl,
            )
        else:
            logger.info("lease on cluster %r released (token %s)", self.cluster, self._token)

    # -- internals ------------------------------------------------------------------------

    def _set_state(self, state: _State) -> None:
        logger.debug("lease on cluster %r: %s -> %s", self.cluster, self._state.value, state.value)
        self._state = state

    def _value(self, token: int | None) -> bytes:
        body = {"v": 1, "lease": self._id, "token": token, "holder": self._holder}
        return json.dumps(body, separators=(",", ":"), default=str).encode()

    async def _bucket(self, timeout: float) -> KeyValue:
        """The lease's bucket, made if missing (making it is idempotent)."""
        try:
            try:
                kv = await asyncio.wait_for(
                    self._js.create_key_value(
                        bucket=self.bucket,
                        ttl=self._ttl,
                        history=1,
                        description=f"pl3xus_rx: the authority lease of cluster {self.cluster!r}",
                    ),
                    timeout,
                )
            except nats.js.errors.APIError as exc:
                if exc.err_code != 10058:  # "stream name already in use with a different config"
                    raise
                kv = await asyncio.wait_for(self._js.key_value(self.bucket), timeout)
                status = await asyncio.wait_for(kv.status(), timeout)
                if not status.ttl:
                    raise LeaseUnavailable(
                        f"the KV bucket {self.bucket} has no TTL, so a lease in it would never "
                        f"lapse: delete it (nats kv del {self.bucket}) and start again"
                    ) from exc
                if status.ttl != self._ttl:
                    logger.warning(
                        "lease on cluster %r: bucket %s has a TTL of %g s, not %g s: using %g s",
                        self.cluster,
                        self.bucket,
                        status.ttl,
                        self._ttl,
                        status.ttl,
                    )
                    self._ttl = status.ttl
        except _UNREACHABLE as exc:
            raise _unavailable(self._js, exc, timeout) from exc
        self._kv = kv
        return kv

    def _took(self, token: int, revision: int, sent: float | None) -> None:
        self._token = token
        self._revision = revision
        self._written = sent if sent is not None else -1e18
        self._attempted = time.monotonic()
        self._unreachable_since = None
        self._set_state(_State.HELD)
        logger.info(
            "lease on cluster %r acquired: fencing token %d (bucket %s, TTL %g s)",
            self.cluster,
            token,
            self.bucket,
            self._ttl,
        )
        self._task = asyncio.get_running_loop().create_task(
            self._renew_forever(at_once=sent is None), name=f"pl3xus lease {self.cluster}"
        )

    async def _stop_task(self) -> None:
        task, self._task = self._task, None
        if task is None or task is asyncio.current_task():
            return
        task.cancel()
        # (asyncio.wait, unlike awaiting the task, lets our own cancellation through)
        await asyncio.wait([task])

    async def _renew_forever(self, *, at_once: bool) -> None:
        period = self._ttl / 4
        due = time.monotonic() + (0.0 if at_once else period)
        while self._state is _State.HELD:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due = time.monotonic() + period
            try:
                await self._renew(timeout=period)
            except Exception:  # a bug here must not end the renewals silently
                logger.exception("lease on cluster %r: renewal failed", self.cluster)

    async def _renew(self, *, timeout: float) -> None:
        kv = self._kv
        assert kv is not None
        started = time.monotonic()
        stalled = started - self._attempted
        self._attempted = started
        if stalled > self._ttl:  # this process did not run: its lease may have lapsed
            logger.warning(
                "lease on cluster %r: not renewed for %.1f s (a stall; TTL %g s): it may "
                "have lapsed; checking",
                self.cluster,
                stalled,
                self._ttl,
            )
        # The compare-and-set is the check: it succeeds only if our write is still the
        # key's latest, i.e. the key neither lapsed nor changed hands.
        for _ in range(3):
            sent = time.monotonic()
            try:
                revision = await asyncio.wait_for(
                    kv.update(_KEY, self._value(self._token), last=self._revision), timeout
                )
            except nats.js.errors.KeyWrongLastSequenceError:
                if not await self._resolve(kv, timeout):
                    return
                continue  # ours again, at the revision found: write over it
            except nats.js.errors.NoStreamResponseError as exc:
                restored = await self._restore_bucket(exc, timeout)
                if restored is None:
                    return
                kv = restored
                continue  # the compare-and-set fails: the key is gone, so we retake it
            except _UNREACHABLE as exc:
                self._unreachable(exc)
                return
            self._revision = revision
            self._written = sent
            if self._unreachable_since is not None:
                logger.warning(
                    "lease on cluster %r: renewed again after %.1f s without NATS",
                    self.cluster,
                    sent - self._unreachable_since,
                )
                self._unreachable_since = None
            return

    async def _resolve(self, kv: KeyValue, timeout: float) -> bool:
        """Our compare-and-set failed: find out why. True if the key is ours again (at
        ``self._revision``), False if the lease is lost or NATS could not tell us."""
        try:
            entry = await asyncio.wait_for(kv.get(_KEY), timeout)
        except nats.js.errors.KeyNotFoundError as exc:
            if exc.op in (KV_DEL, KV_PURGE):
                self._lose("its key was deleted (by an operator?)")
                return False
            return await self._retake(kv, timeout)
        except _UNREACHABLE as exc:
            self._unreachable(exc)
            return False
        found = _decode(entry)
        if found.lease != self._id:
            self._lose(
                f"another authority took it after it lapsed: {describe_holder(found.described)}"
            )
            return False
        # our own write whose answer we missed (a timeout or a reconnection)
        self._revision = _revision(entry)
        if found.token is None and self._token != self._revision:  # a create of ours
            self._new_token(self._revision)
        return True

    async def _retake(self, kv: KeyValue, timeout: float) -> bool:
        """The key lapsed (a stall, or NATS away longer than the TTL): take it again."""
        sent = time.monotonic()
        try:
            revision = await asyncio.wait_for(kv.create(_KEY, self._value(None)), timeout)
        except nats.js.errors.KeyWrongLastSequenceError:
            return await self._resolve_taken(kv, timeout)
        except nats.js.errors.NoStreamResponseError as exc:
            await self._restore_bucket(exc, timeout)  # the next renewal takes it there
            return False
        except _UNREACHABLE as exc:
            # the create may still have happened: the next renewal finds out
            self._unreachable(exc)
            return False
        self._revision = revision
        self._written = sent
        self._new_token(revision)
        return True

    async def _restore_bucket(self, exc: BaseException, timeout: float) -> KeyValue | None:
        """Nothing stores the bucket's subjects: make the bucket again if it is gone (a NATS
        restarted without its store, or the bucket deleted). Its revisions then start
        again from 1, so the new token will not exceed the old (logged at ERROR)."""
        try:
            await asyncio.wait_for(
                self._js.stream_info(KV_STREAM_TEMPLATE.format(bucket=self.bucket)), timeout
            )
        except nats.js.errors.NotFoundError:
            pass
        except _UNREACHABLE as err:
            self._unreachable(err)
            return None
        else:  # it is there: JetStream was briefly unable to store
            self._unreachable(exc)
            return None
        logger.warning(
            "lease on cluster %r: its bucket %s is gone (NATS restarted without its store?); "
            "making it again",
            self.cluster,
            self.bucket,
        )
        try:
            return await self._bucket(timeout)
        except LeaseUnavailable as err:
            self._unreachable(err)
            return None

    async def _resolve_taken(self, kv: KeyValue, timeout: float) -> bool:
        try:
            entry = await asyncio.wait_for(kv.get(_KEY), timeout)
        except nats.js.errors.KeyNotFoundError:
            return False  # it came and went: the next renewal tries again
        except _UNREACHABLE as exc:
            self._unreachable(exc)
            return False
        found = _decode(entry)
        if found.lease == self._id:
            self._revision = _revision(entry)
            return True
        self._lose(f"another authority took it after it lapsed: {describe_holder(found.described)}")
        return False

    def _new_token(self, token: int) -> None:
        old, self._token = self._token, token
        if old is not None and token <= old:
            # only if the bucket was deleted and made again: its sequence restarted
            logger.error(
                "lease on cluster %r: new fencing token %d is not above the old %d (bucket %s "
                "was made again: its revisions restarted); gateways that saw the old one may "
                "refuse this authority",
                self.cluster,
                token,
                old,
                self.bucket,
            )
        logger.warning(
            "lease on cluster %r lapsed and was taken again: fencing token %s -> %d",
            self.cluster,
            old,
            token,
        )
        if self._on_new_token is not None:
            try:
                self._on_new_token(token)
            except Exception:
                logger.exception("lease on cluster %r: on_new_token raised", self.cluster)

    def _lose(self, why: str) -> None:
        self._set_state(_State.LOST)
        reason = f"lease on cluster {self.cluster!r} lost (token {self._token}): {why}"
        logger.warning("%s", reason)
        if self._on_lost is not None:
            try:
                self._on_lost(reason)
            except Exception:
                logger.exception("lease on cluster %r: on_lost raised", self.cluster)

    def _unreachable(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
        left = self._written + self._ttl - now
        state = f"valid {left:.1f} s more" if left > 0 else f"may have lapsed {-left:.1f} s ago"
        level = logging.DEBUG
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            level = logging.WARNING
        logger.log(
            level,
            "lease on cluster %r: not renewed, NATS did not answer (%s); still trying; %s",
            self.cluster,
            _text(exc),
            state,
        )


class _Found:
    """A decoded lease value."""

    __slots__ = ("described", "lease", "token")

    def __init__(self, lease: str | None, token: int | None, described: dict[str, Any]) -> None:
        self.lease = lease
        self.token = token
        self.described = described


def _revision(entry: KeyValue.Entry) -> int:
    assert entry.revision is not None
    return entry.revision


def _decode(entry: KeyValue.Entry) -> _Found:
    """The value of the lease key (anything someone else may have written there too)."""
    try:
        body = json.loads(entry.value or b"")
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("holder"), dict):
        return _Found(None, None, {"value": repr(entry.value), "token": entry.revision})
    token = body.get("token")
    if not isinstance(token, int):
        token = None
    lease = body.get("lease")
    described = {**body["holder"], "token": token if token is not None else entry.revision}
    return _Found(lease if isinstance(lease, str) else None, token, described)


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _unavailable(js: JetStreamContext, exc: BaseException, timeout: float) -> LeaseUnavailable:
    """``exc``, from a JetStream call, as the error that says what to do."""
    where = "NATS"
    nc = getattr(js, "_nc", None)  # (nats-py gives the connection no public name here)
    url = getattr(nc, "connected_url", None)
    if url is not None:
        where = f"NATS at {redact_url(url.geturl())}"
    if isinstance(exc, nats.js.errors.ServiceUnavailableError | nats.errors.NoRespondersError):
        return LeaseUnavailable(
            f"{where} has no JetStream (start nats-server with -js): fencing needs it"
        )
    if isinstance(exc, TimeoutError):
        return LeaseUnavailable(
            f"{where} did not answer a JetStream request within {timeout:g} s (is JetStream "
            "enabled: nats-server -js?): fencing needs it"
        )
    if isinstance(exc, nats.js.errors.APIError):
        return LeaseUnavailable(f"{where} refused the lease bucket: {exc.description or exc}")
    return LeaseUnavailable(f"{where} could not be asked for the lease: {_text(exc)}")
