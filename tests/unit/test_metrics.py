"""The ingress's encoding meter (serve_app/audio/meter.py): real encoders feed it, sums are exact across
threads, and a flush hands its sums on (in-process, with the hand-over captured). The export
through Ray is tests/serve/test_metrics_exported.py."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from deployments.protocol import SAMPLE_RATE
from serve_app.audio import encoding as audio
from serve_app.audio import meter as metrics
from serve_app.audio.meter import EncodingMeter


@pytest.fixture
def meter(monkeypatch) -> EncodingMeter:
    fresh = EncodingMeter()
    exported: list[dict] = []
    monkeypatch.setattr(fresh, "_export", exported.append)
    fresh.exported = exported
    monkeypatch.setattr(audio, "ENCODING", fresh)
    monkeypatch.setattr(metrics, "FLUSH_EVERY_S", 3600.0)
    return fresh


def noise(seconds: float) -> np.ndarray:
    return np.random.default_rng(0).uniform(-0.3, 0.3, round(seconds * SAMPLE_RATE)).astype(np.float32)


def test_a_streamed_clip_and_a_whole_clip_are_metered_by_format(meter):
    pcm = noise(2.0)
    encoder = audio.StreamEncoder("mp3")
    for start in range(0, pcm.size, 1920):  # 80 ms frames, as the worker sends them
        encoder.feed(pcm[start:start + 1920])
    encoder.finish()
    audio.encode(pcm[:SAMPLE_RATE], "wav")
    cpu_mp3, audio_mp3 = meter._pending["mp3"]
    cpu_wav, audio_wav = meter._pending["wav"]
    assert audio_mp3 == pytest.approx(2.0) and audio_wav == pytest.approx(1.0)
    # Thread CPU time: mp3 costs something, and more per audio second than writing WAV.
    assert cpu_mp3 > 0 and cpu_mp3 / audio_mp3 > cpu_wav / audio_wav
    assert meter.exported == []  # nothing handed on before a flush


def test_sums_from_many_threads_are_exact_and_handed_on_by_a_flush(meter):
    def work():
        for _ in range(1000):
            meter.record("opus", 0.08, 0.0001)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert meter._pending["opus"] == [pytest.approx(0.4), pytest.approx(320.0)]
    assert meter._flusher is not None and meter._flusher.daemon  # one flusher, started by the first record
    meter.flush()
    assert meter.exported == [{"opus": [pytest.approx(0.4), pytest.approx(320.0)]}]
    meter.flush()  # nothing new: nothing handed on
    assert meter.exported == [{"opus": [pytest.approx(0.4), pytest.approx(320.0)]}] and meter._pending == {}




