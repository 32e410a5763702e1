"""One protocol, every engine: the same tests over the real engines (moshi, the tiny random-weight
checkpoints: the 1.6B-style one, the voice-cloning one, the speech-to-text one) and the scripted fakes, so that the fakes the scheduler tests stand on behave as the
real engine does where the protocol says (rows, admission, runnable rows, cancel, failure,
placement, counters). Asserted in ticks, steps and events, never in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from test_engine import check_words, tick_until

from deployments.engine.clone import CloneEngine
from deployments.engine.fakes import FakeSTTEngine, FakeTTSEngine
from deployments.engine.models import ModelKind, model_kind, spec_for
from deployments.engine.stt import STTEngine
from deployments.engine.tts import TTSEngine
from deployments.protocol import (FRAME_SAMPLES, SAMPLE_RATE, AudioChunk, RequestFailed, SynthesisDone,
                                  SynthesisRequest, TranscriptionDone, TranscriptionRequest, WordHeard,
                                  WordSpoken)
from deployments.settings import DEFAULT_MODEL_REPO, EngineSettings

ROWS = 2
SHORT = "Good morning."


@dataclass
class Kind:
    """How a test speaks to one kind of engine."""
    finite: Callable[[], object]  # a short request whose input is whole
    held: Callable[[], object]    # a streamed request that starts without input
    more: object                  # what completes a held one: extend(job, more, complete=True)
    output: type                  # the events it sends before the end
    done: type


def silence(frames: int) -> np.ndarray:
    return np.zeros(frames * FRAME_SAMPLES, np.float32)


SPEECH = Kind(lambda: SynthesisRequest(SHORT), lambda: SynthesisRequest("", stream_text=True), SHORT,
              AudioChunk, SynthesisDone)
TRANSCRIPTION = Kind(lambda: TranscriptionRequest(audio=silence(8)), lambda: TranscriptionRequest(stream_audio=True),
                     silence(8), WordHeard, TranscriptionDone)
ENGINES = {"real-tts": (TTSEngine, SPEECH), "real-clone": (CloneEngine, SPEECH), "fake-tts": (FakeTTSEngine, SPEECH), "fake-stt": (FakeSTTEngine, TRANSCRIPTION),
           "real-stt": (STTEngine, TRANSCRIPTION)}
SETTINGS = {"real-clone": "clone_settings", "real-stt": "stt_settings"}


@pytest.fixture(scope="module")
def built(engine_settings, request):
    """Each engine loaded once for the module, handed to each test with ROWS free rows."""
    engines = {}

    def get(name: str):
        if name not in engines:
            engine_class, _ = ENGINES[name]
            settings = request.getfixturevalue(SETTINGS[name]) if name in SETTINGS else engine_settings
            engines[name] = engine_class(settings, settings.device)
        engine = engines[name]
        engine.fail_all("the previous test is over")  # a failed test leaves no row behind
        engine.ensure_slots(ROWS)
        return engine

    return get


@pytest.fixture(params=list(ENGINES))
def case(request, built):
    return built(request.param), ENGINES[request.param][1]


def start(engine, request, events: list | None = None, is_cancelled=lambda: False):
    events = [] if events is None else events
    job = engine.prepare(request, events.append, is_cancelled)
    assert engine.admit(job)
    return job, events


def run_until_free(engine) -> None:
    tick_until(engine, lambda: not engine.busy_rows)


def the_end(events: list, kind: Kind):
    """The one final event, which must be the last."""
    ends = [e for e in events if isinstance(e, (kind.done, RequestFailed))]
    assert len(ends) == 1 and events[-1] is ends[0], events[-3:]
    return ends[0]


# ---- the common lifecycle: every engine ------------------------------------------------------------
def test_rows_are_admitted_until_full_and_freed_when_done(case):
    engine, kind = case
    assert (engine.batch_size, engine.free_rows, engine.busy_rows) == (ROWS, ROWS, 0)
    admissions = engine.admissions
    runs = [start(engine, kind.finite()) for _ in range(ROWS)]
    assert (engine.free_rows, engine.busy_rows) == (0, ROWS)
    waiting_events = []
    waiting = engine.prepare(kind.finite(), waiting_events.append)
    assert not engine.admit(waiting) and waiting.row is None
    assert engine.admissions == admissions + ROWS
    run_until_free(engine)
    assert (engine.free_rows, engine.busy_rows) == (ROWS, 0)
    assert all(isinstance(the_end(events, kind), kind.done) for _, events in runs)
    assert engine.admit(waiting) and engine.admissions == admissions + ROWS + 1
    run_until_free(engine)
    assert isinstance(the_end(waiting_events, kind), kind.done)


def test_a_request_sends_its_output_over_ticks_then_one_done_and_the_counters_move(case):
    engine, kind = case
    ticks, steps = engine.ticks, engine.steps
    job, events = start(engine, kind.finite())
    assert job.admitted_tick == ticks
    first_output_tick = None
    while engine.busy_rows:
        assert engine.tick()
        if first_output_tick is None and any(isinstance(e, kind.output) for e in events):
            first_output_tick = engine.ticks
    assert isinstance(the_end(events, kind), kind.done)
    assert first_output_tick is not None and first_output_tick < engine.ticks  # streamed, not all at the end
    assert engine.ticks > ticks and engine.steps - steps >= engine.ticks - ticks  # a step or more per tick
    assert job.steps > 0
    ticks = engine.ticks
    assert not engine.tick() and engine.ticks == ticks  # no row: no tick counted


def test_a_cancelled_request_frees_its_row_at_the_next_tick_and_gets_no_end(case):
    engine, kind = case
    cancelled = {"flag": False}
    job, events = start(engine, kind.finite(), is_cancelled=lambda: cancelled["flag"])
    steps = engine.steps
    assert engine.tick() and engine.busy_rows == 1
    cancelled["flag"] = True
    sent = len(events)
    assert not engine.tick()  # its row was the only one: nothing ran
    assert engine.busy_rows == 0 and engine.free_rows == ROWS and engine.steps > steps
    assert len(events) == sent and not any(isinstance(e, (kind.done, RequestFailed)) for e in events)


def test_fail_all_fails_every_row(case):
    engine, kind = case
    runs = [start(engine, kind.finite()) for _ in range(ROWS)]
    assert engine.tick()
    engine.fail_all("the device failed")
    for _, events in runs:
        failed = the_end(events, kind)
        assert isinstance(failed, RequestFailed) and failed.message == "the device failed"
    assert (engine.busy_rows, engine.free_rows) == (0, ROWS)
    assert not engine.tick()


def test_a_row_that_is_not_runnable_takes_no_step(case):
    engine, kind = case
    held, held_events = start(engine, kind.held())
    for _ in range(50):  # a held row may first run what needs no input (moshi's initial pauses)
        if not engine.tick():
            break
    assert not engine.runnable(held)
    steps, ticks, held_steps = engine.steps, engine.ticks, held.steps
    for _ in range(5):
        assert not engine.tick()
    assert (engine.steps, engine.ticks, held.steps) == (steps, ticks, held_steps)
    # Another row runs beside it; the held one stays frozen.
    other, other_events = start(engine, kind.finite())
    tick_until(engine, lambda: other.row not in engine._jobs)
    assert held.steps == held_steps and engine.steps > steps
    assert isinstance(the_end(other_events, kind), kind.done)
    assert not any(isinstance(e, (kind.done, RequestFailed)) for e in held_events)
    engine.extend(held, kind.more, complete=True)
    run_until_free(engine)
    assert isinstance(the_end(held_events, kind), kind.done) and held.steps > held_steps


def test_move_to_drops_the_slots_and_ensure_slots_brings_them_back(case, engine_settings):
    engine, kind = case
    job, events = start(engine, kind.finite())
    with pytest.raises(RuntimeError, match="busy"):
        engine.move_to("cpu")  # never under a running row
    run_until_free(engine)
    engine.move_to("cpu")
    assert (engine.batch_size, engine.free_rows) == (0, 0)
    assert not engine.admit(engine.prepare(kind.finite(), lambda event: None))
    engine.move_to(engine_settings.device)
    engine.ensure_slots(ROWS)
    assert engine.free_rows == ROWS
    again, events = start(engine, kind.finite())
    run_until_free(engine)
    assert isinstance(the_end(events, kind), kind.done)


def test_a_new_slot_count_waits_until_no_row_is_busy(case):
    engine, kind = case
    job, events = start(engine, kind.finite())
    engine.ensure_slots(ROWS + 1)
    assert engine.batch_size == ROWS and engine._jobs[job.row] is job  # not under a running row
    run_until_free(engine)
    engine.ensure_slots(ROWS + 1)
    assert engine.free_rows == ROWS + 1


def test_close_fails_what_runs_and_drops_the_slots(case):
    engine, kind = case
    assert engine.health() is None
    job, events = start(engine, kind.finite())
    engine.close()
    assert isinstance(the_end(events, kind), RequestFailed)
    assert (engine.batch_size, engine.busy_rows, engine.free_rows) == (0, 0, 0)


# ---- text in, audio out: the real TTS engine and the fake ------------------------------------------
@pytest.mark.parametrize("name", ["real-tts", "real-clone", "fake-tts"])
def test_speech_comes_in_whole_frames_with_the_words_of_the_text(built, name):
    engine = built(name)
    text = "One two three four."
    job, events = start(engine, SynthesisRequest(text))
    run_until_free(engine)
    done = the_end(events, SPEECH)
    assert isinstance(done, SynthesisDone)
    chunks = [e.pcm for e in events if isinstance(e, AudioChunk)]
    assert all(c.dtype == np.float32 and c.shape == (FRAME_SAMPLES,) for c in chunks)
    assert len(chunks) * FRAME_SAMPLES == round(done.duration_s * SAMPLE_RATE) == job.frames_out * FRAME_SAMPLES
    assert [e.word for e in events if isinstance(e, WordSpoken)] == done.words
    check_words(done.words, text, done.duration_s)
    assert job.first_audio_tick is not None and job.first_audio_tick >= job.admitted_tick


def test_the_served_model_matches_its_row_in_models(built):
    engine = built("real-tts")
    spec = spec_for(DEFAULT_MODEL_REPO)
    assert spec.served and spec.kind is ModelKind.TTS_EMBEDDING_VOICES
    assert engine.valid_cfg_coefs == list(spec.cfg_coefs)
    assert engine.tts.mimi.sample_rate == spec.sample_rate and engine.frame_rate == spec.frame_rate
    assert EngineSettings.model_fields["n_q"].default == spec.n_q_default
    assert engine.tts.multi_speaker and engine.tts.voice_suffix  # speaker embeddings, named by suffix


def test_the_cloning_model_matches_its_row_in_models(built, clone_settings):
    engine = built("real-clone")
    spec = spec_for("kyutai/tts-0.75b-en-public")
    assert spec.served and spec.kind is ModelKind.TTS_AUDIO_PROMPT and spec.real_cfg
    assert model_kind(clone_settings) is ModelKind.TTS_AUDIO_PROMPT
    assert not engine.tts.multi_speaker and engine.tts.voice_suffix == ""  # voices are clips, named as files
    assert not engine.tts.valid_cfg_conditionings  # cfg is real guidance, not a conditioning input
    assert engine.tts.n_q == engine.tts.lm.n_q  # all its codebooks, whatever the setting
