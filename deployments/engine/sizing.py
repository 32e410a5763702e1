"""`max_batch_size: auto`: the slot count measured on the device the engine runs on, instead of a
number tuned by hand per GPU type.

After the model is loaded, for each candidate count (ascending) the engine builds and warms up that
many rows (`ensure_slots`), fills every row with a request that keeps speaking (the engine's own
`sizing_request`: any engine kind), times `sizing_ticks` ticks as the scheduler runs them, and
reads its device memory. The choice is the largest candidate whose p95 tick stays within
`realtime_margin` of real time (one tick makes 80 ms of audio for every row) and whose memory fits
`slot_memory_budget_gib`; a candidate that misses either ends the search (a larger one only costs
more). When even the smallest misses, the smallest is taken and the result says so.

Memory is torch's peak reserved memory of this process on its CUDA device: what this deployment
holds, whoever else shares the GPU. On CPU there is no memory bound (the result says so).

The choice is cached on the node's disk (`slot_sizing_cache_dir`), one small JSON file per GPU
type, checkpoint and the settings that change a tick's cost, so a replica woken from zero on the
same kind of node reuses it without measuring again.

Ticks are timed with the engine's clock (`SlotEngine.clock`: the monotonic clock in production, a
scripted one in tests). A tick of the real engine copies its audio to the host, so it ends with
the device's work done: the time is the device's, not the launch queue's. (Reviewed for CUDA, run
on CPU only here.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..protocol import FRAME_SAMPLES, SAMPLE_RATE
from .base import SlotEngine

log = logging.getLogger(__name__)

REAL_TIME_S = FRAME_SAMPLES / SAMPLE_RATE  # one tick makes this much audio for every speaking row
AUTO = "auto"
CACHE_VERSION = 1
GiB = 2**30
# Ticks before the timed ones: rows past their first steps (the audio delay), caches warm.
SETTLE_TICKS = 3


@dataclass
class Candidate:
    """One slot count as measured: p95 tick (seconds), peak memory (GiB; None: not bounded)."""
    slots: int
    tick_p95_s: float | None = None
    memory_gib: float | None = None
    fits: bool = False
    why_not: str | None = None


@dataclass
class SlotSizing:
    """What `auto` chose, and why: the status page and the metrics report it as is."""
    slots: int
    tick_p95_s: float | None       # the chosen count's p95 tick
    tick_budget_s: float           # realtime_margin x 80 ms: a tick must stay within it
    realtime_margin: float
    memory_budget_gib: float | None
    memory_bound: str              # how memory was bounded ("torch reserved on cuda:0", "none: CPU")
    within_margin: bool            # False: even the smallest candidate missed; it was taken anyway
    device_type: str
    from_cache: bool = False
    candidates: list[Candidate] = field(default_factory=list)

    def report(self) -> dict:
        return asdict(self)


def is_auto(value) -> bool:
    return isinstance(value, str) and value.strip().lower() == AUTO


def device_type(device: str) -> str:
    """The GPU's name (the cache's key: an H100 and an L4 choose differently), or "cpu"."""
    if str(device).startswith("cuda"):  # CUDA only: reviewed, never run here
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


def cache_key(engine: SlotEngine) -> dict:
    """What a choice depends on: the kind of device, the checkpoint, the engine and the settings
    that change a tick's cost or the search."""
    s = engine.settings
    return {"version": CACHE_VERSION, "device_type": device_type(engine.device), "engine": type(engine).__name__,
            "checkpoint": s.model_path or s.model_repo, "test_engine": s.test_engine, "n_q": s.n_q,
            "torch_compile": s.torch_compile, "cpu_threads": s.cpu_threads,
            "candidates": list(s.slot_candidates), "realtime_margin": s.realtime_margin,
            "memory_budget_gib": s.slot_memory_budget_gib, "ticks": s.sizing_ticks}


def cache_path(engine: SlotEngine) -> Path | None:
    folder = engine.settings.slot_sizing_cache_dir
    if not folder:
        return None
    digest = hashlib.sha256(json.dumps(cache_key(engine), sort_keys=True).encode()).hexdigest()[:16]
    return Path(folder).expanduser() / f"slots-{digest}.json"


def _read_cache(path: Path, key: dict) -> SlotSizing | None:
    try:
        saved = json.loads(path.read_text())
        if saved.get("key") != key:
            return None
        result = dict(saved["result"])
        result["candidates"] = [Candidate(**c) for c in result.get("candidates", [])]
        return SlotSizing(**{**result, "from_cache": True})
    except FileNotFoundError:
        return None
    except Exception as exc:  # a damaged or older file: measure again, and overwrite it
        log.warning("slot sizing cache %s unreadable (%s): measuring again", path, exc)
        return None


def _write_cache(path: Path, key: dict, result: SlotSizing) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as out:
            json.dump({"key": key, "result": result.report()}, out, indent=1)
        os.replace(out.name, path)  # whole or not at all: two replicas of a node may write it
    except OSError as exc:
        log.warning("slot sizing cache %s not written (%s)", path, exc)


def choose_slots(engine: SlotEngine) -> SlotSizing:
    """The slot count for `engine` (loaded, no row busy): from the node's cache, or measured now
    (and cached). Leaves the chosen count's rows built."""
    path = cache_path(engine)
    key = cache_key(engine)
    cached = _read_cache(path, key) if path is not None else None
    if cached is not None:
        log.info("slot sizing from %s: %d slots", path, cached.slots)
        engine.ensure_slots(cached.slots)
        return cached
    result = measure(engine)
    log.info("slot sizing measured: %d slots, p95 tick %s s (budget %.3f s), memory bound: %s",
             result.slots, result.tick_p95_s, result.tick_budget_s, result.memory_bound)
    if path is not None:
        _write_cache(path, key, result)
    return result


def measure(engine: SlotEngine) -> SlotSizing:
    """Measures the candidates (see the module's text) and builds the chosen count's rows."""
    s = engine.settings
    budget_s = s.realtime_margin * REAL_TIME_S
    memory = _MemoryReader(engine.device)
    measured: list[Candidate] = []
    for slots in sorted(set(s.slot_candidates)):
        candidate = _measure_one(engine, slots, s.sizing_ticks, memory)
        measured.append(candidate)
        if candidate.tick_p95_s is not None and candidate.tick_p95_s > budget_s:
            candidate.why_not = f"p95 tick {candidate.tick_p95_s * 1000:.1f} ms > {budget_s * 1000:.1f} ms"
        elif s.slot_memory_budget_gib is not None and candidate.memory_gib is not None \
                and candidate.memory_gib > s.slot_memory_budget_gib:
            candidate.why_not = f"{candidate.memory_gib:.2f} GiB > budget {s.slot_memory_budget_gib:g} GiB"
        candidate.fits = candidate.why_not is None
        if not candidate.fits:
            break
    fitting = [c for c in measured if c.fits]
    chosen = fitting[-1] if fitting else measured[0]
    engine.ensure_slots(chosen.slots)
    return SlotSizing(slots=chosen.slots, tick_p95_s=chosen.tick_p95_s, tick_budget_s=budget_s,
                      realtime_margin=s.realtime_margin, memory_budget_gib=s.slot_memory_budget_gib,
                      memory_bound=memory.describe(), within_margin=bool(fitting),
                      device_type=device_type(engine.device), candidates=measured)


def _measure_one(engine: SlotEngine, slots: int, ticks: int, memory: "_MemoryReader") -> Candidate:
    candidate = Candidate(slots)
    engine.close_slots()
    memory.reset()
    try:
        engine.ensure_slots(slots)
        jobs = [engine.prepare(engine.sizing_request(), lambda event: None) for _ in range(slots)]
        for job in jobs:
            engine.admit(job)
        for _ in range(SETTLE_TICKS):
            engine.tick()
        times = []
        for _ in range(ticks):
            started = engine.clock()
            engine.tick()
            times.append(engine.clock() - started)
        ended = slots - engine.busy_rows
        candidate.tick_p95_s = float(np.percentile(times, 95)) if times else None
        candidate.memory_gib = memory.peak_gib()
        if ended:
            log.warning("slot sizing: %d of %d probe rows ended before the timing did", ended, slots)
    except Exception as exc:
        if "out of memory" not in str(exc).lower():
            raise
        # CUDA only (reviewed, never run here): the count does not fit on the device at all.
        candidate.why_not = "out of memory"
    finally:
        engine.fail_all("slot sizing is over")  # the probe rows: their sinks drop every event
        engine.close_slots()
        memory.release()
    return candidate


class _MemoryReader:
    """Peak device memory of this process while a candidate runs: torch's reserved memory on
    CUDA (what the deployment holds on a GPU it may share), nothing on CPU."""

    def __init__(self, device: str):
        self.device = str(device)
        self.cuda = self.device.startswith("cuda")

    def describe(self) -> str:
        return f"torch peak reserved memory on {self.device}" if self.cuda else "none: no memory bound on CPU"

    def reset(self) -> None:
        if self.cuda:  # CUDA only: reviewed, never run here
            import torch

            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(torch.device(self.device))

    def peak_gib(self) -> float | None:
        if not self.cuda:
            return None
        import torch

        return torch.cuda.max_memory_reserved(torch.device(self.device)) / GiB

    def release(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.empty_cache()
