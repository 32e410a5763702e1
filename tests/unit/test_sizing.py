"""`max_batch_size: auto` (deployments/engine/sizing.py) on the scripted fake engine, whose tick
costs what the test says on the engine's scripted clock (no sleep, whatever this CPU's speed):
the count the margin implies, never more than the largest candidate, the smallest when none
fits, the node's cache on a second start; then the admission that follows it (the scheduler
never admits more rows than it chose, the packing router counts the replica full at that count).
"""

from __future__ import annotations

import json
import threading

import pytest

from deployments.engine import model_manager as model_manager_module
from deployments.engine import sizing
from deployments.engine.fakes import FakeSTTEngine, FakeTTSEngine
from deployments.engine.model_manager import ModelManager
from deployments.engine.scheduler import SlotScheduler, Submission
from deployments.protocol import SynthesisDone, SynthesisRequest
from deployments.routing import rank_by_slots
from deployments.settings import EngineSettings

BOUND_S = 10  # against a hung test only


def issue_cost(rows: int) -> float:
    """The issue's example: a tick of 2 ms per row plus 10 ms."""
    return 0.010 + 0.002 * rows


def fake(tmp_path, cost=issue_cost, engine=FakeTTSEngine, **settings) -> FakeTTSEngine:
    settings = {"device": "cpu", "slot_sizing_cache_dir": str(tmp_path / "cache"), "sizing_ticks": 5, **settings}
    return engine(EngineSettings(**settings), "cpu", step_cost=cost)


def test_auto_picks_the_largest_candidate_within_the_margin_and_stops_at_the_first_that_misses(tmp_path):
    engine = fake(tmp_path, slot_candidates=[4, 8, 16, 32, 64], realtime_margin=0.6)
    chosen = sizing.choose_slots(engine)
    # Budget 0.6 x 80 ms = 48 ms: 16 rows tick in 42 ms, 32 in 74 ms; 64 is never built.
    assert chosen.slots == 16 and engine.batch_size == 16 and chosen.within_margin
    assert chosen.tick_budget_s == pytest.approx(0.048)
    assert chosen.tick_p95_s == pytest.approx(issue_cost(16))
    assert [(c.slots, c.fits) for c in chosen.candidates] == [(4, True), (8, True), (16, True), (32, False)]
    assert chosen.candidates[-1].tick_p95_s == pytest.approx(issue_cost(32))
    assert engine.busy_rows == 0  # the probe rows are gone
    assert chosen.memory_bound.startswith("none") and chosen.candidates[0].memory_gib is None  # CPU


def test_every_count_as_a_candidate_gives_the_exact_count_the_margin_implies(tmp_path):
    # 10 ms + 2.5 ms a row within 48 ms: 15 rows (15.2 would be the limit).
    engine = fake(tmp_path, cost=lambda rows: 0.010 + 0.0025 * rows, slot_candidates=list(range(1, 41)))
    assert sizing.choose_slots(engine).slots == 15


def test_never_more_than_the_largest_candidate_and_the_smallest_when_none_fits(tmp_path):
    cheap = fake(tmp_path, cost=lambda rows: 0.001, slot_candidates=[2, 8, 32])
    chosen = sizing.choose_slots(cheap)
    assert chosen.slots == 32 and [c.slots for c in chosen.candidates] == [2, 8, 32]
    # (The cache key knows no scripted cost: this "other GPU" keeps no cache.)
    slow = fake(tmp_path, cost=lambda rows: 0.1, slot_candidates=[2, 8, 32], slot_sizing_cache_dir=None)
    chosen = sizing.choose_slots(slow)
    assert chosen.slots == 2 and not chosen.within_margin and slow.batch_size == 2


def test_a_second_start_reads_the_nodes_cache_and_measures_nothing(tmp_path):
    first = fake(tmp_path, slot_candidates=[4, 8, 16, 32])
    measured = sizing.choose_slots(first)
    assert not measured.from_cache and first.ticks > 0
    files = list((tmp_path / "cache").glob("slots-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["key"]["device_type"] == "cpu"
    again = fake(tmp_path, slot_candidates=[4, 8, 16, 32])  # a wake from zero: a new engine
    cached = sizing.choose_slots(again)
    assert cached.from_cache and cached.slots == measured.slots == 16
    assert again.ticks == 0 and again.warm_ups == 1 and again.batch_size == 16  # only the chosen rows built
    # Another margin is another choice: measured again, into its own file.
    other = fake(tmp_path, slot_candidates=[4, 8, 16, 32], realtime_margin=0.9)
    assert sizing.choose_slots(other).slots == 16 and not other.ticks == 0
    assert len(list((tmp_path / "cache").glob("slots-*.json"))) == 2


def test_an_audio_in_engine_is_sized_through_the_same_protocol(tmp_path):
    engine = fake(tmp_path, engine=FakeSTTEngine, slot_candidates=[4, 16, 32])
    assert sizing.choose_slots(engine).slots == 16


# ---- admission follows the choice -----------------------------------------------------------------
@pytest.fixture
def auto_scheduler(tmp_path, monkeypatch):
    engines = []

    def factory(settings, device):
        engines.append(FakeTTSEngine(settings, device, step_cost=issue_cost))
        return engines[-1]

    monkeypatch.setattr(model_manager_module, "pick_device", lambda requested: requested)
    settings = EngineSettings(device="cpu", slot_candidates=[2, 4, 8], realtime_margin=0.25,  # 20 ms: 4 rows (18 ms), not 8 (26)
                              slot_sizing_cache_dir=str(tmp_path / "cache"), sizing_ticks=3)
    manager = ModelManager(settings, offload_after_s=None, engine_factory=factory)
    scheduler = SlotScheduler(manager, max_batch_size="auto")
    yield scheduler, engines
    scheduler.close()
    manager.close()


def test_a_replica_never_admits_more_rows_than_auto_chose(auto_scheduler):
    scheduler, engines = auto_scheduler
    assert scheduler.auto and scheduler.slots == 2  # before the choice: the smallest candidate
    ended = threading.Semaphore(0)
    busy_seen = []

    def sink(event):
        if scheduler.engine is not None:
            busy_seen.append(scheduler.engine.busy_rows)
        if isinstance(event, SynthesisDone):
            ended.release()

    for _ in range(7):  # more than it chose, fewer than the largest candidate (max_ongoing_requests)
        scheduler.submit(Submission(SynthesisRequest("one two three four five six"), sink))
    for _ in range(7):
        assert ended.acquire(timeout=BOUND_S), "a request was never answered"
    assert scheduler.sizing.slots == scheduler.slots == 4 and engines[0].batch_size == 4
    assert max(busy_seen) == 4 and max(scheduler.busy_samples) == 4
    # What the replica reports to the router is the count it chose, and at it the router leaves it out.
    routing = {"max_batch_size": scheduler.slots, "active": 4, "queued": 3, "model": "ready"}
    roomy = {"max_batch_size": 8, "active": 4, "queued": 0, "model": "ready"}

    class Replica:
        def __init__(self, name, stats):
            self.replica_id, self.routing_stats = name, stats

    full, free = Replica("auto", routing), Replica("other", roomy)
    assert rank_by_slots([full, free], lambda _: 0) == [[free]]
    # One slot short of its count it takes requests again; a replica that is full takes none.
    full.routing_stats = {**routing, "active": 3, "queued": 0}
    free.routing_stats = {**roomy, "active": 8}
    assert rank_by_slots([full, free], lambda _: 0) == [[full]]


def test_a_configured_count_is_kept_and_auto_is_spelled_loosely():
    class Manager:
        settings = EngineSettings(device="cpu", slot_candidates=[16, 4])

    scheduler = SlotScheduler.__new__(SlotScheduler)
    scheduler.manager, scheduler.sizing = Manager(), None
    scheduler.max_batch_size = "12"
    assert not scheduler.auto and scheduler.slots == 12
    scheduler.max_batch_size = " AUTO "
    assert scheduler.auto and scheduler.slots == 4 and Manager.settings.slot_candidates == [4, 16]
