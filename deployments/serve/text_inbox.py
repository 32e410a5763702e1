"""Input for requests that are already running, from the ingress to the replica that runs them:
the words of a streamed synthesis (Kyutai's TTS socket), the audio and markers of a streamed
transcription (Kyutai's ASR socket).

A Serve handle call goes to whichever replica the router picks, so the rest of a running stream's
input cannot be sent as new calls. Each worker replica owns one `TextInbox` actor (it dies with the
replica); a streamed request opens with an `InputFeedOpened` event carrying the inbox's handle,
the ingress `put`s the session's input there, and the replica `take`s it.
"""

from __future__ import annotations

import asyncio
import collections

import ray

# Input waits here only until the replica takes them (it always waits on `take`); this bounds what
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

    async def put(self, session: str, item: object, end: bool = False) -> None:
        """Input for `session` (words, audio, a marker; None: nothing), `end` when the client sent its last."""
        pending, arrived = self._session(session)
        pending.append((item, end))
        arrived.set()

    async def take(self, session: str, timeout_s: float = 30.0) -> list[tuple[object, bool]]:
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
