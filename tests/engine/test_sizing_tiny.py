"""`max_batch_size: auto` (deployments/engine/sizing.py) on the real engine: the tiny random-weight
checkpoint on CPU, moshi's own code path. Which count it picks depends on this CPU, so the test
asserts what must hold on any machine: a candidate chosen and reported with its measured tick,
the rows built, a request served on them afterwards, and the node's cache read on a second start.
"""

from __future__ import annotations

from deployments.engine import sizing
from deployments.engine.tts import TTSEngine
from deployments.protocol import SynthesisDone, SynthesisRequest

CANDIDATES = [1, 2]


def test_auto_picks_a_count_on_the_tiny_model_and_reports_it(engine_settings, tmp_path):
    settings = engine_settings.model_copy(update={"slot_candidates": CANDIDATES, "sizing_ticks": 3,
                                                  "slot_sizing_cache_dir": str(tmp_path)})
    engine = TTSEngine(settings, settings.device)
    chosen = sizing.choose_slots(engine)
    print("auto on the tiny model:", chosen.report())
    assert chosen.slots in CANDIDATES and engine.batch_size == chosen.slots and engine.busy_rows == 0
    assert chosen.device_type == "cpu" and chosen.memory_bound.startswith("none")
    first = chosen.candidates[0]
    assert first.slots == 1 and first.tick_p95_s > 0 and engine.steps >= sizing.SETTLE_TICKS + 3
    assert chosen.tick_p95_s == next(c.tick_p95_s for c in chosen.candidates if c.slots == chosen.slots)
    assert chosen.within_margin == (chosen.tick_p95_s <= chosen.tick_budget_s)
    # The rows it leaves serve a request.
    events = []
    job = engine.prepare(SynthesisRequest("Sized."), events.append)
    assert engine.admit(job)
    while engine.busy_rows:
        engine.tick()
    assert isinstance(events[-1], SynthesisDone)
    # A second start of the same model on this node measures nothing.
    engine.close_slots()
    steps = engine.steps
    again = sizing.choose_slots(engine)
    assert again.from_cache and again.slots == chosen.slots and engine.steps == steps
