"""The scheduler and the model manager around a scripted fake engine (deployments/engine/fakes.py):
queueing, admission, a crash, a hang, a refused request, a deferred offload, close. No Ray, no
model. Asserted in ticks, steps and events; the waits below are bounds against a hung test only.
"""

from __future__ import annotations

import threading
import time

import pytest

from deployments.engine import model_manager as model_manager_module
from deployments.engine import scheduler as scheduler_module
from deployments.engine.fakes import CRASH_MARKER, HANG_MARKER, FakeTTSEngine
from deployments.engine.model_manager import ModelManager, ModelState
from deployments.engine.scheduler import SlotScheduler, Submission
from deployments.protocol import FailureKind, RequestFailed, SynthesisDone, SynthesisRequest
from deployments.settings import EngineSettings

BOUND_S = 10  # against a hung test only
ROWS = 2


class Request:
    """One submission and what its sink received (with the engine's tick at each event)."""

    def __init__(self, scheduler: SlotScheduler, text: str, streamed: bool = False):
        self.scheduler = scheduler
        self.events, self.ticks = [], []
        self.ended = threading.Event()
        self.submission = Submission(SynthesisRequest(text, stream_text=streamed), self._sink)
        scheduler.submit(self.submission)

    def _sink(self, event) -> None:
        engine = self.scheduler.engine
        self.ticks.append(engine.ticks if engine is not None else None)
        self.events.append(event)
        if isinstance(event, (SynthesisDone, RequestFailed)):
            self.ended.set()

    @property
    def job(self):
        return self.submission.job

    def end(self):
        assert self.ended.wait(BOUND_S), "the request was never answered"
        return self.events[-1]

    def finish_text(self, text: str | None = None) -> None:
        self.scheduler.extend(self.submission, text, complete=True)


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + BOUND_S
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.002)


def on_a_row(request: Request) -> None:
    wait_for(lambda: request.job is not None and request.job.row is not None, "never admitted")


@pytest.fixture
def fakes():
    return []


@pytest.fixture
def manager(fakes, monkeypatch):
    def factory(settings, device):
        fakes.append(FakeTTSEngine(settings, device))
        return fakes[-1]

    # A fake's device is only a name: no torch to ask which devices exist (seconds to import).
    monkeypatch.setattr(model_manager_module, "pick_device", lambda requested: requested)
    manager = ModelManager(EngineSettings(device="cpu"), offload_after_s=None, engine_factory=factory)
    yield manager
    manager.close()


@pytest.fixture
def scheduler(manager, fakes, monkeypatch):
    monkeypatch.setattr(scheduler_module, "ERROR_PAUSE_S", 0.0)  # the crash test's retry comes at once
    scheduler = SlotScheduler(manager, max_batch_size=ROWS)
    yield scheduler
    for engine in fakes:
        engine.staging.release.set()  # a hung test must not keep the thread
    scheduler.close()


def test_a_request_beyond_the_rows_waits_and_joins_at_the_tick_a_row_frees(scheduler):
    held = [Request(scheduler, "", streamed=True) for _ in range(ROWS)]
    for request in held:
        on_a_row(request)
    late = Request(scheduler, "Late but whole.")
    wait_for(lambda: late.job is not None, "never prepared")
    assert scheduler.queued == 1 and scheduler.active == ROWS and late.job.row is None
    held[0].finish_text("Now the end.")
    assert isinstance(held[0].end(), SynthesisDone)
    assert isinstance(late.end(), SynthesisDone)
    freed_at = held[0].ticks[-1]  # the tick in which its row finished
    assert late.job.admitted_tick == freed_at  # admitted before the next tick
    assert late.ticks[0] == freed_at + 1      # and spoke in it
    assert [w.word for w in late.events[-1].words] == ["Late", "but", "whole."]
    held[1].finish_text()
    assert isinstance(held[1].end(), SynthesisDone) and scheduler.queued == 0


def test_a_crash_in_a_tick_fails_that_batchs_rows_and_the_next_request_is_served(scheduler, fakes):
    bystander = Request(scheduler, "", streamed=True)
    on_a_row(bystander)
    crash = Request(scheduler, f"This {CRASH_MARKER} fails.")
    for request in (bystander, crash):
        failed = request.end()
        assert isinstance(failed, RequestFailed) and failed.kind == FailureKind.ERROR
        assert "retry" in failed.message and "Staged" not in failed.message  # no internals
    after = Request(scheduler, "Served after the crash.")
    assert isinstance(after.end(), SynthesisDone)
    assert len(fakes) == 1 and fakes[0].warm_ups == 2  # the same engine, its slots rebuilt


def test_a_hung_tick_makes_stalled_s_grow_until_it_moves_again(scheduler, fakes):
    assert scheduler.stalled_s() == 0.0  # nothing to do: not stalled
    hung = Request(scheduler, f"Stuck {HANG_MARKER} here.")
    wait_for(lambda: fakes and fakes[0].staging.hanging.is_set(), "never hung")
    first = scheduler.stalled_s()
    time.sleep(0.02)
    second = scheduler.stalled_s()
    assert second > first >= 0 and second >= 0.02
    assert scheduler.alive and not hung.ended.is_set()
    fakes[0].staging.release.set()
    assert isinstance(hung.end(), SynthesisDone)
    wait_for(lambda: scheduler.stalled_s() == 0.0, "still stalled once idle")


def test_a_request_refused_in_prepare_fails_alone(scheduler):
    speaking = Request(scheduler, "", streamed=True)
    on_a_row(speaking)
    refused = Request(scheduler, "   ")
    failed = refused.end()
    assert isinstance(failed, RequestFailed)
    assert (failed.kind, failed.param) == (FailureKind.INVALID, "text") and "empty" in failed.message
    assert not speaking.ended.is_set() and scheduler.active == 1
    speaking.finish_text("Still here.")
    assert [w.word for w in speaking.end().words] == ["Still", "here."]


def test_offload_is_deferred_until_the_generation_ends(scheduler, manager, fakes):
    speaking = Request(scheduler, "", streamed=True)
    on_a_row(speaking)
    assert manager.offload() == "deferred"
    assert manager.state == ModelState.READY and fakes[0].placements == ["cpu"]  # not moved under a row
    speaking.finish_text("The end.")
    assert isinstance(speaking.end(), SynthesisDone)
    wait_for(lambda: manager.state == ModelState.OFFLOADED, "never offloaded")
    assert fakes[0].placements == ["cpu", "cpu"] and fakes[0].batch_size == 0
    back = Request(scheduler, "Brought back.")
    assert isinstance(back.end(), SynthesisDone)
    assert len(fakes) == 1 and fakes[0].placements == ["cpu", "cpu", "cpu"] and fakes[0].warm_ups == 2


def test_close_stops_the_generation_thread(scheduler):
    done = Request(scheduler, "Before closing.")
    assert isinstance(done.end(), SynthesisDone)
    scheduler.close()
    scheduler._thread.join(BOUND_S)
    assert not scheduler.alive


def test_the_heap_is_handed_back_once_per_idle_spell_never_while_a_row_speaks(scheduler, monkeypatch):
    trims = []
    monkeypatch.setattr(scheduler_module, "HEAP_TRIM_IDLE_S", 0.05)
    monkeypatch.setattr(scheduler_module, "release_free_heap", lambda: trims.append(scheduler.active))
    held = Request(scheduler, "", streamed=True)  # on a row, waiting for words: busy, not idle
    on_a_row(held)
    time.sleep(0.2)  # four idle spells' worth while the row is on
    assert trims == []
    held.finish_text("Done now.")
    assert isinstance(held.end(), SynthesisDone)
    wait_for(lambda: trims, "never trimmed once idle")
    assert isinstance(Request(scheduler, "Once more.").end(), SynthesisDone)
    wait_for(lambda: len(trims) == 2, "not trimmed after the second spell")
    time.sleep(0.2)
    assert trims == [0, 0] and scheduler.heap_trims == 2  # once per spell, with no row on
