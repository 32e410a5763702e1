"""Batching generations on one model: requests that arrive while the model is busy join the next
round. A round generates the next text piece of every admitted request in one batched call, so a
long text does not hold newcomers back for more than one piece.

The scheduler owns a thread: the model never runs on the replica's event loop.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .engine import InvalidRequest
from .hub import ModelUnavailableError
from .model_manager import ModelManager
from .synthesis import SynthesisEvent, SynthesisFailed, SynthesisRequest
from .voices import VoiceError

log = logging.getLogger(__name__)


@dataclass
class Submission:
    request: SynthesisRequest
    sink: Callable[[SynthesisEvent], None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted_at: float = field(default_factory=time.monotonic)


class BatchScheduler:
    def __init__(self, manager: ModelManager, max_batch_size: int = 8):
        self.manager = manager
        self.max_batch_size = max_batch_size
        self._queue: collections.deque[Submission] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=100)
        self.rounds = 0
        self.active = 0
        self._thread = threading.Thread(target=self._run, name="tts-generation", daemon=True)
        self._thread.start()

    def submit(self, submission: Submission) -> None:
        with self._cond:
            self._queue.append(submission)
            self._cond.notify()

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _take(self, limit: int) -> list[Submission]:
        taken = []
        with self._cond:
            while self._queue and len(taken) < limit:
                submission = self._queue.popleft()
                if not submission.cancelled.is_set():
                    taken.append(submission)
        return taken

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
            try:
                with self.manager.acquire() as engine:
                    self._serve_until_idle(engine)
            except ModelUnavailableError as exc:
                # Everyone waiting would only hit the same failure: tell them now.
                for submission in self._take(len(self._queue)):
                    submission.sink(SynthesisFailed(str(exc), kind="unavailable"))
            except Exception:  # a bug or a CUDA error: the batch was failed, the queue goes on
                log.exception("generation failed")
                time.sleep(1.0)  # never spin on an error that repeats

    @staticmethod
    def _prepare(engine, submission: Submission):
        """The request's job, or None after telling its caller why it cannot run. A failure here
        concerns this request alone (bad input, a voice file that cannot be fetched)."""
        try:
            return engine.prepare(submission.request, submission.sink, submission.cancelled.is_set)
        except InvalidRequest as exc:
            submission.sink(SynthesisFailed(str(exc), kind="invalid", param=exc.param))
        except VoiceError as exc:
            submission.sink(SynthesisFailed(str(exc), kind="invalid", param="voice"))
        except ModelUnavailableError as exc:
            submission.sink(SynthesisFailed(str(exc), kind="unavailable"))
        except Exception as exc:
            log.exception("preparing request %s failed", submission.request.request_id)
            submission.sink(SynthesisFailed(f"cannot prepare the request: {exc.__class__.__name__}: {exc}"))
        return None

    def _serve_until_idle(self, engine) -> None:
        jobs = []
        try:
            while True:
                for submission in self._take(self.max_batch_size - len(jobs)):
                    job = self._prepare(engine, submission)
                    if job is not None:
                        jobs.append(job)
                if not jobs:
                    return
                self.active = len(jobs)
                self.batch_sizes.append(len(jobs))
                self.rounds += 1
                engine.run_round(jobs)
                jobs = [job for job in jobs if not job.finished and not job.is_cancelled()]
        except Exception as exc:
            for job in jobs:
                job.sink(SynthesisFailed(f"generation failed: {exc.__class__.__name__}: {exc}"))
            raise
        finally:
            self.active = 0
