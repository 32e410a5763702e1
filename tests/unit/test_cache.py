"""serve_app/service/cache.py: one read shared by concurrent callers, kept for its TTL (no Ray, no clock waits)."""

from __future__ import annotations

import asyncio

import pytest

from serve_app.service.cache import TTLCache


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_concurrent_callers_share_one_read_and_reuse_it_until_the_ttl_passes():
    clock, started = Clock(), []

    async def load() -> int:
        started.append(1)
        await asyncio.sleep(0.01)  # a round of Ray calls, in flight while others ask
        return len(started)

    async def main():
        cache = TTLCache(load, ttl_s=5.0, clock=clock)
        assert cache.age_s() is None
        assert await asyncio.gather(*(cache.get() for _ in range(10))) == [1] * 10
        clock.now += 4.9
        assert await cache.get() == 1 and cache.loads == 1 and cache.age_s() == pytest.approx(4.9)
        clock.now += 0.2  # stale: the next callers share one new read
        assert await asyncio.gather(*(cache.get() for _ in range(5))) == [2] * 5
        assert cache.loads == 2
        cache.invalidate()
        assert await cache.get() == 3

    asyncio.run(main())


def test_a_failed_read_reaches_every_waiter_and_is_not_kept():
    clock, calls = Clock(), []

    async def load() -> str:
        calls.append(1)
        await asyncio.sleep(0.01)
        if len(calls) == 1:
            raise RuntimeError("registry down")
        return "ok"

    async def main():
        cache = TTLCache(load, ttl_s=5.0, clock=clock)
        results = await asyncio.gather(*(cache.get() for _ in range(3)), return_exceptions=True)
        assert [type(r) for r in results] == [RuntimeError] * 3 and len(calls) == 1
        assert await cache.get() == "ok" and len(calls) == 2  # tried again at once

    asyncio.run(main())


def test_a_cancelled_caller_does_not_cancel_the_read_others_wait_on():
    async def load() -> str:
        await asyncio.sleep(0.05)
        return "facts"

    async def main():
        cache = TTLCache(load, ttl_s=5.0, clock=Clock())
        leaving = asyncio.ensure_future(cache.get())
        staying = asyncio.ensure_future(cache.get())
        await asyncio.sleep(0.01)
        leaving.cancel()
        assert await staying == "facts" and cache.loads == 1

    asyncio.run(main())
