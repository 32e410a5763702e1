"""Words for requests that are already speaking, from the ingress to the replica that runs them.

A Serve handle call goes to whichever replica the router picks, so words for a running WebSocket
session cannot be sent as new calls. Each `TTSWorker` replica owns one `TextInbox` actor (it dies
with the replica); a request with `stream_text` opens with a `TextFeedOpened` event carrying the
inbox's handle, the ingress `put`s the session's words there, and the replica `take`s them.
"""

from __future__ import annotations

import asyncio
import collections

import ray

# Words wait here only until the replica takes them (it always waits on `take`); this bounds what
# a session may leave behind if its replica stopped taking.
MAX_PENDING_PER_SESSION = 10_000


@ray.remote(num_cpus=0, max_concurrency=1000)
class TextInbox:
    def __init__(self):
        self._pending: dict[str, collections.deque] = {}
        self._arrived: dict[str, asyncio.Event] = {}

    def _session(self, session: str) -> tuple[collections.deque, asyncio.Event]:
        if session not in self._pending:
            self._pending[session] = collections.deque(maxlen=MAX_PENDING_PER_SESSION)
            self._arrived[session] = asyncio.Event()
        return self._pending[session], self._arrived[session]

    async def put(self, session: str, text: str | None, end: bool = False) -> None:
        """Words for `session` (None: no words), `end` when the client sent its last."""
        pending, arrived = self._session(session)
        pending.append((text, end))
        arrived.set()

    async def take(self, session: str, timeout_s: float = 30.0) -> list[tuple[str | None, bool]]:
        """What arrived for `session` since the last take; waits up to `timeout_s` for something."""
        pending, arrived = self._session(session)
        if not pending:
            try:
                await asyncio.wait_for(arrived.wait(), timeout_s)
            except asyncio.TimeoutError:
                return []
        items = list(pending)
        pending.clear()
        arrived.clear()
        return items

    async def close(self, session: str) -> None:
        self._pending.pop(session, None)
        self._arrived.pop(session, None)
