"""Feeding a slot engine (any `SlotEngine`, base.py): requests are prepared off the generation
thread, join a free row at the next tick, and wait in order when every row is busy.

Two kinds of threads: a small pool prepares requests (text, voice files, possibly a hub download:
nothing of that may pause the model), and one generation thread owns the engine and ticks it for
as long as a row speaks. The model never runs on the replica's event loop.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from . import sizing
from .heap import release_free_heap
from .base import InvalidRequest, Job, SlotEngine
from .hub import ModelUnavailableError
from .model_manager import ModelManager
from ..protocol import DEFAULT_SLOTS, FailureKind, RequestFailed, SynthesisRequest, TranscriptionRequest
from .voices import VoiceError

log = logging.getLogger(__name__)

PREPARE_THREADS = 2
# How long the generation thread sleeps when every speaking row waits for words that a client
# has not sent yet (it is woken at once when words or a request arrive).
IDLE_WAIT_S = 0.05
# After a generation failed (a bug, a device error): a pause, so that an error that repeats never
# spins the thread.
ERROR_PAUSE_S = 1.0
# How long every row must have been idle before the heap that the rows' audio used is given back
# to the kernel (heap.py): once per idle spell, never between the bursts of a busy replica.
HEAP_TRIM_IDLE_S = 2.0


@dataclass
class Submission:
    request: SynthesisRequest | TranscriptionRequest
    sink: Callable[[object], None]  # gets the engine kind's events (protocol.py)
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted_at: float = field(default_factory=time.monotonic)
    job: Job | None = None  # set once prepared
    prepared: threading.Event = field(default_factory=threading.Event)


def failure_for(exc: Exception, request_id: str) -> RequestFailed:
    """What to tell the caller of a request that could not be prepared."""
    if isinstance(exc, InvalidRequest):
        return RequestFailed(str(exc), kind=FailureKind.INVALID, param=exc.param)
    if isinstance(exc, VoiceError):
        return RequestFailed(str(exc), kind=FailureKind.INVALID, param="voice")
    if isinstance(exc, ModelUnavailableError):
        log.warning("request %s: %s", request_id, exc.detail)  # str(exc) is the client's version
        return RequestFailed(str(exc), kind=FailureKind.UNAVAILABLE)
    log.error("preparing request %s failed", request_id, exc_info=exc)
    return RequestFailed("the worker could not prepare this request (the details are in its log)")


class SlotScheduler:
    """`max_batch_size`: the rows of the engine, or "auto": measured once the model is loaded
    (sizing.py; `sizing` then holds the choice). Rows beyond the count are never admitted: the
    requests wait here, in order, for a free row."""

    def __init__(self, manager: ModelManager, max_batch_size: int | str = DEFAULT_SLOTS,
                 on_tick: Callable[[float], None] | None = None,
                 on_underruns: Callable[[int], None] | None = None):
        self.manager = manager
        self._on_tick = on_tick  # gets the seconds of each tick that stepped (metrics)
        self._on_underruns = on_underruns  # gets the streams that ran dry at each tick (metrics)
        self.max_batch_size = max_batch_size
        self.sizing: sizing.SlotSizing | None = None
        self.underruns = 0  # streams whose playback ran dry, all engines so far
        self.heap_trims = 0  # idle spells after which the freed heap was handed back (heap.py)
        self._cond = threading.Condition()
        self._submitted: collections.deque[Submission] = collections.deque()  # not yet prepared
        self._preparing = 0
        self._ready: collections.deque[Submission] = collections.deque()  # prepared, waiting for a row
        self._closed = False
        self._pool = concurrent.futures.ThreadPoolExecutor(PREPARE_THREADS, thread_name_prefix="tts-prepare")
        self.busy_samples: collections.deque[int] = collections.deque(maxlen=100)
        self.engine: SlotEngine | None = None  # the engine while the generation thread holds it
        self._beat = time.monotonic()  # the generation thread's last sign of progress
        self._thread = threading.Thread(target=self._run, name="tts-generation", daemon=True)
        self._thread.start()

    # ---- callers -------------------------------------------------------------------------
    def submit(self, submission: Submission) -> None:
        with self._cond:
            self._submitted.append(submission)
            self._cond.notify_all()

    def extend(self, submission: Submission, more, complete: bool = False) -> None:
        """More input for a streamed request, words or audio (`complete`: its last). Blocks until
        the request is prepared; a refused input fails the request."""
        while not submission.prepared.wait(0.5):
            if submission.cancelled.is_set():  # failed or gone before it was prepared
                return
        engine = self.manager.engine
        if submission.job is None or engine is None or submission.cancelled.is_set():
            return
        try:
            engine.extend(submission.job, more, complete)
        except Exception as exc:
            submission.cancelled.set()  # frees its row at the next tick
            submission.sink(failure_for(exc, submission.request.request_id))
        with self._cond:
            self._cond.notify_all()

    @property
    def max_batch_size(self) -> int | str:
        return self._max_batch_size

    @max_batch_size.setter
    def max_batch_size(self, value: int | str) -> None:
        if sizing.is_auto(value):
            value = sizing.AUTO
        else:
            value = max(1, int(value))
        self._max_batch_size = value

    @property
    def auto(self) -> bool:
        return self._max_batch_size == sizing.AUTO

    @property
    def slots(self) -> int:
        """The rows a replica admits: the configured count, or what `auto` chose. Before that
        choice is made (the model not loaded yet), the smallest candidate, so that no one counts
        on rows that may not exist."""
        if not self.auto:
            return self._max_batch_size
        if self.sizing is not None:
            return self.sizing.slots
        return min(self.manager.settings.slot_candidates)

    def _rows_for(self, engine: SlotEngine) -> int:
        """The rows to build for `engine`: measured (or read from the node's cache) the first
        time `auto` meets a loaded engine; once chosen, the count stays for the replica's life."""
        if self.auto and self.sizing is None:
            self.sizing = sizing.choose_slots(engine)
        return self.slots

    @property
    def queued(self) -> int:
        """Requests not speaking yet (being prepared or waiting for a free row)."""
        return len(self._submitted) + self._preparing + len(self._ready)

    @property
    def active(self) -> int:
        engine = self.engine
        return engine.busy_rows if engine is not None else 0

    def counters(self) -> dict:
        """Model steps and requests admitted to a row so far, and the last busy-row counts (one
        sample per change)."""
        engine = self.engine or self.manager.engine
        return {"steps": engine.steps if engine else 0, "admissions": engine.admissions if engine else 0,
                "recent_busy_slots": list(self.busy_samples)[-20:]}

    def stream_leads(self) -> tuple[float, ...]:
        """Each streamed row's audio ahead of its playback, seconds (below 0: behind it)."""
        engine = self.engine
        return engine.stream_leads if engine is not None else ()

    @property
    def buffered_s(self) -> float:
        """Streamed audio made ahead of its clients' playback, all rows (pacing.py)."""
        engine = self.engine
        return engine.buffered_s if engine is not None else 0.0

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stalled_s(self) -> float:
        """Seconds the generation thread has gone without progress while holding the engine with
        rows speaking or requests waiting; 0 when it is fine or has nothing to do. (Loading the
        model is not counted: its hub and disk reads have their own time limits.)"""
        engine = self.engine
        if engine is None or not (engine.busy_rows or self._has_work()):
            return 0.0
        return time.monotonic() - self._beat

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- preparing (pool threads) ------------------------------------------------------------
    def _prepare(self, engine: SlotEngine, submission: Submission) -> None:
        try:
            submission.job = engine.prepare(submission.request, submission.sink, submission.cancelled.is_set)
        except Exception as exc:  # this request alone fails
            submission.sink(failure_for(exc, submission.request.request_id))
        finally:
            submission.prepared.set()
            with self._cond:
                self._preparing -= 1
                if submission.job is not None and not submission.cancelled.is_set():
                    self._ready.append(submission)
                self._cond.notify_all()

    def _dispatch(self, engine: SlotEngine) -> None:
        with self._cond:
            while self._submitted:
                submission = self._submitted.popleft()
                if submission.cancelled.is_set():
                    continue
                self._preparing += 1
                self._pool.submit(self._prepare, engine, submission)

    def _admit(self, engine: SlotEngine) -> None:
        with self._cond:
            while self._ready and engine.free_rows:
                submission = self._ready.popleft()
                if not submission.cancelled.is_set():
                    engine.admit(submission.job)

    # ---- the generation thread ---------------------------------------------------------------
    def _has_work(self) -> bool:
        return bool(self._submitted or self._preparing or self._ready)

    def _run(self) -> None:
        spoke = False  # the rows ran since the heap was last handed back
        while True:
            if spoke and self._idle_for(HEAP_TRIM_IDLE_S):
                release_free_heap()  # outside the lock: a request that comes meanwhile is not held up
                self.heap_trims += 1
                spoke = False
            with self._cond:
                while not self._has_work() and not self._closed and not spoke:
                    self._cond.wait()
                if self._closed:
                    return
                if not self._has_work():
                    continue  # back to the idle wait above
            spoke = True
            try:
                with self.manager.acquire() as engine:
                    self._serve_until_idle(engine)
            except ModelUnavailableError as exc:
                # Everyone waiting would only hit the same failure: tell them now.
                self._fail_waiting(RequestFailed(str(exc), kind=FailureKind.UNAVAILABLE))
            except Exception:  # a bug or a CUDA error: the rows were failed, the queue goes on
                log.exception("generation failed")
                time.sleep(ERROR_PAUSE_S)

    def _idle_for(self, seconds: float) -> bool:
        """Waits up to `seconds` for work; True: none came (nor a close)."""
        with self._cond:
            self._cond.wait_for(lambda: self._has_work() or self._closed, seconds)
            return not self._has_work() and not self._closed

    def _count_underruns(self, count: int) -> None:
        self.underruns += count
        if self._on_underruns is not None:
            self._on_underruns(count)

    def _fail_waiting(self, failure: RequestFailed) -> None:
        with self._cond:
            waiting = list(self._submitted) + list(self._ready)
            self._submitted.clear()
            self._ready.clear()
        for submission in waiting:
            submission.sink(failure)

    def _serve_until_idle(self, engine: SlotEngine) -> None:
        self._beat = time.monotonic()
        self.engine = engine
        try:
            engine.ensure_slots(self._rows_for(engine))
            underruns = engine.underruns
            while True:
                self._beat = time.monotonic()
                self._dispatch(engine)
                self._admit(engine)
                started = time.perf_counter()
                stepped = engine.tick()
                if stepped and self._on_tick is not None:
                    self._on_tick(time.perf_counter() - started)
                if engine.underruns != underruns:
                    self._count_underruns(engine.underruns - underruns)
                    underruns = engine.underruns
                if not self.busy_samples or self.busy_samples[-1] != engine.busy_rows:
                    self.busy_samples.append(engine.busy_rows)
                if stepped:
                    continue
                with self._cond:
                    if not engine.busy_rows and not self._has_work():
                        return  # idle: the manager may offload the model now
                    if not self._submitted and not (self._ready and engine.free_rows):
                        self._cond.wait(IDLE_WAIT_S)
        except Exception:
            engine.fail_all("generation failed on the GPU worker (the details are in its log); retry the request")
            engine.close_slots()  # rebuilt from scratch by the next request
            raise
        finally:
            self.engine = None
