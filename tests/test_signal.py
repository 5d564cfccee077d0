"""Signal: current value plus changes, without sockets."""

from __future__ import annotations

import operator
import threading
from typing import Any

import pytest

from client_sync import WritableSignal, async_iter


def test_get_and_behavior_subject_semantics() -> None:
    sig = WritableSignal(1)
    seen: list[int] = []
    assert sig.get() == 1
    sub = sig.subscribe(seen.append)
    assert seen == [1]  # the current value at once
    assert sig.set(2) and not sig.set(2)  # equal: no emission
    sig.set(3)
    assert seen == [1, 2, 3] and sig.get() == 3
    sub.dispose()
    sig.set(4)
    assert seen == [1, 2, 3]


def test_identity_equality_for_mappings() -> None:
    sig: WritableSignal[dict[str, int]] = WritableSignal({}, equals=operator.is_)
    seen: list[Any] = []
    sig.subscribe(seen.append)
    sig.set({"a": 1})
    sig.set({"a": 1})  # a new object: emitted (one emission per batch)
    assert len(seen) == 3


def test_map_derives_and_emits_only_on_change() -> None:
    sig = WritableSignal(1)
    parity = sig.map(lambda v: v % 2)
    assert parity.get() == 1  # computed even when unobserved
    seen: list[int] = []
    parity.subscribe(seen.append)
    for v in (3, 5, 6, 8, 9):
        sig.set(v)
    assert seen == [1, 0, 1]


def test_first_and_last_observer_hooks() -> None:
    calls: list[str] = []
    sig = WritableSignal(
        0,
        on_first_subscribe=lambda: calls.append("first"),
        on_last_dispose=lambda: calls.append("last"),
    )
    a = sig.subscribe(lambda _: None)
    b = sig.map(lambda v: v + 1).subscribe(lambda _: None)  # derived observers count too
    assert calls == ["first"]
    a.dispose()
    assert calls == ["first"]
    b.dispose()
    assert calls == ["first", "last"]
    b.dispose()  # idempotent
    assert calls == ["first", "last"]


def test_a_raising_subscriber_is_detached_alone() -> None:
    sig = WritableSignal(0)
    errors: list[Exception] = []
    good: list[int] = []

    def bad(v: int) -> None:
        if v == 1:
            raise ValueError("ui bug")

    sig.subscribe(on_next=bad, on_error=errors.append)
    sig.subscribe(good.append)
    sig.set(1)
    sig.set(2)
    assert [str(e) for e in errors] == ["ui bug"] and good == [0, 1, 2]


def test_get_from_another_thread() -> None:
    sig = WritableSignal(0)
    for v in range(100):
        sig.set(v)
    out: list[int] = []
    t = threading.Thread(target=lambda: out.append(sig.get()))
    t.start()
    t.join(5)
    assert out == [99]


@pytest.mark.asyncio
async def test_async_iteration() -> None:
    sig = WritableSignal("a")
    got: list[str] = []

    async def consume() -> None:
        async for v in sig:
            got.append(v)
            if v == "c":
                break

    import asyncio

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    sig.set("b")
    sig.set("c")
    await asyncio.wait_for(task, 5)
    assert got == ["a", "b", "c"] and not sig.observed  # breaking out disposed it
    import reactivex

    assert [x async for x in async_iter(reactivex.of(1, 2, 3))] == [1, 2, 3]


@pytest.mark.asyncio
async def test_leaving_async_for_disposes_at_once_whatever_the_reason() -> None:
    import asyncio

    sig = WritableSignal(0)

    async def breaks() -> None:
        async for _ in sig:
            break
        assert not sig.observed  # disposed before the next statement, no loop turn needed

    await asyncio.wait_for(breaks(), 5)

    async def returns() -> int:
        async for v in sig:
            return v
        return -1

    assert await asyncio.wait_for(returns(), 5) == 0
    assert not sig.observed

    async def raises() -> None:
        async for _ in sig:
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await asyncio.wait_for(raises(), 5)
    assert not sig.observed

    async def waits() -> None:
        async for _ in sig:
            pass

    task = asyncio.create_task(waits())
    await asyncio.sleep(0)
    assert sig.observed
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not sig.observed

    it = aiter(sig)
    assert sig.observed and await anext(it) == 0
    await it.aclose()  # type: ignore[attr-defined]
    assert not sig.observed
