"""The scripted fakes' own scripting (pace, tone, staged faults, audio in pieces), their selection by
`test_engine`, /api/info's word about them, and the model rows. The protocol they share with the
real engine is tests/engine/test_conformance.py."""

from __future__ import annotations

import asyncio
import threading
import typing
from types import SimpleNamespace

import numpy as np
import pytest

from deployments.engine.fakes import (CRASH_MARKER, FAKE_ENGINES, HANG_MARKER, SLOW_MARKER, FakeSTTEngine,
                                      FakeTTSEngine, StagedCrash)
from deployments.engine.model_manager import _default_engine_factory
from deployments.engine.models import MODELS, ModelKind, spec_for
from deployments.protocol import (CFG_COEFS, FRAME_SAMPLES, AudioChunk, SynthesisDone, SynthesisRequest,
                                  TranscriptionDone, TranscriptionRequest)
from deployments.settings import DEFAULT_MODEL_REPO, EngineSettings

SETTINGS = EngineSettings(device="cpu")


def admitted(engine, request, events: list):
    engine.ensure_slots(2)
    job = engine.prepare(request, events.append)
    assert engine.admit(job)
    return job


def run_to_end(engine, request=None, events: list | None = None) -> None:
    """Ticks until every row is free, after admitting `request` when one is given."""
    if request is not None:
        admitted(engine, request, events)
    while engine.busy_rows:
        engine.tick()


def test_speech_keeps_its_pace_in_steps_and_sounds_a_tone_when_asked():
    engine = FakeTTSEngine(SETTINGS, "cpu", frames_per_word=2, steps_per_frame=3, tone_hz=440.0)
    events, frame_ticks = [], []
    admitted(engine, SynthesisRequest("one two"), events)
    while engine.busy_rows:
        sent = len(events)
        engine.tick()
        frame_ticks += [engine.ticks] * sum(isinstance(e, AudioChunk) for e in events[sent:])
    assert frame_ticks == [3, 6, 9, 12]  # a frame every third step of the row
    assert isinstance(events[-1], SynthesisDone) and events[-1].duration_s == pytest.approx(4 * 0.08)
    audio = np.concatenate([e.pcm for e in events if isinstance(e, AudioChunk)])
    assert 0.05 < np.abs(audio).max() <= 0.1
    quiet = []
    run_to_end(FakeTTSEngine(SETTINGS, "cpu"), SynthesisRequest("hush"), quiet)
    assert not np.any(np.concatenate([e.pcm for e in quiet if isinstance(e, AudioChunk)]))


def test_markers_stage_a_crash_a_slow_tick_and_a_hang_that_a_test_releases():
    engine = FakeTTSEngine(SETTINGS, "cpu")
    slow = []
    run_to_end(engine, SynthesisRequest(f"Slowly {SLOW_MARKER} now."), slow)
    assert engine.staging.slow_ticks == engine.ticks > 0
    assert [w.word for w in slow[-1].words] == ["Slowly", "now."]  # markers are not spoken

    admitted(engine, SynthesisRequest(f"Boom {CRASH_MARKER}"), [])
    with pytest.raises(StagedCrash):
        engine.tick()

    hung = FakeTTSEngine(SETTINGS, "cpu")
    admitted(hung, SynthesisRequest(f"Wait {HANG_MARKER}"), [])
    ticking = threading.Thread(target=hung.tick)
    ticking.start()
    assert hung.staging.hanging.wait(10)
    assert ticking.is_alive() and hung.steps == 0
    hung.staging.release.set()
    ticking.join(10)
    assert not ticking.is_alive() and hung.steps == 1


def test_audio_sent_in_pieces_is_heard_as_the_same_audio_sent_whole():
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, 10 * FRAME_SAMPLES + 700).astype(np.float32)
    whole = []
    run_to_end(FakeSTTEngine(SETTINGS, "cpu"), TranscriptionRequest(audio=audio), whole)
    engine, streamed = FakeSTTEngine(SETTINGS, "cpu"), []
    job = admitted(engine, TranscriptionRequest(stream_audio=True), streamed)
    piece = FRAME_SAMPLES * 3 // 2
    for start in range(0, len(audio), piece):
        engine.extend(job, audio[start:start + piece])
        while engine.tick():
            pass  # until the row waits for more audio
        assert not engine.runnable(job) and job.frames_in == min(start + piece, len(audio)) // FRAME_SAMPLES
    engine.extend(job, None, complete=True)
    run_to_end(engine)
    assert isinstance(streamed[-1], TranscriptionDone) and isinstance(whole[-1], TranscriptionDone)
    assert streamed[-1].duration_s == whole[-1].duration_s == pytest.approx(11 * 0.08)  # the tail padded
    assert streamed[-1].words == whole[-1].words and len(whole[-1].words) == 4  # frames 0, 3, 6, 9


def test_staged_faults_are_the_1_6b_engines_only(monkeypatch):
    """`test_faults` (an app-wide setting) makes the 1.6B model's engine the faulty one; an app's
    cloning model keeps its own engine (it once got the 1.6B one, which refused uploaded voices)."""
    import sys

    class Built:
        def __init__(self, settings, device):
            self.settings = settings

    # The engine modules the factory imports, stood in for (the real ones load torch and moshi).
    for module, name in (("clone", "CloneEngine"), ("faults", "FaultyEngine")):
        monkeypatch.setitem(sys.modules, f"deployments.engine.{module}",
                            SimpleNamespace(**{name: type(name, (Built,), {})}))
    clone = EngineSettings(model_repo="kyutai/tts-0.75b-en-public", test_faults=True)
    assert type(_default_engine_factory(clone, "cpu")).__name__ == "CloneEngine"
    assert type(_default_engine_factory(EngineSettings(test_faults=True), "cpu")).__name__ == "FaultyEngine"


def test_test_engine_selects_a_fake_and_the_fakes_refuse_the_other_kind():
    literal, none = typing.get_args(EngineSettings.model_fields["test_engine"].annotation)
    assert set(typing.get_args(literal)) == set(FAKE_ENGINES) and none is type(None)
    for name, engine_class in FAKE_ENGINES.items():
        assert type(_default_engine_factory(EngineSettings(test_engine=name), "cpu")) is engine_class
    with pytest.raises(ValueError, match="TranscriptionRequest"):
        FakeSTTEngine(SETTINGS, "cpu").prepare(SynthesisRequest("Hello."), lambda event: None)
    with pytest.raises(ValueError, match="SynthesisRequest"):
        FakeTTSEngine(SETTINGS, "cpu").prepare(TranscriptionRequest(audio=np.zeros(FRAME_SAMPLES)), lambda e: None)


def test_api_info_says_a_fake_engine_runs():
    from serve_app.routes.ui import info
    from serve_app.service.served_models import served_models
    from serve_app.settings import AppSettings

    def info_for(**values) -> dict:
        settings = AppSettings(**values)
        models = served_models(settings, {name: None for name in settings.model_names()}, "unit")
        return asyncio.run(info(ctx=SimpleNamespace(settings=settings, models=models)))

    assert (info_for(test_engine="fake-tts")["engine"], info_for(test_engine="fake-tts")["test_model"]) == ("fake-tts", True)
    real = info_for(model_repo="kyutai/tts-1.6b-en_fr")
    assert (real["engine"], real["test_model"]) == (None, False)


def test_model_rows_hold_the_facts_the_next_engines_need():
    served = spec_for(DEFAULT_MODEL_REPO)
    assert [spec.repo for spec in MODELS.values() if spec.served] == [
        DEFAULT_MODEL_REPO, "kyutai/tts-0.75b-en-public", "kyutai/stt-1b-en_fr", "kyutai/stt-1b-en_fr-candle"]
    assert served.cfg_coefs == CFG_COEFS and not served.real_cfg and 24 in served.n_q_allowed
    prompt = spec_for("kyutai/tts-0.75b-en-public")
    assert prompt.kind is ModelKind.TTS_AUDIO_PROMPT and prompt.real_cfg and prompt.cfg_coefs is None
    assert prompt.n_q_default == 16 and prompt.n_q_allowed == (16,)
    stt = {repo: spec.delay_s for repo, spec in MODELS.items() if spec.kind is ModelKind.STT}
    assert stt == {"kyutai/stt-1b-en_fr": 0.5, "kyutai/stt-1b-en_fr-candle": 0.5, "kyutai/stt-2.6b-en": 2.5}
    assert all(MODELS[repo].voice_id is None and MODELS[repo].n_q_default is None for repo in stt)
    assert spec_for("local/tiny") is None


def test_api_info_lists_every_model_of_the_table_with_its_kind():
    from serve_app.routes.ui import info
    from serve_app.service.served_models import served_models
    from serve_app.settings import AppSettings

    settings = AppSettings(models={"real": {"model_repo": "kyutai/tts-1.6b-en_fr"}, "fake": {"test_engine": "fake-tts"}},
                           default_model="fake")
    models = served_models(settings, {name: None for name in settings.model_names()}, "unit")
    body = asyncio.run(info(ctx=SimpleNamespace(settings=settings, models=models)))
    assert [(m["name"], m["default"], m["test_model"], m["kind"]) for m in body["models"]] == [
        ("real", False, False, "tts-embedding-voices"), ("fake", True, True, "tts-embedding-voices")]
    assert (body["engine"], body["test_model"]) == ("fake-tts", True)  # the top level: the default model
