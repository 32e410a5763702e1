"""Pacing of streamed rows (deployments/engine/pacing.py, applied by SlotEngine.tick), asserted in
engine steps on the scripted fake with a clock the test moves: a streamed row runs at most the
lead ahead of real-time playback, frozen rows cost no step while the others go on, an overdue
stream ends with its row free, and neither a real-time reader nor a short text ever waits."""

from __future__ import annotations

import pytest

from deployments.engine.fakes import FakeTTSEngine
from deployments.protocol import FRAME_SAMPLES, SAMPLE_RATE, FailureKind, SynthesisDone, SynthesisFailed, SynthesisRequest
from deployments.settings import EngineSettings

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE  # 0.08 s: the fake makes one frame per step of a row
LEAD_S, GRACE_S = 1.0, 0.5
LONG_TEXT = " ".join(["word"] * 40)  # 80 frames: 6.4 s of audio


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine():
    engine = FakeTTSEngine(EngineSettings(device="cpu", stream_lead_s=LEAD_S, stream_grace_s=GRACE_S), "cpu")
    engine.clock = Clock()
    engine.ensure_slots(3)
    return engine


def admit(engine, text: str, rate: float | None = 1.0, **request) -> tuple[object, list]:
    events: list = []
    job = engine.prepare(SynthesisRequest(text, playback_rate=rate, **request), events.append)
    assert engine.admit(job)
    return job, events


def ticks_until_frozen(engine, job, limit: int = 1000) -> int:
    """Ticks the engine until `job` stops stepping (its row is ahead); returns the ticks taken."""
    for ticks in range(limit):
        before = job.steps
        engine.tick()
        if job.steps == before:
            return ticks
    raise AssertionError("the row never stopped")


def test_a_row_ahead_stops_stepping_while_the_others_go_on_and_resumes_with_the_clock(engine):
    paced, _ = admit(engine, LONG_TEXT)
    whole, _ = admit(engine, LONG_TEXT, rate=None)  # a whole clip: never paced
    ticks_until_frozen(engine, paced)
    # With the clock standing still, the row made the lead and one frame more, then stopped.
    assert paced.frames_out == int(LEAD_S / FRAME_S) + 1 and paced.steps == paced.frames_out
    for _ in range(10):
        engine.tick()
    assert paced.steps == paced.frames_out == 13  # frozen: no step, no frame
    assert whole.steps == 24  # the other row went on, one step a tick (13 + the one that found it ahead + 10)
    assert engine.buffered_s == pytest.approx(13 * FRAME_S)

    engine.clock.now += 0.4  # 0.4 s played: 5 frames' room
    ticks_until_frozen(engine, paced)
    assert paced.frames_out == 18
    assert engine.buffered_s == pytest.approx(18 * FRAME_S - 0.4)


def test_when_every_row_is_ahead_a_tick_is_no_tick(engine):
    paced, _ = admit(engine, LONG_TEXT)
    ticks_until_frozen(engine, paced)
    ticks, steps = engine.ticks, engine.steps
    assert engine.tick() is False
    assert (engine.ticks, engine.steps) == (ticks, steps)


def test_a_stream_behind_its_playback_beyond_lead_and_grace_ends_with_its_row_free(engine):
    paced, events = admit(engine, LONG_TEXT)
    other, other_events = admit(engine, LONG_TEXT)
    ticks_until_frozen(engine, paced)
    made = paced.output_s  # 13 frames: 1.04 s
    free = engine.free_rows
    # No tick for a while (a device far slower than real time): playback ran dry long ago.
    engine.clock.now += made + LEAD_S + GRACE_S - 0.05
    engine.tick()
    assert not any(isinstance(e, SynthesisFailed) for e in events)  # within the grace: still on
    assert paced.output_s == made + FRAME_S  # and it took a step, 1.37 s behind
    engine.clock.now += 0.2  # 1.57 s behind: beyond lead + grace
    engine.tick()
    failed = events[-1]
    assert isinstance(failed, SynthesisFailed) and failed.kind == FailureKind.EXPIRED
    assert "behind real-time playback" in failed.message
    assert paced.row not in engine._jobs.keys() or engine._jobs[paced.row] is not paced
    # Both rows were equally behind: both ended, both rows are free for the next request.
    assert isinstance(other_events[-1], SynthesisFailed) and engine.free_rows == free + 2
    assert engine.busy_rows == 0 and engine.buffered_s == 0


def test_a_real_time_reader_never_waits(engine):
    """The engine runs twice as fast as real time (a tick per 40 ms of the clock): after its lead
    the row follows the clock, and playback never runs dry (no gap) until the last frame."""
    paced, events = admit(engine, LONG_TEXT)
    buffered = []  # output made and not played yet, after each tick, until the last frame
    calls = 0
    while engine.busy_rows:
        calls += 1
        engine.tick()
        if paced.first_output_at is not None and paced.frames_out < 80:
            buffered.append(paced.output_s - (engine.clock() - paced.first_output_at))
        engine.clock.now += FRAME_S / 2
    assert isinstance(events[-1], SynthesisDone) and events[-1].duration_s == pytest.approx(80 * FRAME_S)
    assert min(buffered) > 0  # the ear never catches up with the row: no gap
    lead_reached = next(i for i, ahead in enumerate(buffered) if ahead > LEAD_S)
    assert min(buffered[lead_reached:]) > LEAD_S - FRAME_S  # then always about a lead ahead
    # Some ticks found it ahead and did nothing: it waited on the clock, as paced.
    assert calls > engine.ticks == paced.steps == 81


def test_a_short_text_arrives_as_fast_as_it_is_made(engine):
    """A text shorter than the lead is never frozen: the clock standing still, it ends in as many
    steps as an unpaced one."""
    short = " ".join(["word"] * 5)  # 10 frames: 0.8 s < the lead
    paced, events = admit(engine, short)
    unpaced, unpaced_events = admit(engine, short, rate=None)
    ticks = 0
    while engine.busy_rows:
        engine.tick()
        ticks += 1
    assert isinstance(events[-1], SynthesisDone) and isinstance(unpaced_events[-1], SynthesisDone)
    assert paced.steps == unpaced.steps == ticks == 11


def test_a_faster_playback_rate_gets_its_lead_in_audio_and_plays_faster(engine):
    paced, _ = admit(engine, LONG_TEXT, rate=2.0)  # a client playing at speed 2
    ticks_until_frozen(engine, paced)
    assert paced.frames_out == 13  # the lead is in seconds of audio, whatever the rate
    engine.clock.now += 0.4  # 0.8 s of audio played
    ticks_until_frozen(engine, paced)
    assert paced.frames_out == 23


def test_a_streamed_text_waiting_for_words_is_not_overdue_and_gets_no_lead_it_never_had(engine):
    """A WebSocket client typing slowly: its row waits for words (runnable is False), and its
    player waits with it."""
    job, events = admit(engine, "first words", stream_text=True)
    for _ in range(10):
        engine.tick()
    assert job.frames_out == 4  # said what it had; now waiting for words
    engine.clock.now += 60  # a minute without words
    engine.tick()
    assert not any(isinstance(e, SynthesisFailed) for e in events)
    engine.extend(job, LONG_TEXT, complete=True)
    frames = job.frames_out
    ticks_until_frozen(engine, job)
    # Its player restarted where the audio ended: a lead ahead of it, no more.
    assert job.frames_out - frames == int(LEAD_S / FRAME_S) + 1
    # Once it has words, a row 100 s behind its player is overdue like any other.
    engine.clock.now += 100
    while engine.busy_rows and not isinstance(events[-1], SynthesisFailed):
        engine.tick()
    assert isinstance(events[-1], SynthesisFailed) and events[-1].kind == FailureKind.EXPIRED


# ---- stutter: underruns, on the fake whose tick costs what the test says --------------------------
def scripted(cost_s: float) -> FakeTTSEngine:
    engine = FakeTTSEngine(EngineSettings(device="cpu", stream_lead_s=LEAD_S, stream_grace_s=60.0), "cpu",
                           step_cost=lambda rows: cost_s)
    engine.ensure_slots(3)
    return engine


def step(engine) -> None:
    """A tick; when no row could run (all ahead), a frame's time passes instead."""
    if not engine.tick():
        engine.clock.now += FRAME_S


def speak_through(engine, streams: int, rate: float | None = 1.0) -> list:
    jobs = [admit(engine, LONG_TEXT, rate)[0] for _ in range(streams)]
    leads = []
    while engine.busy_rows:
        step(engine)
        leads += engine.stream_leads
    return jobs, leads


def test_an_overloaded_engine_counts_underruns_and_a_healthy_one_none():
    # Ticks of 100 ms make 80 ms of audio each: every stream falls behind its playback.
    slow = scripted(0.100)
    jobs, leads = speak_through(slow, 2)
    assert slow.underruns == 2 and [job.underruns for job in jobs] == [1, 1]  # one gap each, while it lasts
    assert min(leads) < 0
    # Ticks of 20 ms: four times real time, each stream builds its lead up to the 1 s limit.
    fast = scripted(0.020)
    jobs, leads = speak_through(fast, 2)
    assert fast.underruns == 0 and min(leads) >= 0 and max(leads) == pytest.approx(LEAD_S, abs=FRAME_S + 1e-9)


def test_a_whole_clip_is_never_an_underrun_and_a_stream_that_recovers_counts_again():
    slow = scripted(0.100)
    speak_through(slow, 2, rate=None)
    assert slow.underruns == 0 and slow.stream_leads == ()
    # A stream played at half speed keeps ahead on the same slow engine.
    assert speak_through(slow, 1, rate=0.5)[0][0].underruns == 0
    # Behind, then caught up (its clock moved back by a wait for words), then behind again: two gaps.
    job, _ = admit(slow, "", stream_text=True)
    slow.extend(job, "one two three four five six")
    for _ in range(12):
        step(slow)
    assert job.underruns == 1
    for _ in range(12):  # its words are spoken: it waits for more, and its player with it
        step(slow)
    slow.extend(job, LONG_TEXT, complete=True)
    while slow.busy_rows:
        step(slow)
    assert job.underruns == 2 and slow.underruns == 2
