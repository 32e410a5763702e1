"""A value read now and then, shared by every request of an ingress replica.

Status pages are polled (the web page asks for the GPU status every 3 s, per open tab) and each
read may cost a round of Ray calls. `TTLCache` keeps the last value for `ttl_s` seconds, and when it
is older, concurrent callers wait on ONE refresh instead of starting one each.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, Generic, TypeVar

T = TypeVar("T")


class TTLCache(Generic[T]):
    """`await get()` returns a value at most `ttl_s` seconds old, read by `load()` (a coroutine
    function: it must not block the event loop). A failed read is not kept: its callers get the
    exception and the next call tries again. A caller that is cancelled does not cancel the read
    others wait on."""

    def __init__(self, load: Callable[[], Awaitable[T]], ttl_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self._load, self.ttl_s, self._clock = load, ttl_s, clock
        self._value: T | None = None
        self._read_at = float("-inf")
        self._refresh: asyncio.Future | None = None
        self.loads = 0  # reads started, for status pages and tests

    def age_s(self) -> float | None:
        """Seconds since the value kept was read (None before the first read)."""
        return None if self._read_at == float("-inf") else self._clock() - self._read_at

    async def get(self) -> T:
        if self._clock() - self._read_at < self.ttl_s:
            return self._value
        refresh = self._refresh
        if refresh is None or refresh.get_loop() is not asyncio.get_running_loop():
            refresh = self._refresh = asyncio.ensure_future(self._read())
            # Retrieved here, so a read whose callers all went away logs no "never retrieved".
            refresh.add_done_callback(lambda done: done.cancelled() or done.exception())
        return await asyncio.shield(refresh)

    async def _read(self) -> T:
        self.loads += 1
        try:
            value = await self._load()
            self._value, self._read_at = value, self._clock()
            return value
        finally:
            self._refresh = None

    def invalidate(self) -> None:
        """The next `get()` reads again."""
        self._read_at = float("-inf")
