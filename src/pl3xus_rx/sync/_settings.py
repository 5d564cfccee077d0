"""SyncSettings: the sync engine's flush rate and limits, and the command layer's timeouts
and bounds."""

from __future__ import annotations

from pydantic import Field

from .._settings import CheckedSettings

__all__ = ["MIN_VALUE_BYTES", "SyncSettings"]

MIN_VALUE_BYTES = 64 * 1024
"""The lowest ``max_value_bytes``: types whose schema bounds them below it go unchecked."""


class SyncSettings(CheckedSettings):
    """Settings of the sync engine.

    Attributes:
        max_update_rate_hz: At most this many flushes per second (a flush runs as soon as the
            loop is free after a change, but never sooner than ``1 / max_update_rate_hz``
            after the previous one). A component may lower it for itself.
        max_subscriptions_per_connection: Subscriptions one connection may hold.
        max_snapshot_items: Most snapshot entities one connection gets per flush; a bigger
            snapshot (or many at once) goes out in parts over several flushes, with live
            changes in between, so frames stay bounded.
        control_timeout: Seconds of inactivity after which control of an entity is released
            (authorized mutations, targeted requests and one-way messages on it count as
            activity); ``None``: never.
        control_move_grace: Seconds an authenticated party keeps its control after its
            last connection left for a move (closed by ``SyncServer.drain``, or a gateway's
            client that left with ``remote_left(..., moving=True)``): the first connection
            of the same identity that comes back (on any gateway) holds it again; others'
            takes are refused meanwhile. Past it, the control is released. Anonymous
            clients lose control at once, as on any close. 0: no grace.
        handler_timeout: Seconds an async handler (mutation, request, query, one-way
            message) may take; then it is cancelled and the command answered ``timeout``.
            ``None``: no limit. (A handler's task is also cancelled when its client leaves.)
        slow_handler_seconds: A synchronous handler (a plain function) runs on the event
            loop and every client waits for it: a call that takes this long or longer is
            logged with the handler's name, and counted (``pl3xus_slow_handlers``).
            ``None``: handlers are not timed.
        max_pending_commands: Async handlers one connection may have running at once; a
            command beyond them is answered ``forbidden`` naming the limit (a one-way message
            gets a ``message_rejected`` notice). ``None``: no limit.
        max_snapshot_bytes: Most bytes of snapshot items one connection gets per flush
            (beyond a first item): a snapshot of big values goes out in more parts, so a
            frame stays well below the clients' ``max_message_size`` (64 MiB by default).
        max_value_bytes: The most bytes one synced component value may take encoded
            (msgpack). A bigger value is refused where it is stored, with
            :class:`~pl3xus_rx.ValueTooLarge` (types whose schema bounds their size below
            64 KiB are never checked: they cannot exceed it); one that got past (stored
            before its type was synced, or the limit lowered since) is left out of the sync
            and logged. Keep it below the clients' ``max_message_size``. At least 64 KiB.
        max_spawned_entities_per_owner: Entities one owner may hold spawned at once (an owner
            is an authenticated identity, all its connections together, or one anonymous
            connection); a SPAWN beyond them is answered ``forbidden`` naming this setting.
            Despawned entities (by anyone, or with their parent) no longer count.
            ``None``: no limit.
        max_spawned_bytes_per_owner: Bytes the components of one owner's spawned entities
            may hold, counted as their msgpack encoding (as for ``max_value_bytes``) plus 56
            bytes per value object inside (a string, a number, a list, a map: about what
            Python spends on each), so the count follows memory, not just wire size; a
            SPAWN, or a MUTATE that grows a component of a spawned entity (charged to the
            entity's owner), beyond it is answered ``forbidden``. ``None``: no limit.
        max_spawned_entities: Entities all clients together may hold spawned (the server's
            own never count): the bound on memory whatever the number of owners.
            ``None``: no limit.
        max_spawned_bytes: Bytes all spawned entities' components may hold together,
            counted as above: the bound on their memory (the default, 64 MiB, holds them
            in about 65 to 85 MiB of process memory, whatever their shape).
            ``None``: no limit.
        max_spawn_depth: The deepest a client may spawn: a root entity is at depth 1, its
            child at 2, and so on (the server's own entities above count), so chains stay
            short enough that walking an entity's ancestors (done for every command on it)
            stays cheap. ``None``: no limit.
        as_of_interval: The longest a protocol-v2 connection goes without a SYNC or a
            BEACON saying how old its data is (seconds); below any staleness threshold a
            client uses, so that age is always known to within this. An idle v2
            connection costs the server a beacon every 0.75 to 1 interval (about 40 µs of
            CPU each, measured: 500 idle connections at 0.5 s took 3 % of a core).
        ack_window_seconds: A v2 connection that acknowledges SYNC frames (ACK) is sent no
            more while its oldest unacknowledged one is older than this: its changes merge
            (latest wins) and go out in one catch-up frame once it acknowledges again.
        ack_window_bytes: ... or while its unacknowledged SYNC frames hold more bytes.
        ack_window_frames: ... or while this many SYNC frames are unacknowledged: what is in
            flight is what a slow reader must still read before it sees the latest, so a
            few frames bound how old that is (a client that acknowledges as it applies, on
            a round trip shorter than a few flush intervals, never meets it).
        max_behind_seconds: A connection behind its window this long is closed with 1013.
        history_bytes: The bytes every type's history (``.history(...)`` on a builder) may
            count together: 8 per point for its time and 8 per kept field (whole values:
            their msgpack size and 49). Past it the oldest points go first, whatever
            their type (ten minutes of one field of 1,000 entities at 2 Hz count about
            19 MB; process memory is up to an eighth more, plus a few hundred bytes per
            entity).
    """

    max_update_rate_hz: float = Field(default=60.0, gt=0)
    max_subscriptions_per_connection: int = Field(default=100, ge=1)
    max_snapshot_items: int = Field(default=20_000, ge=1)
    control_timeout: float | None = Field(default=300.0, gt=0)
    control_move_grace: float = Field(default=10.0, ge=0)
    handler_timeout: float | None = Field(default=30.0, gt=0)
    max_pending_commands: int | None = Field(default=100, ge=1)
    slow_handler_seconds: float | None = Field(default=0.1, gt=0)
    max_value_bytes: int = Field(default=1 << 20, ge=MIN_VALUE_BYTES)
    max_snapshot_bytes: int = Field(default=8 << 20, ge=1)
    max_spawned_entities_per_owner: int | None = Field(default=1_000, ge=1)
    max_spawned_bytes_per_owner: int | None = Field(default=16 << 20, ge=1)
    max_spawned_entities: int | None = Field(default=100_000, ge=1)
    max_spawned_bytes: int | None = Field(default=64 << 20, ge=1)
    max_spawn_depth: int | None = Field(default=32, ge=1)
    as_of_interval: float = Field(default=0.5, gt=0, le=5.0)
    ack_window_seconds: float = Field(default=0.5, gt=0)
    ack_window_bytes: int = Field(default=1 << 20, ge=1024)
    ack_window_frames: int = Field(default=4, ge=1)
    max_behind_seconds: float = Field(default=60.0, gt=0)
    history_bytes: int = Field(default=64 << 20, ge=0)
