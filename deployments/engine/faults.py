"""Staged faults of the REAL engine, for the fault-tolerance tests only (setting `test_faults`,
never in production).

The engine is the real one; a request whose text contains HANG_MARKER makes the generation thread
stop dead at its next tick, as a stuck CUDA kernel or a deadlock would. What must follow is the
service's business: the worker's health check fails once no progress was made for
`generation_stall_s`, Serve replaces the replica, and every client gets a clean error. The markers
and their staging are the fakes' (fakes.py), which stage crashes and slow steps too.
"""

from __future__ import annotations

from .fakes import HANG_MARKER, StagedFaults
from .tts import TTSEngine

__all__ = ["FaultyEngine", "HANG_MARKER"]


class FaultyEngine(StagedFaults, TTSEngine):
    # Only the hang: a hang is forever here (nothing sets `staging.release`), and the real model
    # speaks every other text as it is.
    fault_markers = (HANG_MARKER,)
