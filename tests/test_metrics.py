"""The ingress's encoding meter (serve_app/metrics.py): real encoders feed it, sums are exact across
threads, and it hands its sums on once per interval. In-process, with the hand-over captured: the
export itself is two of Ray's counters, which the dashboard test checks by name."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from deployments.synthesis import SAMPLE_RATE
from serve_app import audio, metrics
from serve_app.metrics import EncodingMeter


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
    assert meter.exported == []  # nothing handed on before the interval


def test_sums_from_many_threads_are_exact_and_handed_on_once_per_interval(meter, monkeypatch):
    def work():
        for _ in range(1000):
            meter.record("opus", 0.08, 0.0001)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert meter._pending["opus"] == [pytest.approx(0.4), pytest.approx(320.0)]
    monkeypatch.setattr(metrics, "FLUSH_EVERY_S", 0.0)
    meter.record("opus", 0.08, 0.0001)
    assert meter.exported == [{"opus": [pytest.approx(0.4001), pytest.approx(320.08)]}]
    assert meter._pending == {}

