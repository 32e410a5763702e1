"""The STT engine against moshi's own streaming loop (tests/helpers/stt_reference.py) on the tiny
STT checkpoint, at temperature 0: the same text tokens for each clip, alone and in a busy batch
where rows join at other steps and are frozen while their client sends nothing; words timed by
Kyutai's rule; pause probabilities from the voice-activity heads. Asserted in steps and events."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import sphn

from deployments.checkpoint import build_checkpoint
from deployments.checkpoint_stt import STT_CLIPS
from deployments.engine.models import ModelKind, model_kind
from deployments.engine.stt import STTEngine
from deployments.protocol import FRAME_SAMPLES, SAMPLE_RATE, PauseHeard, TranscriptionDone, TranscriptionRequest, WordHeard
from deployments.settings import EngineSettings

sys.path.insert(0, str(Path(__file__).parents[1] / "helpers"))
import stt_reference as ref  # noqa: E402

DELAY_TOKENS = 6  # int(0.5 s * 12.5): the tiny model's delay, as stt-1b-en_fr's


@pytest.fixture(scope="module")
def clips(tiny_stt_checkpoint):
    return {name: sphn.read(str(tiny_stt_checkpoint / name))[0][0] for name, *_ in STT_CLIPS}


@pytest.fixture(scope="module")
def reference(tiny_stt_checkpoint, clips):
    model = ref.load(tiny_stt_checkpoint)
    return model, {name: ref.transcribe(model, pcm) for name, pcm in clips.items()}


@pytest.fixture(scope="module")
def engine(stt_settings):
    engine = STTEngine(stt_settings, stt_settings.device)
    engine.ensure_slots(3)
    return engine


class Stream:
    """One client: its events, and a tap that records the token of each of its steps."""

    def __init__(self, engine, audio=None, stream=False):
        self.events = []
        self.job = engine.prepare(TranscriptionRequest(audio=audio, stream_audio=stream), self.events.append)

    @property
    def words(self):
        return [e.word for e in self.events if isinstance(e, WordHeard)]

    @property
    def done(self):
        return next((e for e in self.events if isinstance(e, TranscriptionDone)), None)


def record_tokens(engine):
    """Wraps the engine's word rule to record each row's tokens, in its steps."""
    seen: dict[int, list[int]] = {}
    heard = engine.rule.heard

    def tap(job, token):
        seen.setdefault(id(job), []).append(token)
        heard(job, token)

    engine.rule.heard = tap
    return seen


def run(engine, budget=400):
    for _ in range(budget):
        if not engine.busy_rows:
            return
        engine.tick()
    raise AssertionError("the engine did not finish")


def test_the_checkpoint_makes_the_reference_meaningful(reference, tiny_stt_checkpoint):
    model, transcripts = reference
    assert model[2].vocab_size() == model[1].text_card  # the tokenizer covers every id
    for name, transcript in transcripts.items():
        text = [t for t in transcript.tokens if t not in (0, 3)]
        words = ref.words_by_kyutai_rule(transcript.tokens, DELAY_TOKENS, model[2])
        assert len(text) >= 10 and len(words) >= 3, (name, transcript.tokens)
        assert len(transcript.pause_prs[0]) == 4  # the four voice-activity heads
    token_lists = [tuple(t.tokens) for t in transcripts.values()]
    assert len(set(token_lists)) == len(token_lists)


def test_without_vad_heads_the_checkpoint_loads_and_has_none(tmp_path):
    ckpt = build_checkpoint(tmp_path / "novad", size="tiny-stt-novad")
    mimi, lm, tokenizer, stt_config = ref.load(ckpt)
    assert len(lm.extra_heads) == 0 and lm.dep_q == 0 and stt_config["audio_delay_seconds"] == 0.5
    assert model_kind(EngineSettings(model_path=str(ckpt))) == ModelKind.STT
    assert not ref.transcribe((mimi, lm, tokenizer, stt_config), np.zeros(FRAME_SAMPLES * 3, np.float32)).pause_prs


def test_alone_each_clip_gives_the_reference_tokens_and_words_by_kyutai_rule(engine, clips, reference):
    model, transcripts = reference
    seen = record_tokens(engine)
    try:
        for name, pcm in clips.items():
            client = Stream(engine, pcm)
            assert engine.admit(client.job)
            run(engine)
            assert seen[id(client.job)] == transcripts[name].tokens, name
            expected = ref.words_by_kyutai_rule(transcripts[name].tokens, DELAY_TOKENS, model[2])
            got = client.words
            assert [w.word for w in got] == [w[0] for w in expected]
            for word, (_, start, stop) in zip(got, expected):
                assert word.start_s == pytest.approx(start)
                assert word.end_s == pytest.approx(stop if stop is not None else word.end_s)
                assert word.end_s >= word.start_s
            pauses = [e for e in client.events if isinstance(e, PauseHeard)]
            assert [p.step for p in pauses] == list(range(1, len(transcripts[name].tokens) + 1))
            assert np.allclose([p.pause_prs for p in pauses], transcripts[name].pause_prs, atol=1e-5)
            assert client.done.duration_s == pytest.approx(len(pcm) / 24_000)
            assert client.done.words == got
    finally:
        engine.rule.heard = type(engine.rule).heard.__get__(engine.rule)


def test_each_step_runs_with_moshis_lazy_compile_off(engine, clips, monkeypatch):
    """A served replica imports moshi without NO_TORCH_COMPILE (this suite sets it), so only
    moshi's no_compile(), active during the step, keeps torch.compile from starting at the first
    step (seen by hand: a demo replica stuck in inductor for minutes on CPU, the socket silent)."""
    from moshi.utils import compile as moshi_compile

    compile_off, step = [], engine.slots.step

    def watched(*args):
        compile_off.append(moshi_compile._compile_disabled)
        return step(*args)

    monkeypatch.setattr(engine.slots, "step", watched)
    client = Stream(engine, next(iter(clips.values()))[:FRAME_SAMPLES * 2])
    assert engine.admit(client.job)
    run(engine)
    assert client.done and compile_off and all(compile_off)


def test_in_a_busy_batch_rows_join_at_other_steps_and_wait_for_their_clients(engine, clips, reference):
    """Three streams: one whole from the start, one streamed in uneven pieces with pauses (its row
    frozen while it waits), one joining at step 5. Each gives the reference's tokens."""
    _, transcripts = reference
    names = [name for name, *_ in STT_CLIPS]
    seen = record_tokens(engine)
    try:
        first = Stream(engine, clips[names[0]])
        streamed = Stream(engine, stream=True)
        assert engine.admit(first.job) and engine.admit(streamed.job)
        pcm = clips[names[1]]
        pieces = np.split(pcm, [700, 5000, 5100, 20_000, len(pcm) - 10])
        late = None
        frozen_ticks = 0
        for step in range(400):
            if step % 3 == 0 and pieces:
                piece = pieces.pop(0)
                engine.extend(streamed.job, piece, complete=not pieces)
            if step == 5:
                late = Stream(engine, clips[names[2]])
                assert engine.admit(late.job)
            before = streamed.job.steps
            if not engine.tick() and not engine.busy_rows:
                break
            frozen_ticks += streamed.job.steps == before and streamed.done is None
        assert frozen_ticks > 0  # its row waited for audio while the others stepped
        for client, name in ((first, names[0]), (streamed, names[1]), (late, names[2])):
            assert client.done is not None, name
            assert seen[id(client.job)] == transcripts[name].tokens, name
    finally:
        engine.rule.heard = type(engine.rule).heard.__get__(engine.rule)


def test_full_stt_is_the_1b_architecture_as_moshi_reads_it(tmp_path):
    """Checked as a config only (built on the meta device: no memory, no weights)."""
    import json

    import torch
    from moshi.models.loaders import CheckpointInfo

    from deployments import checkpoint as ck

    config = ck.make_lm_config("full-stt", 8000, 0)
    path, mimi_path = tmp_path / "config.json", tmp_path / "mimi_config.json"
    path.write_text(json.dumps(config))
    mimi_path.write_text(json.dumps(ck.make_mimi_config("full-stt")))
    info = CheckpointInfo.from_hf_repo(str(tmp_path), config_path=path, moshi_weights=path, mimi_weights=path,
                                       tokenizer=path, mimi_config_path=mimi_path)
    assert info.model_type == "stt" and info.stt_config["audio_delay_seconds"] == 0.5
    lm = info.get_moshi(device="meta", dtype=torch.bfloat16, load_weight=False)
    assert (lm.dep_q, lm.n_q, lm.depformer, len(lm.extra_heads)) == (0, 32, None, 4)
    assert lm.delays == [0] * 33 and lm.text_card == 8000
    assert 0.9e9 < sum(t.numel() for t in lm.parameters()) < 1.2e9


def test_the_model_manager_builds_the_stt_engine_for_an_stt_checkpoint(stt_settings):
    from deployments.engine.model_manager import _default_engine_factory

    engine = _default_engine_factory(stt_settings, "cpu")
    assert isinstance(engine, STTEngine) and engine.vad_heads == 4 and engine.flush_frames == 7
    engine.ensure_slots(1)
    engine.move_to("cpu")  # an offload drops the rows; ensure_slots brings them back
    assert engine.batch_size == 0
    engine.ensure_slots(1)
    assert engine.batch_size == 1


def test_not_clocked_a_clip_sent_at_once_is_heard_at_every_tick_with_the_clock_stopped(stt_settings, clips,
                                                                                      monkeypatch):
    """Kyutai's server steps a stream whenever its client has sent a frame, not on a real-time
    clock: a client faster than real time is heard faster. Through the worker's own scheduler and
    generation thread, with the engine's clock (its only one: pacing's) stopped at 0: the row of a
    clip sent at once steps at every tick from its first step to its last, and the generation
    thread never waits in between (a clocked loop would wait for its next 80 ms, or never step)."""
    import threading

    from deployments.engine import model_manager as model_manager_module
    from deployments.engine.model_manager import ModelManager
    from deployments.engine.scheduler import SlotScheduler, Submission

    log: list[tuple] = []  # ("step", step, tick, buffered) of the stream; ("wait",) of the thread

    class CountingCondition(threading.Condition):
        def wait(self, timeout=None):
            if threading.current_thread().name == "tts-generation":
                log.append(("wait",))
            return super().wait(timeout)

    def factory(settings, device):
        engine = STTEngine(settings, device)
        engine.clock = lambda: 0.0  # the wall clock, stopped
        return engine

    monkeypatch.setattr(threading, "Condition", CountingCondition)  # the scheduler's, made next
    monkeypatch.setattr(model_manager_module, "pick_device", lambda requested: requested)
    manager = ModelManager(stt_settings, offload_after_s=None, engine_factory=factory)
    scheduler = SlotScheduler(manager, max_batch_size=2)
    monkeypatch.undo()
    done = threading.Event()

    def sink(event):
        if isinstance(event, PauseHeard):
            log.append(("step", event.step, scheduler.engine.ticks, event.buffered_samples))
        done.set() if isinstance(event, TranscriptionDone) else None

    pcm = next(iter(clips.values()))[:SAMPLE_RATE * 2]  # 2 s: 25 frames
    try:
        scheduler.submit(Submission(TranscriptionRequest(audio=pcm), sink))
        assert done.wait(120), "the clip was never heard to its end"
    finally:
        scheduler.close()
        manager.close()
    steps = [entry for entry in log if entry[0] == "step"]
    first, last = log.index(steps[0]), log.index(steps[-1])
    assert [s[1] for s in steps] == list(range(1, len(steps) + 1))
    assert len(steps) >= math.ceil(len(pcm) / FRAME_SAMPLES)  # every frame heard (and the flush)
    assert [s[2] for s in steps] == list(range(steps[0][2], steps[0][2] + len(steps)))  # every tick
    assert ("wait",) not in log[first:last + 1]
