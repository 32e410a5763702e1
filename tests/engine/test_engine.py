"""TTSEngine on moshi's real code path with the tiny random-weight checkpoint, in process, on CPU.

The tiny model speaks noise, but moshi's state machine still consumes every word of the text, so
durations, word timestamps, streaming order, slots, admission and validation are all real.
Latency is asserted in engine ticks (one model step for every speaking row), never in seconds.
"""

import math

import numpy as np
import pytest

from deployments.checkpoint import VOICE_NAMES, VOICE_SUFFIX
from deployments.engine.tts import CATCH_UP_STEPS, InvalidRequest, TTSEngine
from deployments.protocol import (FRAME_SAMPLES, SAMPLE_RATE, AudioChunk, SynthesisDone, SynthesisRequest,
                                  WordSpoken)
from deployments.engine.voices import VoiceError

SHORT = "Good morning."
MEDIUM = "The quick brown fox jumps over the lazy dog, twice."
LONG = ("It was a bright cold day in April, and the clocks were striking thirteen; "
        "nobody in the quiet town seemed to notice it at all.")
CFG_VALUES = [1.0 + 0.5 * i for i in range(7)]


@pytest.fixture(scope="module")
def engine(engine_settings):
    engine = TTSEngine(engine_settings, engine_settings.device)
    engine.ensure_slots(4)
    return engine


def run_to_end(engine, request, is_cancelled=lambda: False):
    """Every event the sink receives for `request`, in order."""
    events = []
    job = engine.prepare(request, events.append, is_cancelled)
    assert engine.admit(job)
    while job.row in engine._jobs and engine._jobs[job.row] is job:
        engine.tick()
    return events


def done_of(events) -> SynthesisDone:
    done = [e for e in events if isinstance(e, SynthesisDone)]
    assert len(done) == 1 and events[-1] is done[0]
    return done[0]


def audio_of(events) -> np.ndarray:
    return np.concatenate([e.pcm for e in events if isinstance(e, AudioChunk)])


def check_words(words, text: str, duration_s: float) -> None:
    """Words in text order (punctuation attached, as moshi splits on whitespace), time-ordered."""
    assert [w.word for w in words] == text.split()
    previous_start = 0.0
    for w in words:
        assert w.start_s >= previous_start
        assert w.end_s >= w.start_s
        assert 0.0 <= w.start_s <= duration_s and w.end_s <= duration_s + 1e-6
        previous_start = w.start_s
    # Words do not overlap; the last one ends with the audio.
    for a, b in zip(words, words[1:]):
        assert a.end_s <= b.start_s + 1e-6
    assert math.isclose(words[-1].end_s, duration_s, abs_tol=1e-3)


def test_audio_is_24khz_mono_float32_in_range(engine):
    assert engine.tts.mimi.sample_rate == SAMPLE_RATE == 24_000
    assert SAMPLE_RATE / engine.frame_rate == FRAME_SAMPLES
    [result] = engine.synthesize([SynthesisRequest(MEDIUM)])
    audio = result["audio"]
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    assert audio.std() > 0  # the random model makes noise, not silence
    assert len(audio) == round(result["duration_s"] * SAMPLE_RATE)
    assert len(audio) % FRAME_SAMPLES == 0


def test_a_batch_of_n_texts_gives_n_results_in_order(engine):
    texts = [SHORT, MEDIUM, LONG]
    voices = list(VOICE_NAMES[:3])
    requests = [SynthesisRequest(t, voice=v) for t, v in zip(texts, voices)]
    results = engine.synthesize(requests)
    assert len(results) == len(texts)
    for text, voice, result in zip(texts, voices, results):
        assert result["voice"] == voice
        assert len(result["audio"]) == round(result["duration_s"] * SAMPLE_RATE)
        check_words(result["words"], text, result["duration_s"])
    # More words, more audio.
    durations = [r["duration_s"] for r in results]
    assert durations[0] < durations[1] < durations[2]


def test_duration_grows_with_the_text_alone(engine):
    [short] = engine.synthesize([SynthesisRequest(SHORT)])
    [long] = engine.synthesize([SynthesisRequest(MEDIUM)])
    assert long["duration_s"] > short["duration_s"]
    assert len(long["audio"]) > len(short["audio"])


def test_frames_stream_one_by_one_with_words_before_the_end(engine):
    events = run_to_end(engine, SynthesisRequest(MEDIUM))
    done = done_of(events)
    chunks = [i for i, e in enumerate(events) if isinstance(e, AudioChunk)]
    words = [i for i, e in enumerate(events) if isinstance(e, WordSpoken)]
    # 80 ms frames, one event each: the audio streams out as it is generated.
    assert all(events[i].pcm.shape == (FRAME_SAMPLES,) and events[i].pcm.dtype == np.float32 for i in chunks)
    assert len(chunks) == round(done.duration_s * engine.frame_rate) > 20
    # Word events are mixed with the audio, not all sent at the end...
    assert any(chunks[0] < i < chunks[-1] for i in words)
    assert words[0] < chunks[-1]
    # ...and carry the same words as the final summary.
    assert [events[i].word for i in words] == done.words
    assert all(not isinstance(e, SynthesisDone) for e in events[:-1])
    check_words(done.words, MEDIUM, done.duration_s)


def test_break_tags_pass_through_as_pauses(engine):
    plain, paused = engine.synthesize([
        SynthesisRequest("Hello there, world."),
        SynthesisRequest('Hello there, <break time="1s"/> world.'),
    ])
    assert [w.word for w in paused["words"]] == [w.word for w in plain["words"]] == ["Hello", "there,", "world."]
    assert paused["duration_s"] > plain["duration_s"]
    # moshi forces round(1 s * 12.5) pad steps between "there," and "world.".
    gap = paused["words"][2].start_s - paused["words"][1].start_s
    assert gap >= round(1.0 * engine.frame_rate) / engine.frame_rate


def test_text_over_the_limit_is_refused_clearly(engine, engine_settings):
    limit = engine_settings.max_text_chars
    ok = ("word " * limit)[: limit]
    engine.prepare(SynthesisRequest(ok), lambda e: None)
    with pytest.raises(InvalidRequest) as info:
        engine.prepare(SynthesisRequest(ok + "s"), lambda e: None)
    assert str(info.value) == f"text is {limit + 1} characters long; the limit is {limit}"


@pytest.mark.parametrize("text", ["", "   ", "\n\t ", "\x00", "hello\x00world", None, 42, b"bytes", ["a"]])
def test_empty_or_malformed_text_is_refused(engine, text):
    with pytest.raises(InvalidRequest, match="text"):
        engine.prepare(SynthesisRequest(text), lambda e: None)


@pytest.mark.parametrize("text", ['Hello <break time="11s"/> world', "Hello <break/> world",
                                  'Hello <break time="2 seconds"/>'])
def test_unreadable_or_huge_breaks_are_refused(engine, text):
    with pytest.raises(InvalidRequest, match="break"):
        engine.prepare(SynthesisRequest(text), lambda e: None)


def test_cfg_coef_must_be_a_supported_value(engine, engine_settings):
    valid = [1.0 + 0.5 * i for i in range(7)]
    assert engine.valid_cfg_coefs == valid
    for cfg in valid + [2, None]:
        engine.prepare(SynthesisRequest(SHORT, cfg_coef=cfg), lambda e: None)
    for cfg in (0.5, 0.0, -1.0, 1.25, 4.5, 10, float("nan"), float("inf"), "2.0", True, [2.0]):
        with pytest.raises(InvalidRequest) as info:
            engine.prepare(SynthesisRequest(SHORT, cfg_coef=cfg), lambda e: None)
        assert "cfg_coef must be one of 1, 1.5, 2, 2.5, 3, 3.5, 4" == str(info.value)


def test_voices_are_resolved_through_the_catalog(engine, engine_settings):
    job = engine.prepare(SynthesisRequest(SHORT), lambda e: None)
    assert job.voice_name == engine_settings.default_voice
    for name in VOICE_NAMES:
        assert engine.prepare(SynthesisRequest(SHORT, voice=name), lambda e: None).voice_name == name
    # The file name with the model's suffix names the same voice.
    assert engine.prepare(SynthesisRequest(SHORT, voice=VOICE_NAMES[1] + VOICE_SUFFIX), lambda e: None)
    for bad in ("nobody/unknown.wav", "../voices/vctk/p225_023.wav", "/etc/passwd", "vctk\\p225_023.wav"):
        with pytest.raises(VoiceError):
            engine.prepare(SynthesisRequest(SHORT, voice=bad), lambda e: None)


# ---- slots: joining, many at once, long texts, cancellation, bounds --------------------------

def collect(engine, request, events):
    job = engine.prepare(request, events.append)
    assert engine.admit(job)
    return job


def tick_until(engine, condition, limit=5000):
    for _ in range(limit):
        if condition():
            return
        engine.tick()
    raise AssertionError("condition not reached")


def test_a_newcomer_speaks_within_a_few_ticks_while_another_row_streams(engine):
    long_events, short_events = [], []
    long_job = collect(engine, SynthesisRequest(LONG), long_events)  # ~225 frames: speaking throughout
    tick_until(engine, lambda: long_job.first_audio_tick is not None)
    for _ in range(10):  # well into the long text
        engine.tick()
    short_job = collect(engine, SynthesisRequest(SHORT), short_events)
    tick_until(engine, lambda: short_job.first_audio_tick is not None)
    assert engine._jobs.get(long_job.row) is long_job  # the long text still speaking beside it
    waited = short_job.first_audio_tick - short_job.admitted_tick
    # 16 steps of audio delay, run 1 + CATCH_UP_STEPS per tick, then the codec's 2 + 1 steps
    # and moshi's 2 skipped frames: the same as when the replica is idle.
    expected = math.ceil(engine.slots.audio_delay_steps / (1 + CATCH_UP_STEPS)) + engine.slots.max_delay + 1 + 2
    assert waited <= expected + 1
    idle_events = []
    tick_until(engine, lambda: not engine._jobs)
    idle_job = collect(engine, SynthesisRequest(SHORT), idle_events)
    tick_until(engine, lambda: idle_job.first_audio_tick is not None)
    assert waited <= idle_job.first_audio_tick - idle_job.admitted_tick + 1
    tick_until(engine, lambda: not engine._jobs)
    for events, text in ((long_events, LONG), (short_events, SHORT), (idle_events, SHORT)):
        check_words(done_of(events).words, text, done_of(events).duration_s)


def test_a_rows_speech_does_not_depend_on_the_other_rows(engine_settings):
    """Greedy decoding makes a request's audio a function of its text and voice alone: the same
    request alone in row 0, then in row 2 while two others speak (admitted at other ticks),
    must give the same words and samples. This is what exec masks, per-row resets and in-place
    K/V writes (under CUDA graphs on a GPU) must guarantee."""
    engine = TTSEngine(engine_settings.model_copy(update={"temp": 0.0}), engine_settings.device)
    engine.ensure_slots(4)
    alone = run_to_end(engine, SynthesisRequest(MEDIUM))
    others = [[], []]
    collect(engine, SynthesisRequest(MEDIUM, voice=VOICE_NAMES[1]), others[0])  # speaks through most of it
    for _ in range(7):
        engine.tick()
    collect(engine, SynthesisRequest(SHORT, cfg_coef=CFG_VALUES[0]), others[1])
    for _ in range(3):
        engine.tick()
    crowded = []
    job = collect(engine, SynthesisRequest(MEDIUM), crowded)
    assert job.row == 2
    tick_until(engine, lambda: not engine._jobs)
    assert [(w.word, w.start_s, w.end_s) for w in done_of(crowded).words] == \
        [(w.word, w.start_s, w.end_s) for w in done_of(alone).words]
    np.testing.assert_allclose(audio_of(crowded), audio_of(alone), atol=2e-3)
    assert all(done_of(events).duration_s > 0 for events in others)


def test_sixteen_requests_with_different_voices_and_cfg_share_the_slots(engine_settings):
    engine = TTSEngine(engine_settings, engine_settings.device)
    texts = [SHORT, MEDIUM, LONG, "One two three four five."]
    requests = [SynthesisRequest(texts[i % 4], voice=VOICE_NAMES[i % len(VOICE_NAMES)], cfg_coef=CFG_VALUES[i % 7])
                for i in range(16)]
    results = engine.synthesize(requests, batch_size=16)
    assert engine.admissions == 16 and engine.slots.batch_size == 16
    for request, result in zip(requests, results):
        assert result["voice"] == request.voice
        assert len(result["audio"]) == round(result["duration_s"] * SAMPLE_RATE) > 0
        check_words(result["words"], request.text, result["duration_s"])


def test_a_text_longer_than_the_attention_context_speaks_in_one_row(engine):
    context = engine.tts.lm.transformer.layers[0].self_attn.context
    text = " ".join([LONG] * 2)  # ~450 frames: 4.5 times the tiny model's context of 100
    admissions = engine.admissions
    events = run_to_end(engine, SynthesisRequest(text))
    done = done_of(events)
    assert done.duration_s * engine.frame_rate > 2 * context  # far past the ring cache's size
    assert engine.admissions == admissions + 1  # one generation, never restarted
    check_words(done.words, text, done.duration_s)
    assert len(audio_of(events)) == round(done.duration_s * SAMPLE_RATE)


def test_a_cancelled_request_frees_its_row_at_the_next_tick(engine):
    cancelled = {"flag": False}
    stopped, kept = [], []

    def stopping_sink(event):
        stopped.append(event)
        if sum(isinstance(e, AudioChunk) for e in stopped) == 3:
            cancelled["flag"] = True

    job = engine.prepare(SynthesisRequest(LONG), stopping_sink, lambda: cancelled["flag"])
    other = collect(engine, SynthesisRequest(MEDIUM), kept)
    assert engine.admit(job)
    tick_until(engine, lambda: cancelled["flag"])
    engine.tick()
    assert job.row not in engine._jobs or engine._jobs[job.row] is not job
    assert sum(isinstance(e, AudioChunk) for e in stopped) == 3
    tick_until(engine, lambda: other.row not in engine._jobs)
    check_words(done_of(kept).words, MEDIUM, done_of(kept).duration_s)
    # The freed row serves the next request whole.
    after = done_of(run_to_end(engine, SynthesisRequest(SHORT)))
    check_words(after.words, SHORT, after.duration_s)


def test_words_fed_while_speaking_make_one_continuous_generation(engine):
    words = LONG.split()
    events = []
    job = engine.prepare(SynthesisRequest(" ".join(words[:2]), stream_text=True), events.append)
    admissions = engine.admissions
    assert engine.admit(job)
    for _ in range(5):
        engine.tick()
    # It steps through moshi's forced initial pauses, then waits: two words are not enough
    # look-ahead to start the first one.
    assert job.steps == engine.tts.machine.initial_padding and not job.state.transcript
    for word in words[2:]:
        engine.extend(job, word)
        for _ in range(3):
            engine.tick()
    assert any(isinstance(e, AudioChunk) for e in events)  # speaking before the text is complete
    engine.extend(job, None, complete=True)
    tick_until(engine, lambda: job.row not in engine._jobs)
    assert engine.admissions == admissions + 1
    check_words(done_of(events).words, LONG, done_of(events).duration_s)


def test_a_break_heavy_text_is_refused_naming_the_limit(engine, engine_settings):
    text = ('Wait <break time="10s"/> ' * 40).strip()  # 400 s of pauses
    assert len(text) < engine_settings.max_text_chars
    with pytest.raises(InvalidRequest) as info:
        engine.prepare(SynthesisRequest(text), lambda e: None)
    assert info.value.param == "text" and "max_audio_s" in str(info.value)
    engine.prepare(SynthesisRequest('Wait <break time="10s"/> then go.'), lambda e: None)


def test_a_voice_is_resolved_once_then_cached(engine, monkeypatch):
    calls = []
    engine._voice_paths.clear()
    resolve = engine.voices.resolve
    monkeypatch.setattr(engine.voices, "resolve", lambda name: calls.append(name) or resolve(name))
    for _ in range(5):
        engine.prepare(SynthesisRequest(SHORT, voice=VOICE_NAMES[3]), lambda e: None)
    assert calls == [VOICE_NAMES[3]]


def test_a_client_sent_voice_embedding_is_validated(engine):
    good = np.random.default_rng(0).normal(size=512 * 125).astype(np.float32).tolist()
    result = engine.synthesize([SynthesisRequest(SHORT, voice_embedding=good, voice_shape=[1, 512, 125])])[0]
    assert result["voice"] == "custom" and result["duration_s"] > 0
    bad = [(good, [1, 125, 512]), (good[:-1], [1, 512, 125]), (good[:-1] + [float("nan")], [1, 512, 125]),
           (["x"] * len(good), [1, 512, 125]), ("abc", [1, 512, 125])]
    for values, shape in bad:
        with pytest.raises(VoiceError, match="voice embedding"):
            engine.prepare(SynthesisRequest(SHORT, voice_embedding=values, voice_shape=shape), lambda e: None)
