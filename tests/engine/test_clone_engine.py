"""The voice-cloning engine (CloneEngine) against moshi's own reference, on the tiny clone checkpoint.

The reference is `TTSModel.simple_generate(text, "file://clip.wav", cfg_coef=c)` at temperature 0,
run by tests/helpers/clone_reference.py (which imports nothing of `deployments/`). Tolerance: the
tokens are the same (the lengths match to the frame and any other code changes a frame by ~1e-2),
and the samples agree to within `ATOL`: measured 1.8e-7 to 2.4e-7 on CPU in fp32 (largest sample ~0.18). They
are not bit-exact because moshi decodes the prompt and the speech in one stream of its batch size,
while the engine decodes the prompt on a one-row stream and the speech in a batch of its rows: the
same operations on differently shaped tensors round differently in the last bit.

Latency is asserted in engine ticks and model steps, never in seconds. A new voice's prompt is heard
in its own row, a few steps per tick (`prompt_steps_per_tick`): the tests that clear the prompt
cache check that path against moshi too (alone, in a busy batch, handed from row to row).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from helpers.clone_reference import prompt_frames, reference_speech
from test_engine import check_words, tick_until

from deployments.checkpoint import CLIP_NAMES, clip_file
from deployments.engine.base import InvalidRequest
from deployments.engine.clone import CloneEngine
from deployments.engine.tts import TTSEngine
from deployments.engine.voices import VoiceError
from deployments.protocol import AudioChunk, SynthesisDone, SynthesisRequest

ATOL = 1e-5
TEXT = "Good morning, how are you?"
OTHER = "The quick brown fox jumps."
VOICES = [name for name, _, _ in CLIP_NAMES]
A, B = VOICES[0], VOICES[1]
ROWS = 4


@pytest.fixture(scope="module")
def engine(clone_settings):
    engine = CloneEngine(clone_settings, clone_settings.device)
    engine.ensure_slots(ROWS)
    return engine


@pytest.fixture(scope="module")
def reference(tiny_clone_checkpoint):
    """moshi's audio for (text, voice, cfg), each computed once for the module."""
    computed = {}

    def get(text: str, voice: str, cfg: float) -> np.ndarray:
        key = (text, voice, cfg)
        if key not in computed:
            [computed[key]] = reference_speech(tiny_clone_checkpoint, [text], [clip_file(tiny_clone_checkpoint, voice)], cfg)
        return computed[key]

    return get


def start(engine, request, events=None):
    events = [] if events is None else events
    job = engine.prepare(request, events.append)
    assert engine.admit(job)
    return job, events


def audio_of(events) -> np.ndarray:
    return np.concatenate([e.pcm for e in events if isinstance(e, AudioChunk)])


def assert_same_audio(audio: np.ndarray, expected: np.ndarray) -> None:
    assert len(audio) == len(expected) > 0
    np.testing.assert_allclose(audio, expected, rtol=0, atol=ATOL)


def run_free(engine) -> None:
    tick_until(engine, lambda: not engine.busy_rows)


@pytest.mark.parametrize("cfg", [1.0, 2.0])
def test_alone_each_voice_speaks_as_moshi_does_with_and_without_a_cached_prompt(engine, reference, cfg):
    for voice in (A, B):
        engine.prompts.clear()
        run = engine.prompt_steps_run
        [first] = engine.synthesize([SynthesisRequest(TEXT, voice=voice, cfg_coef=cfg)])  # a new voice
        assert engine.prompt_steps_run > run
        run = engine.prompt_steps_run
        [cached] = engine.synthesize([SynthesisRequest(TEXT, voice=voice, cfg_coef=cfg)])
        assert engine.prompt_steps_run == run  # its prompt was not run again
        expected = reference(TEXT, voice, cfg)
        assert_same_audio(first["audio"], expected)
        assert_same_audio(cached["audio"], expected)
        check_words(cached["words"], TEXT, cached["duration_s"])  # times start after the prompt
    # Two voices, two audios.
    a, b = reference(TEXT, A, cfg), reference(TEXT, B, cfg)
    n = min(len(a), len(b))
    assert np.abs(a[:n] - b[:n]).max() > 1e-3


def test_in_a_busy_batch_rows_joining_at_other_ticks_speak_as_moshi_does(engine, reference):
    engine.prompts.clear()
    plan = [(OTHER, B, 2.0), (TEXT, A, 1.0), (TEXT, B, 2.0), (OTHER, A, 1.0)]
    runs = []
    for text, voice, cfg in plan:  # each joins a few ticks after the previous one
        runs.append(start(engine, SynthesisRequest(text, voice=voice, cfg_coef=cfg)))
        for _ in range(3):
            engine.tick()
    run_free(engine)
    for (text, voice, cfg), (_, events) in zip(plan, runs):
        assert isinstance(events[-1], SynthesisDone)
        assert_same_audio(audio_of(events), reference(text, voice, cfg))


def test_words_streamed_in_give_the_audio_of_the_whole_text(engine, reference):
    engine.prompts.clear()  # the first words arrive while the row still hears the new voice's prompt
    job, events = start(engine, SynthesisRequest("", voice=A, cfg_coef=2.0, stream_text=True))
    words = TEXT.split()
    for index, word in enumerate(words):
        engine.extend(job, word, complete=index == len(words) - 1)
        for _ in range(2):
            engine.tick()
    run_free(engine)
    assert isinstance(events[-1], SynthesisDone)
    assert_same_audio(audio_of(events), reference(TEXT, A, 2.0))


def test_eight_cloned_voices_in_one_batch(clone_settings, tiny_clone_checkpoint):
    engine = CloneEngine(clone_settings, clone_settings.device)
    engine.ensure_slots(8)
    cfgs = [1.0, 2.0] * 4
    results = engine.synthesize([SynthesisRequest(TEXT, voice=v, cfg_coef=c) for v, c in zip(VOICES, cfgs)])
    assert len(engine.prompts) == 8
    clips = [clip_file(tiny_clone_checkpoint, v) for v in VOICES]
    for cfg in (1.0, 2.0):
        chosen = [i for i, c in enumerate(cfgs) if c == cfg]
        expected = reference_speech(tiny_clone_checkpoint, [TEXT] * len(chosen), [clips[i] for i in chosen], cfg)
        for i, audio in zip(chosen, expected):
            assert_same_audio(results[i]["audio"], audio)
            assert results[i]["voice"] == VOICES[i]


def test_a_cached_voice_speaks_as_many_steps_after_admission_as_a_preset_voice(engine, engine_settings):
    preset = TTSEngine(engine_settings, engine_settings.device)
    preset.ensure_slots(ROWS)
    first_audio = {}
    for name, eng, request in (("preset", preset, SynthesisRequest(TEXT)),
                               ("new clip", engine, SynthesisRequest(TEXT, voice=VOICES[2])),
                               ("cached clip", engine, SynthesisRequest(TEXT, voice=VOICES[2]))):
        if name == "new clip":
            engine.prompts.clear()
        run = getattr(eng, "prompt_steps_run", 0)
        steps = eng.steps
        job, _ = start(eng, request)
        tick_until(eng, lambda: job.first_audio_tick is not None)
        first_audio[name] = (job.first_audio_tick - job.admitted_tick, job.steps, eng.steps - steps,
                             getattr(eng, "prompt_steps_run", 0) - run)
        run_free(eng)
    assert first_audio["cached clip"][:3] == first_audio["preset"][:3]
    assert first_audio["cached clip"][3] == 0
    # A new voice's row first hears its P prompt steps, prompt_steps_per_tick of them per tick.
    frames = prompt_frames(engine.settings.model_path, clip_file(engine.settings.model_path, VOICES[2]))
    fill_ticks = math.ceil(frames / engine.settings.prompt_steps_per_tick)
    assert first_audio["new clip"][0] == first_audio["preset"][0] + fill_ticks
    assert first_audio["new clip"][1] == first_audio["preset"][1]  # its own steps: the same
    assert first_audio["new clip"][3] == frames


def test_a_new_voice_hears_its_prompt_a_few_steps_per_tick_while_a_busy_row_keeps_its_pace(engine, reference):
    """While a new voice's rows hear its prompt (k steps per tick), a speaking row gets exactly its
    one step per tick; the newcomer speaks ceil(P / k) ticks later than a cached voice would, a
    second row of the same voice is handed the first's state when it is done, and both speak as
    moshi does."""
    k, settings = 3, engine.settings
    engine.settings = settings.model_copy(update={"prompt_steps_per_tick": k})
    try:
        engine.prompts.clear()
        busy, _ = start(engine, SynthesisRequest(" ".join([OTHER] * 3), voice=B, cfg_coef=2.0))
        tick_until(engine, lambda: busy.steps > engine.slots.audio_delay_steps)  # past its catch-up
        frames = prompt_frames(engine.settings.model_path, clip_file(engine.settings.model_path, A))
        fill_ticks = math.ceil(frames / k)
        assert fill_ticks > 2
        run = engine.prompt_steps_run
        first, first_events = start(engine, SynthesisRequest(TEXT, voice=A, cfg_coef=2.0))
        second = None
        for tick in range(fill_ticks):
            if tick == 2:  # the same new voice joins while the first row still hears it
                second, second_events = start(engine, SynthesisRequest(TEXT, voice=A, cfg_coef=1.0))
            steps, busy_steps = engine.steps, busy.steps
            assert engine.tick()
            assert busy.steps == busy_steps + 1  # its one step, every tick
            assert engine.steps - steps == min(k, frames - k * tick)  # the prompt's steps, and no more
            assert first.steps == 0 and (first.state is None) == (tick < fill_ticks - 1)
        assert engine.prompt_steps_run - run == frames + frames - 2 * k  # the second row's from tick 2, until handed
        assert first.state is not None and second.state is not None and second.steps == 0
        cached, _ = start(engine, SynthesisRequest(TEXT, voice=A, cfg_coef=2.0))  # its state is now cached
        tick_until(engine, lambda: cached.first_audio_tick is not None and first.first_audio_tick is not None)
        cached_ticks = cached.first_audio_tick - cached.admitted_tick
        assert first.first_audio_tick - first.admitted_tick == fill_ticks + cached_ticks
        assert second.first_audio_tick - second.admitted_tick == fill_ticks - 2 + cached_ticks
        assert engine.prompt_steps_run - run == frames + frames - 2 * k
        run_free(engine)
    finally:
        engine.settings = settings
    assert_same_audio(audio_of(first_events), reference(TEXT, A, 2.0))
    assert_same_audio(audio_of(second_events), reference(TEXT, A, 1.0))


def test_the_prompt_cache_is_bounded_in_bytes_dropped_on_offload_and_forgets_a_voice(clone_settings):
    engine = CloneEngine(clone_settings.model_copy(update={"prompt_cache_mb": 1e-9}), clone_settings.device)
    engine.ensure_slots(2)
    engine.synthesize([SynthesisRequest("Hello.", voice=A)])
    engine.synthesize([SynthesisRequest("Hello.", voice=B)])
    assert len(engine.prompts) == 1  # the bound keeps the last one only
    assert engine.prompts.bytes > 0
    assert engine.forget_voice(B) and len(engine.prompts) == 0 and not engine.forget_voice(B)
    engine.synthesize([SynthesisRequest("Hello.", voice=A)])
    engine.move_to("cpu")
    assert len(engine.prompts) == 0


def test_a_voice_forgotten_while_its_prompt_fills_is_not_cached_when_it_is_done(engine):
    """A voice deleted while a row still hears its prompt: the row speaks on, but the finished
    prompt state is not put back in the cache (the next request would have to hear it again)."""
    engine.prompts.clear()
    job, _ = start(engine, SynthesisRequest("Hello.", voice=A))
    engine.tick()
    assert job.state is None and len(engine.prompts) == 1  # filling: its codes are cached
    assert engine.forget_voice(A) and len(engine.prompts) == 0
    tick_until(engine, lambda: job.state is not None)
    assert len(engine.prompts) == 0
    run_free(engine)


def test_n_q_comes_from_the_model_with_a_log_line(clone_settings, caplog):
    with caplog.at_level(logging.INFO, logger="deployments.engine.loading"):
        engine = CloneEngine(clone_settings.model_copy(update={"n_q": 4}), clone_settings.device)
    assert engine.tts.n_q == engine.tts.lm.n_q == 8
    assert any("n_q 4 does not fit" in record.getMessage() for record in caplog.records)


def test_cfg_is_any_number_of_real_guidances_range(engine):
    assert engine.prepare(SynthesisRequest(TEXT, cfg_coef=1.7), lambda event: None).cfg_coef == 1.7
    for wrong in (0.5, 6.0, True, "2"):
        with pytest.raises(InvalidRequest) as refused:
            engine.prepare(SynthesisRequest(TEXT, cfg_coef=wrong), lambda event: None)
        assert refused.value.param == "cfg_coef"


def test_bad_voices_are_refused_with_the_field_named(engine):
    with pytest.raises(InvalidRequest) as refused:
        engine.prepare(SynthesisRequest(TEXT, voice_embedding=[0.0], voice_shape=[1]), lambda event: None)
    assert refused.value.param == "voice"
    with pytest.raises(VoiceError):
        engine.prepare(SynthesisRequest(TEXT, voice="clips/nothing_here.wav"), lambda event: None)
    with pytest.raises(VoiceError):
        engine.prepare(SynthesisRequest(TEXT, voice="expresso/ex03-ex01_happy_001_channel1_334s.wav"), lambda event: None)


def test_an_engine_built_without_guidance_speaks_cfg_1_as_moshi_does_and_refuses_other_cfgs(clone_settings, reference):
    class Unguided(CloneEngine):
        guided = False

    engine = Unguided(clone_settings, clone_settings.device)
    engine.ensure_slots(2)
    [result] = engine.synthesize([SynthesisRequest(TEXT, voice=B, cfg_coef=1.0)])
    assert_same_audio(result["audio"], reference(TEXT, B, 1.0))
    with pytest.raises(InvalidRequest) as refused:
        engine.prepare(SynthesisRequest(TEXT, voice=B, cfg_coef=2.0), lambda event: None)
    assert refused.value.param == "cfg_coef"


def test_an_uploaded_clip_given_as_pcm_speaks_as_moshi_does_with_its_file_cached_by_content(engine, reference):
    """An uploaded voice reaches the worker as PCM in the request (issue 20): the same audio as a
    voice file speaks the same; its prompt is cached by content and forgotten by its key."""
    import sphn

    from deployments.protocol import clip_prompt_key

    wav, _ = sphn.read(str(clip_file(engine.settings.model_path, A)), sample_rate=24000)
    pcm = np.ascontiguousarray(wav[0], dtype=np.float32)
    engine.prompts.clear()
    request = SynthesisRequest(TEXT, voice="clip:0123456789abcdef", cfg_coef=1.0, voice_clip=pcm)
    [first] = engine.synthesize([request])
    run = engine.prompt_steps_run
    [again] = engine.synthesize([SynthesisRequest(TEXT, voice="clip:0123456789abcdef", cfg_coef=1.0,
                                                  voice_clip=pcm.copy())])
    assert engine.prompt_steps_run == run  # the same content: its cached prompt
    assert_same_audio(first["audio"], reference(TEXT, A, 1.0))
    assert_same_audio(again["audio"], reference(TEXT, A, 1.0))
    assert engine.forget_clip(clip_prompt_key(pcm)) and not engine.forget_clip(clip_prompt_key(pcm))
    with pytest.raises(InvalidRequest):
        engine.prepare(SynthesisRequest(TEXT, voice="clip:x", voice_clip=np.full(100, np.nan, np.float32)), print)
