"""Staged faults for the fault-tolerance tests only (setting `test_faults`, never in production).

The engine is the real one; a request whose text contains HANG_MARKER makes the generation thread
stop dead at its next tick, as a stuck CUDA kernel or a deadlock would. What must follow is the
service's business: the worker's health check fails once no progress was made for
`generation_stall_s`, Serve replaces the replica, and every client gets a clean error.
"""

from __future__ import annotations

import logging
import threading

from .tts import TTSEngine

log = logging.getLogger(__name__)

HANG_MARKER = "[[hang]]"


class FaultyEngine(TTSEngine):
    def tick(self) -> bool:
        if any(HANG_MARKER in job.request.text for job in self._jobs.values()):
            log.warning("test_faults: the generation thread hangs now, as asked by a request")
            threading.Event().wait()  # forever
        return super().tick()
