"""The ingress's encoding meter (serve_app/audio/meter.py): real encoders feed it, sums are exact across
threads, and a flush hands its sums on (in-process, with the hand-over captured); and, on the real
app, what the ingress encoded reaches Ray's Prometheus endpoint."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

from deployments.protocol import SAMPLE_RATE
from serve_app import audio
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


def exported_audio_s(fmt: str) -> float:
    """ray_tts_ingress_encoded_audio_seconds_total of the main app's ingress for `fmt`, as Ray's
    Prometheus endpoint on this node shows it (0 before the first export)."""
    import httpx
    import ray

    port = ray._private.worker.global_worker.node.metrics_export_port
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    pattern = re.compile(r'^ray_tts_ingress_encoded_audio_seconds_total\{(.*)\} (\S+)$')
    total = 0.0
    for line in text.splitlines():
        match = pattern.match(line)
        if match and f'format="{fmt}"' in match.group(1) and 'application="tts"' in match.group(1):
            total += float(match.group(2))
    return total


def test_the_ingress_exports_what_it_encoded_through_rays_metrics_endpoint(client):
    before = exported_audio_s("flac")
    response = client.post("/api/tts", json={"text": "Counted by the ingress.", "format": "flac"})
    assert response.status_code == 200
    seconds = float(response.headers["X-TTS-Duration"])
    deadline = time.monotonic() + 60  # Ray exports a worker's metrics every few seconds
    while exported_audio_s("flac") < before + 0.99 * seconds:
        assert time.monotonic() < deadline, "the ingress's encoding counters never reached Prometheus"
        time.sleep(1)
