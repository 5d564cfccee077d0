"""``pl3xus-rx record URL -o FILE``: a client that records what one identity sees.

:class:`ClientRecorder` connects like any client (a :class:`~client_sync.SyncProvider`,
with its reconnects, resyncs and acknowledgements), subscribes to every component type the
server's WELCOME lists (or the chosen ones), and writes what each applied SYNC frame
changed in its replica as one BATCH record of the recording format
(:mod:`pl3xus_rx.protocol`, ``docs/recording.md``), timed by the frame's ``as_of`` (the
authority's flush time; on a protocol-v1 link, the time it arrived). Values are whole:
field deltas are resolved against the replica. Once a (re)subscription's snapshots are
complete (the first one, after a reconnect, after a resync) a KEYFRAME of the replica
follows, and one at least every ``keyframe_seconds``.

A client recording carries no hierarchy (parents are not sent to clients) and only what
the identity was sent: a type or an entity it cannot see is not in the file.

Memory: the recorder holds one replica, like any client, and the records of one frame;
what each record may hold is bounded by what the network takes in one frame
(``NetworkSettings``) and the replica's size. A value that cannot be written again (which
a server speaking the protocol never sends) is left out of its record, counted and logged;
a frame that cannot be applied writes nothing (the resync's snapshot brings a keyframe).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from pl3xus_rx.exceptions import RecordingError
from pl3xus_rx.net import NetworkSettings
from pl3xus_rx.protocol import (
    ChangeKind,
    RecordedType,
    RecordingHeader,
    RecordKind,
    encode_record,
    msgpack_encode,
)
from pl3xus_rx.recording import RecordFiles, RecordSettings

from ._credential import TokenSource
from .provider import SyncProvider
from .registry import ClientTypeRegistry
from .session import Applied, SyncArrived
from .states import ReconnectPolicy

__all__ = ["ClientRecorder", "RecorderStatistics"]

logger = logging.getLogger(__name__)


class _Raw(BaseModel):
    """A value as the wire gave it: every field kept as sent (no validation)."""

    model_config = ConfigDict(extra="allow")


def _raw_model(name: str) -> type[BaseModel]:
    model: type[BaseModel] = create_model("Raw_" + re.sub(r"\W", "_", name), __base__=_Raw)
    return model


def _array_header(count: int) -> bytes:
    if count < 16:
        return bytes((0x90 | count,))
    if count < 0x10000:
        return b"\xdc" + struct.pack(">H", count)
    return b"\xdd" + struct.pack(">I", count)


@dataclass(frozen=True, slots=True)
class RecorderStatistics:
    """What a :class:`ClientRecorder` has done.

    Attributes:
        records: Records written (header, keyframes and END included).
        bytes: Bytes written.
        batches: BATCH records written.
        keyframes: KEYFRAME records written.
        items: Values written in batches.
        frames: SYNC frames applied.
        left_out: Values left out because they could not be written.
        paths: The files written, in order.
    """

    records: int
    bytes: int
    batches: int
    keyframes: int
    items: int
    frames: int
    left_out: int
    paths: tuple[Path, ...]


class _Tap(SyncProvider):
    """A SyncProvider that hands each applied SYNC frame to the recorder."""

    def __init__(self, recorder: ClientRecorder, url: str | Sequence[str], **options: Any) -> None:
        super().__init__(url, ClientTypeRegistry.builder().build(), check_schema=False, **options)
        self._recorder = recorder

    async def _connect_once(self) -> None:
        await super()._connect_once()
        cid = self._cid
        if cid is not None:
            self._recorder._welcomed(self, self._net.welcome_of(cid).body)

    def _apply(self, arrived: SyncArrived) -> Applied | None:
        result = super()._apply(arrived)
        self._recorder._applied(arrived.frame, result)
        return result


class ClientRecorder:
    """Records what the identity of ``token`` is sent by the server at ``url``.

    Use it as an async context manager (entering connects and subscribes; the first file
    opens once the first snapshots are complete), or call :meth:`run`.

    Args:
        url: ``ws://host:port/`` of an authority or a gateway (or several, as
            :class:`SyncProvider` takes them).
        path: The first file; a taken name or a rotation gets the next numbered name.
        token: The credential (as for :class:`SyncProvider`).
        types: The component types recorded, by wire name (default: every one the
            WELCOME lists).
        keyframe_seconds: At most this long (recording time) between keyframes.
        rotate_bytes: Start a new file once one holds this many bytes.
        rotate_seconds: Start a new file once one spans this many seconds.
        network: Settings of the underlying network (frame size limits...).
        reconnect: Backoff policy.

    Raises:
        ValueError: a setting is out of range.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        path: str | os.PathLike[str],
        *,
        token: TokenSource | None = None,
        types: Sequence[str] | None = None,
        keyframe_seconds: float = 5.0,
        rotate_bytes: int | None = None,
        rotate_seconds: float | None = None,
        network: NetworkSettings | None = None,
        reconnect: ReconnectPolicy | None = None,
    ) -> None:
        self.settings = RecordSettings(
            path,
            keyframe_seconds=keyframe_seconds,
            rotate_bytes=rotate_bytes,
            rotate_seconds=rotate_seconds,
        )
        self.origin = url if isinstance(url, str) else ",".join(url)
        self._wanted = None if types is None else tuple(types)
        self._provider = _Tap(self, url, token=token, network=network, reconnect=reconnect)
        self._types: tuple[RecordedType, ...] | None = None
        self._index: dict[str, int] = {}  # wire name -> type index
        self._models: dict[str, type[BaseModel]] = {}
        self._keep: list[Any] = []
        self._identity: str | None = None
        self._files: RecordFiles | None = None
        self._time = 0.0  # recording time: the last frame's as_of (monotone)
        self._last_keyframe = -float("inf")
        self._keyframe_due = True  # snapshots under way: a keyframe once they are complete
        self.failed: str | None = None
        """Why recording stopped early (the server's types changed, a full disk), or
        ``None``."""
        self.stopped = asyncio.Event()
        """Set when recording stops on its own (see :attr:`failed`)."""
        self._batches = self._keyframes = self._items_written = self._frames = self._left_out = 0

    # ------------------------------------------------------------------ life cycle

    async def __aenter__(self) -> ClientRecorder:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect and subscribe to the recorded types.

        Raises:
            ConnectFailed: the first connection failed.
            ValueError: ``types`` names a type the server does not sync (for this identity).
        """
        provider = self._provider
        try:
            await provider.__aenter__()
            for name, model in self._models.items():
                signal = provider.components(model)
                self._keep.append(signal.subscribe(lambda _: None))
                logger.debug("recording %s", name)
        except BaseException:
            await provider.close()
            raise

    async def close(self) -> None:
        """Write the END record, close the file and the connection. Safe to call twice."""
        for subscription in self._keep:
            subscription.dispose()
        self._keep = []
        files = self._files
        if files is not None:
            files.close()
        await self._provider.close()

    async def run(self, *, seconds: float | None = None, stop: asyncio.Event | None = None) -> None:
        """Start, record until ``stop`` is set, ``seconds`` have passed or recording fails
        (:attr:`failed`), then close. Cancelling is safe (the file is closed)."""
        async with self:
            await self.wait(seconds=seconds, stop=stop)

    async def wait(
        self, *, seconds: float | None = None, stop: asyncio.Event | None = None
    ) -> None:
        """Wait until ``stop`` is set, ``seconds`` have passed, or recording fails."""
        waits = [asyncio.ensure_future(self.stopped.wait())]
        if stop is not None:
            waits.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await wait

    @property
    def provider(self) -> SyncProvider:
        """The client it records through (connection, stale, identity...)."""
        return self._provider

    @property
    def paths(self) -> tuple[Path, ...]:
        """The files written so far."""
        return tuple(self._files.paths) if self._files is not None else ()

    @property
    def recording(self) -> bool:
        """Whether a file is open (the first snapshots are in)."""
        return self._files is not None and self._files.failed is None and self.failed is None

    def statistics(self) -> RecorderStatistics:
        """What it has written so far."""
        files = self._files
        return RecorderStatistics(
            records=files.records if files else 0,
            bytes=files.bytes if files else 0,
            batches=self._batches,
            keyframes=self._keyframes,
            items=self._items_written,
            frames=self._frames,
            left_out=self._left_out,
            paths=self.paths,
        )

    def _fail(self, why: str) -> None:
        if self.failed is None:
            self.failed = why
            logger.error("recording stopped: %s", why)
            if self._files is not None:
                self._files.close()
        self.stopped.set()

    # ------------------------------------------------------------------ the welcome

    def _welcomed(self, provider: _Tap, welcome: Mapping[str, Any]) -> None:
        rows = [row for row in welcome.get("components") or [] if isinstance(row, list)]
        table = {
            str(row[1]): RecordedType(str(row[1]), tuple(str(f) for f in row[3]), str(row[2]))
            for row in rows
        }
        if self._types is None:  # the first connection: what is recorded, from now on
            wanted = list(table) if self._wanted is None else list(self._wanted)
            unknown = [name for name in wanted if name not in table]
            if unknown:
                raise ValueError(
                    f"{self.origin} does not sync {', '.join(map(repr, unknown))} (for this "
                    f"identity); it syncs {', '.join(table) or 'nothing'}"
                )
            self._types = tuple(table[name] for name in wanted)
            self._index = {t.name: i for i, t in enumerate(self._types)}
            self._models = {name: _raw_model(name) for name in wanted}
            # (built directly: the builder refuses extra='allow', rightly for user types)
            provider.registry = ClientTypeRegistry(self._models)
            identity = welcome.get("identity")
            if isinstance(identity, dict) and isinstance(identity.get("name"), str):
                self._identity = identity["name"]
            logger.info("recording %s as %r: %s", self.origin, self._identity, ", ".join(wanted))
        else:
            changed = [t.name for t in self._types if table.get(t.name) != t]
            if changed:
                self._fail(
                    f"after a reconnect, {self.origin} syncs {', '.join(changed)} with "
                    "another shape (or not at all); start a new recording"
                )
                return
        self._keyframe_due = True  # the renewed snapshots end in a keyframe

    # ------------------------------------------------------------------ frames

    def _applied(self, frame: list[Any], result: Applied | None) -> None:
        if self.failed is not None or self._types is None:
            return
        stamp = frame[3] if len(frame) == 5 else None
        # (a time that is no number, or not finite, is the arrival time: a server's lie
        # about time must not stop keyframes or make the file unseekable)
        at = float(stamp) if isinstance(stamp, int | float) else time.time()
        if not math.isfinite(at):
            at = time.time()
        self._time = max(self._time, at)
        if result is None:  # a gap or a bad frame: a resync brings fresh snapshots
            self._keyframe_due = True
            return
        self._frames += 1
        files = self._files
        if files is not None and result.changes:
            self._write_batch(result)
        if self._keyframe_due and self._provider._session.synced:
            self._keyframe_due = False
            if files is None:
                self._open()
            else:
                self._write(self._keyframe(self._time))
        elif (
            files is not None
            and not self._keyframe_due
            and self._time - self._last_keyframe >= self.settings.keyframe_seconds
        ):
            self._write(self._keyframe(self._time))

    def _open(self) -> None:
        files = RecordFiles(self.settings, self._begin, clock=lambda: self._time)
        try:
            files.open()
        except RecordingError as exc:
            self._fail(str(exc))
            return
        self._files = files

    def _begin(self, started: float) -> tuple[RecordingHeader, bytes]:
        assert self._types is not None
        header = RecordingHeader(
            "client", started, self._types, False, self.origin, self._identity, None
        )
        return header, self._keyframe(started)

    def _write(self, record: bytes) -> None:
        files = self._files
        if files is None:
            return
        files.write(record)
        if files.failed is not None:
            self._fail(files.failed)

    def _views(self) -> dict[int, Mapping[int, BaseModel]]:
        """Type index -> the replica's values of it."""
        provider = self._provider
        store = provider._session.store
        out: dict[int, Mapping[int, BaseModel]] = {}
        for sub_id, sub in provider._by_id.items():
            index = self._index.get(sub.spec.name)
            if index is not None:
                out[index] = store.view(sub_id)
        return out

    def _items(self, index: int, pairs: list[tuple[int, BaseModel]]) -> tuple[int, bytes]:
        """How many items, and their msgpack array (array header included): in one call,
        or, if a value cannot be written, item by item without it (counted, logged)."""
        assert self._types is not None
        kind = self._types[index]
        rows = [
            [entity, [(value.__pydantic_extra__ or {}).get(f) for f in kind.fields]]
            for entity, value in pairs
            if type(entity) is int
        ]
        if len(rows) == len(pairs):
            try:
                return len(rows), msgpack_encode(rows)
            except (TypeError, ValueError, OverflowError):
                pass  # item by item below
        out: list[bytes] = []
        for entity, value in pairs:
            try:
                if type(entity) is not int:
                    raise TypeError(f"entity id {entity!r:.40} is not an integer")
                fields = value.__pydantic_extra__ or {}
                out.append(msgpack_encode([entity, [fields.get(f) for f in kind.fields]]))
            except (TypeError, ValueError, OverflowError) as exc:
                self._left_out += 1
                logger.warning(
                    "a %r value (entity %r) left out of the recording: %s", kind.name, entity, exc
                )
        return len(out), _array_header(len(out)) + b"".join(out)

    def _keyframe(self, time_: float) -> bytes:
        views = self._views()
        entities = sorted({e for view in views.values() for e in view if type(e) is int})
        parts = [
            _array_header(3),
            msgpack_encode(entities),
            msgpack_encode([None] * len(entities)),
            _array_header(len(views)),
        ]
        for index, view in sorted(views.items()):
            _count, items = self._items(index, list(view.items()))
            parts += [_array_header(2), msgpack_encode(index), items]
        self._keyframes += 1
        self._last_keyframe = time_
        return encode_record(RecordKind.KEYFRAME, time_, b"".join(parts))

    def _write_batch(self, applied: Applied) -> None:
        provider = self._provider
        # per type: entity -> its last change's kind (the frame's final word on it)
        last: dict[int, dict[int, ChangeKind]] = {}
        for change in applied.changes:
            sub = provider._by_id.get(change.subscription)
            index = None if sub is None else self._index.get(sub.spec.name)
            if index is not None:
                last.setdefault(index, {})[change.entity] = change.kind
        if not last:
            return
        views = self._views()
        groups: list[bytes] = []
        for index, changed in sorted(last.items()):
            view = views.get(index, {})
            upserts: list[tuple[int, BaseModel]] = []
            removed: list[int] = []
            despawned: list[int] = []
            for entity, kind in changed.items():
                value = view.get(entity)
                if value is not None:
                    upserts.append((entity, value))
                elif type(entity) is not int:
                    continue
                elif kind == ChangeKind.DESPAWNED:
                    despawned.append(entity)
                else:
                    removed.append(entity)
            count, items = self._items(index, upserts)
            self._items_written += count
            groups.append(
                b"".join(
                    (
                        _array_header(4),
                        msgpack_encode(index),
                        items,
                        msgpack_encode(removed),
                        msgpack_encode(despawned),
                    )
                )
            )
        body = b"".join((_array_header(2), b"\x90", _array_header(len(groups)), *groups))
        self._batches += 1
        self._write(encode_record(RecordKind.BATCH, self._time, body))
