"""TTSEngine on moshi's real code path with the tiny random-weight checkpoint, in process, on CPU.

The tiny model speaks noise, but moshi's state machine still consumes every word of the text, so
durations, word timestamps, streaming order, chunking and validation are all real.
"""

import math

import numpy as np
import pytest

from deployments.checkpoint import VOICE_NAMES, VOICE_SUFFIX
from deployments.engine import InvalidRequest, TTSEngine
from deployments.synthesis import (FRAME_SAMPLES, SAMPLE_RATE, AudioChunk, SynthesisDone,
                                   SynthesisRequest, WordSpoken)
from deployments.text_chunks import split_text
from deployments.voices import VoiceError

SHORT = "Good morning."
MEDIUM = "The quick brown fox jumps over the lazy dog, twice."
LONG = ("It was a bright cold day in April, and the clocks were striking thirteen; "
        "nobody in the quiet town seemed to notice it at all.")


@pytest.fixture(scope="module")
def engine(engine_settings):
    return TTSEngine(engine_settings, "cpu")


def run_to_end(engine, request, is_cancelled=lambda: False):
    """Every event the sink receives for `request`, in order."""
    events = []
    job = engine.prepare(request, events.append, is_cancelled)
    while not job.finished:
        engine.run_round([job])
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
    [long] = engine.synthesize([SynthesisRequest(LONG)])
    assert long["duration_s"] > short["duration_s"]
    assert len(long["audio"]) > len(short["audio"])


def test_frames_stream_one_by_one_with_words_before_the_end(engine):
    events = run_to_end(engine, SynthesisRequest(MEDIUM))
    done = done_of(events)
    assert done.text_chunks == 1
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


def test_long_text_is_chunked_with_continuous_timestamps(engine, engine_settings):
    text = " ".join([MEDIUM, LONG, MEDIUM, SHORT])
    assert len(text) > 3 * engine_settings.chunk_max_chars
    events = run_to_end(engine, SynthesisRequest(text))
    done = done_of(events)
    assert done.text_chunks == len(split_text(text, engine_settings.chunk_max_chars)) >= 3
    # Every word, in order, on one clock across the pieces (no piece restarts at zero).
    check_words(done.words, text, done.duration_s)
    assert len(audio_of(events)) == round(done.duration_s * SAMPLE_RATE)


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


def test_cancelling_stops_the_audio_and_spares_the_rest_of_the_batch(engine):
    cancelled = {"flag": False}
    stopped, kept = [], []

    def stopping_sink(event):
        stopped.append(event)
        if sum(isinstance(e, AudioChunk) for e in stopped) == 3:
            cancelled["flag"] = True

    jobs = [engine.prepare(SynthesisRequest(LONG), stopping_sink, lambda: cancelled["flag"]),
            engine.prepare(SynthesisRequest(MEDIUM), kept.append)]
    engine.run_round(jobs)
    assert sum(isinstance(e, AudioChunk) for e in stopped) == 3
    check_words(done_of(kept).words, MEDIUM, done_of(kept).duration_s)
    # Alone, a cancelled request aborts the generation at the next frame.
    cancelled["flag"], stopped[:] = False, []
    job = engine.prepare(SynthesisRequest(LONG), stopping_sink, lambda: cancelled["flag"])
    engine.run_round([job])
    assert sum(isinstance(e, AudioChunk) for e in stopped) == 3
    # The aborted generation left nothing behind: the next one is whole.
    [after] = engine.synthesize([SynthesisRequest(MEDIUM)])
    check_words(after["words"], MEDIUM, after["duration_s"])


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
    assert job.voice == engine_settings.default_voice
    for name in VOICE_NAMES:
        assert engine.prepare(SynthesisRequest(SHORT, voice=name), lambda e: None).voice == name
    # The file name with the model's suffix names the same voice.
    assert engine.prepare(SynthesisRequest(SHORT, voice=VOICE_NAMES[1] + VOICE_SUFFIX), lambda e: None)
    for bad in ("nobody/unknown.wav", "../voices/vctk/p225_023.wav", "/etc/passwd", "vctk\\p225_023.wav"):
        with pytest.raises(VoiceError):
            engine.prepare(SynthesisRequest(SHORT, voice=bad), lambda e: None)
