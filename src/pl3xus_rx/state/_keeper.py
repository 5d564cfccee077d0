"""The server's state file, kept: loaded at start, saved at an interval and at shutdown.

A save takes a snapshot of the World on the event loop (shallow copies: about 15 ms per
100,000 entities of 3 components), then encodes and writes it in a thread of its own
(:func:`~._file.write_state`: atomic), so the loop goes on serving meanwhile. Saves never
overlap: a thread that finds another still writing waits for it, so files land in the
order their snapshots were taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from ..commands import RESTORED_ANONYMOUS, Commands, Owner
from ..exceptions import StateConflict, StateError
from ..net import HealthCheck
from ..sync._registry import ComponentRegistration, ComponentRegistry
from ..world import EntityId, World
from ._file import StateLock, check_writable, read_state, write_state
from ._format import EncodeReport, TypeShape, decode_state, encode_state, shape_of
from ._restore import apply, plan, validate
from ._types import Migration, StateLoaded, StateSaved, StateSettings, StateStatistics

__all__ = ["StateKeeper"]

logger = logging.getLogger(__name__)

FAILURE_LOG_INTERVAL = 60.0
"""Seconds between two log lines about saves that keep failing."""


def _writer() -> str:
    from importlib import metadata

    try:
        return f"pl3xus-rx {metadata.version('pl3xus-rx')}"
    except metadata.PackageNotFoundError:
        return "pl3xus-rx"


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Hundreds of thousands of small objects made at once: the cyclic GC would walk the
    growing heap again and again (it triples a load's time); none of them form cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class StateKeeper:
    """One server's state file.

    Args:
        path: The file.
        settings: The save interval.
        world: The World it holds.
        registry: The synced types (those with ``persist`` are saved).
        commands: The spawn ledger's owners.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        settings: StateSettings,
        world: World,
        registry: ComponentRegistry,
        commands: Commands,
    ) -> None:
        self.path = os.path.realpath(os.fspath(path))
        self.settings = settings
        self.world = world
        self.registry = registry
        self.commands = commands
        self.migrations: dict[str | type[BaseModel], Migration | None] = {}
        self.drops: dict[str | type[BaseModel], None] = {}
        self.loaded: StateLoaded | None = None
        self.load_done = False
        self._lock: StateLock | None = None
        self._shapes: dict[tuple[type[BaseModel], str], TypeShape] = {}
        self._saved_counts: tuple[Any, ...] | None = None
        self._write_lock = threading.Lock()  # (one writer at a time, in snapshot order)
        self._saving: asyncio.Lock | None = None
        self._reading: asyncio.Future[StateSaved] | None = None  # the last save's thread
        self._task: asyncio.Task[None] | None = None
        self._saves = self._skipped = self._failures = self._failing = 0
        self._last: StateSaved | None = None
        self._last_error: str | None = None
        self._logged_failure = -float("inf")
        self._writer = _writer()
        self._told: set[type[BaseModel]] = set()  # unsynced types said not to be saved

    # ------------------------------------------------------------------ loading

    def shape(self, reg: ComponentRegistration[Any]) -> TypeShape:
        """The saved shape of a synced type (computed once)."""
        key = (reg.model, reg.name)
        found = self._shapes.get(key)
        if found is None:
            found = self._shapes[key] = shape_of(reg.model, reg.name)
        return found

    def _take_lock(self) -> None:
        if self._lock is None:
            self._lock = StateLock(self.path)

    def load(self) -> StateLoaded | None:
        """Restore the World from the file (see ``SyncServer.load_state``)."""
        if self.load_done:
            raise StateConflict(
                f"state file {self.path} was loaded already: load_state() is called once, "
                "before serve()",
                path=self.path,
            )
        if self.world.entities():
            raise StateConflict(
                f"cannot load state file {self.path}: the World holds "
                f"{len(self.world.entities()):,} entities already. Call server.load_state() "
                "after registering the components and before spawning anything, and spawn "
                "the initial entities only when it returns None (a first start)",
                path=self.path,
            )
        if self._lock is None:  # (nobody else may be saving it; held from start() on)
            StateLock(self.path).release()
        started = time.perf_counter()
        data = read_state(self.path)
        if data is None:
            logger.info("no state file at %s yet: starting afresh", self.path)
            self.load_done = True
            return None
        with _no_gc():
            saved = decode_state(data, self.path)
            del data
            restore = plan(saved, self.registry, self.shape, self.migrations, self.drops, self.path)
            values = validate(restore, self.path)
            apply(self.world, saved, values, self._restore_owner, self.path)
        # (what the load made lives as long as the World: straight to the oldest generation,
        # rather than walked by a young collection, then another, at the first allocations)
        _promote_young_objects()
        self.load_done = True
        loaded = self.loaded = StateLoaded(
            path=self.path,
            written_at=saved.written_at,
            writer=saved.writer,
            entities=len(saved.entities),
            values=sum(len(ids) for _, ids, _ in values),
            owners=len(saved.owners),
            migrated=restore.migrated,
            dropped=restore.dropped,
            not_persisted=restore.not_persisted,
            bytes=saved.size,
            seconds=time.perf_counter() - started,
        )
        logger.info(
            "state restored from %s: %d entities, %d values (%.0f ms; written %.0f s ago)",
            self.path,
            loaded.entities,
            loaded.values,
            loaded.seconds * 1e3,
            max(0.0, time.time() - saved.written_at),
        )
        for name, count in restore.migrated.items():
            logger.warning("state: %d saved %s value(s) migrated to its new shape", count, name)
        for name, count in restore.dropped.items():
            logger.warning("state: %d saved %s value(s) dropped (drop_state)", count, name)
        for name, count in restore.not_persisted.items():
            logger.info("state: %d saved %s value(s) not loaded: persist(False)", count, name)
        if not (restore.migrated or restore.dropped or restore.not_persisted):
            self._saved_counts = self._counts()  # (the file holds what the World holds)
        return loaded

    def _restore_owner(self, entity: EntityId, name: str | None) -> None:
        owner = RESTORED_ANONYMOUS if name is None else Owner(name=name)
        self.commands.restore_spawned(entity, owner)

    # ------------------------------------------------------------------ saving

    def _persisted(self) -> list[ComponentRegistration[Any]]:
        return [reg for reg in self.registry if reg.persist]

    def _counts(self) -> tuple[Any, ...]:
        world = self.world
        return (
            world.change_count(),
            tuple((reg.name, world.change_count(reg.model)) for reg in self._persisted()),
        )

    async def start(self) -> None:
        """Load if nobody did, check that saves can be written, save now if the load
        changed something (a migration, a drop), and save every interval from now on.

        Raises:
            StateError: loading failed, or saves cannot be written.
        """
        if not self.load_done:
            self.load()
        self._take_lock()
        try:
            await asyncio.to_thread(check_writable, self.path)
            self._saving = asyncio.Lock()
            if self.loaded is not None and self._saved_counts is None:
                await self.save()  # (the file now holds the migrated shapes)
        except BaseException:
            self._release()
            raise
        self._task = asyncio.get_running_loop().create_task(
            self._every_interval(), name="pl3xus-state-saves"
        )

    async def stop(self) -> None:
        """Stop the interval and save one last time (whatever changed since the last)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._saving is not None:
            try:
                await self.save()
            except StateError as exc:
                logger.error("the last save at shutdown failed: %s", exc)
        self._release()

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.settings.save_interval)
            with contextlib.suppress(Exception):  # (logged and counted by save)
                await self.save()

    async def save(self, *, force: bool = False) -> StateSaved | None:
        """Save now (unless nothing saved changed since the last save, and not ``force``).
        Returns the save, or ``None`` if skipped. Cancelling stops the wait, not the save.

        Raises:
            StateWriteFailed: it could not be written (logged, counted).
        """
        if self._saving is None:
            self._saving = asyncio.Lock()
        async with self._saving:
            if self._reading is not None:  # (a save whose wait was cancelled: let it end)
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._reading)
            counts = self._counts()
            if not force and counts == self._saved_counts:
                self._skipped += 1
                return None
            started = time.perf_counter()
            written_at = time.time()
            world = self.world
            types = [(reg, self.shape(reg)) for reg in self._persisted()]
            lock = None
            if self._lock is None:  # (a save outside serve(): locked while it writes)
                try:
                    lock = StateLock(self.path)  # (before the snapshot: nothing to undo)
                except Exception as exc:
                    self._failed(exc)
                    raise
            _promote_young_objects()
            snapshot = world.snapshot()
            self._unsynced(snapshot.models)
            owners = self.commands.spawn_owners()
            on_loop = time.perf_counter() - started
            loop = asyncio.get_running_loop()
            done: asyncio.Future[StateSaved] = loop.create_future()
            done.add_done_callback(lambda _: world.release(snapshot))  # (the thread is done)
            if lock is not None:
                done.add_done_callback(lambda _: lock.release())
            self._reading = done

            def work() -> None:
                try:
                    result: StateSaved | BaseException = self._write(
                        snapshot, owners, types, written_at, started, on_loop
                    )
                except BaseException as exc:  # (handed to the loop, raised there)
                    result = exc
                with contextlib.suppress(RuntimeError):  # (the loop is gone: nobody waits)
                    loop.call_soon_threadsafe(_settle, done, result)

            try:
                # Not a daemon: a save under way finishes even when the program exits.
                threading.Thread(target=work, name="pl3xus-state-save").start()
            except BaseException as exc:  # (no thread: settled here, the snapshot released)
                _settle(done, exc)
            try:
                saved = await asyncio.shield(done)
            except Exception as exc:
                self._failed(exc)
                raise
            self._saves += 1
            self._failing = 0
            if self._last_error is not None:
                logger.warning("state saves work again: %s", self.path)
            self._last_error = None
            self._last = saved
            self._saved_counts = counts
            logger.debug(
                "state saved to %s: %d entities, %d values, %d bytes in %.0f ms (%.1f ms on "
                "the loop)",
                self.path,
                saved.entities,
                saved.values,
                saved.bytes,
                saved.seconds * 1e3,
                saved.snapshot_seconds * 1e3,
            )
            return saved

    def _write(
        self,
        snapshot: Any,
        owners: dict[EntityId, Owner],
        types: list[tuple[ComponentRegistration[Any], TypeShape]],
        written_at: float,
        started: float,
        on_loop: float,
    ) -> StateSaved:
        """In the save's thread: encode and write."""
        report = EncodeReport()
        with self._write_lock:
            chunks = encode_state(
                snapshot,
                owners,
                types,
                self.world.entry_value,
                writer=self._writer,
                report=report,
                written_at=written_at,
            )
            nbytes = write_state(self.path, _yielding(chunks))
        return StateSaved(
            path=self.path,
            written_at=written_at,
            entities=report.entities,
            values=report.values,
            left_out=dict(report.left_out),
            bytes=nbytes,
            snapshot_seconds=on_loop,
            seconds=time.perf_counter() - started,
        )

    def _unsynced(self, models: list[type[BaseModel]]) -> None:
        """Say once per type that a component type the server does not sync is not saved."""
        new = [
            m
            for m in models
            if m not in self._told and self.registry.find(m) is None and self.world.count(m)
        ]
        if new:
            self._told.update(new)
            logger.info(
                "state: components of %s are not saved in %s: the server does not sync that "
                "type (sync it, with .visible_to(...) to keep it from clients, to save it)",
                ", ".join(m.__name__ for m in new),
                self.path,
            )

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        self._failing += 1
        self._last_error = str(exc)
        now = time.monotonic()
        if self._failing == 1 or now - self._logged_failure >= FAILURE_LOG_INTERVAL:
            self._logged_failure = now
            since = self._last.written_at if self._last is not None else None
            held = (
                f"the file holds the World as of {time.ctime(since)}"
                if since is not None
                else "the file holds what was there before"
            )
            logger.error(
                "%s (%d failed in a row; %s)",
                exc,
                self._failing,
                held,
                exc_info=None if isinstance(exc, StateError) else exc,
            )

    # ------------------------------------------------------------------ reading out

    def statistics(self) -> StateStatistics:
        """How the file has been kept so far."""
        return StateStatistics(
            path=self.path,
            loaded=self.loaded,
            saves=self._saves,
            skipped=self._skipped,
            failures=self._failures,
            failing=self._failing,
            last=self._last,
            last_error=self._last_error,
        )

    def health(self) -> HealthCheck:
        """``/healthz``'s ``state`` check: not ok while saves fail (clients are still
        admitted: the World is fine, only its copy on disk is getting old)."""
        detail: dict[str, Any] = {"path": self.path, "saves": self._saves}
        if self._last is not None:
            detail["saved_seconds_ago"] = round(max(0.0, time.time() - self._last.written_at), 1)
        if self._failing:
            detail["failing"] = self._failing
            detail["reason"] = f"state saves fail: {self._last_error}"
            return HealthCheck(False, detail)
        return HealthCheck(True, detail)


def _promote_young_objects() -> None:
    """Move every object the garbage collector tracks to its oldest generation, in
    constant time (``gc.freeze()`` then ``gc.unfreeze()``: two list splices), unless the
    application froze objects itself (then nothing is done).

    Why: a World whose values change steadily allocates as much as it frees, so CPython's
    young generation can grow to every value replaced since the last collection (100,000
    of them: 50 ms to walk) without a collection being due. A save keeps the values it
    replaces alive until it is written, so the allocations now outnumber the frees and
    start young collections at once, each walking everything young. Promoted, those
    objects wait for the next full collection, which walks them anyway."""
    global _promoted_since_full, _full_collections
    if not gc.isenabled() or gc.get_freeze_count() != 0:
        return
    full = gc.get_stats()[2]["collections"]
    if full != _full_collections:
        _full_collections, _promoted_since_full = full, 0
    elif _promoted_since_full >= FULL_COLLECTION_EVERY:
        # Promoted objects do not count towards CPython's next full collection: when
        # none came for a while, one now (cyclic garbage promoted young is freed).
        gc.collect()
        _full_collections, _promoted_since_full = gc.get_stats()[2]["collections"], 0
    _promoted_since_full += 1
    gc.freeze()
    gc.unfreeze()


FULL_COLLECTION_EVERY = 60
"""Promotions without a full collection after which the next one runs a full collection
first (at the default save interval, at most one every 5 minutes)."""

_promoted_since_full = 0
_full_collections = -1


def _settle(future: asyncio.Future[StateSaved], result: StateSaved | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


PAUSE = 0.0005
"""Seconds the save's thread sleeps between two pieces: the event loop's thread, if it
waits for the interpreter, takes it at once (rather than after Python's switch interval,
5 ms), even when both threads share one core."""


def _yielding(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks``, letting the event loop's thread run between two (each is a few
    thousand rows of work that holds the interpreter)."""
    for chunk in chunks:
        yield chunk
        time.sleep(PAUSE)
