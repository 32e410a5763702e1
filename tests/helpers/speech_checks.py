"""Helpers shared by the streaming, OpenAI and WebSocket tests: independent decoding of what the
service sends, SSE parsing, and the workers' own reports (read from the worker registry actor of the
session's Ray cluster, the same source /api/gpu/status reads)."""

from __future__ import annotations

import io
import json
import time

import av
import ray

SAMPLE_RATE = 24_000
FRAME_S = 0.08
# Opus always decodes at 48 kHz (the Ogg header keeps 24 kHz as the input rate).
DECODED_RATES = {"mp3": 24_000, "opus": 48_000, "aac": 24_000, "flac": 24_000, "wav": 24_000}
# Encoder priming/padding: MP3 and AAC add up to a frame or two of samples.
CODEC_SLACK_S = 0.15

# A long text: 12 sentences, 132 words. Every word takes at least one model step, so a
# generation that stopped after fewer steps than LONG_TEXT_WORDS was cut short.
LONG_TEXT = " ".join(f"This is sentence number {i} of a long text that we stream." for i in range(12))
LONG_TEXT_WORDS = len(LONG_TEXT.split())


def decode(data: bytes) -> tuple[int, float]:
    """(sample rate, seconds) of an encoded file, decoded by FFmpeg through PyAV."""
    with av.open(io.BytesIO(data)) as container:
        samples, rate = 0, None
        for frame in container.decode(audio=0):
            samples += frame.samples
            rate = frame.sample_rate
    assert rate is not None, "no audio decoded"
    return rate, samples / rate


def pcm_seconds(data: bytes) -> float:
    assert len(data) % 2 == 0
    return len(data) / 2 / SAMPLE_RATE


def sse_events(lines) -> list[dict]:
    """The JSON payloads of `data:` lines of a Server-Sent Events body."""
    events = []
    for line in lines:
        line = line.decode() if isinstance(line, bytes) else line
        if line.startswith("data:"):
            events.append(json.loads(line[5:].strip()))
    return events


def worker_reports(app: str = "tts") -> tuple[float, list[dict]]:
    """(monotonic time just before asking, each replica's last report). time.monotonic() is one
    clock for every process of this machine, so `asked - reported_s_ago` dates a report."""
    from deployments.serve.registry import get_registry

    asked = time.monotonic()
    return asked, ray.get(get_registry(app).snapshot.remote(), timeout=30)


def reports_after(moment: float, app: str = "tts", timeout_s: float = 60) -> list[dict]:
    """Reports of every replica, each made after `moment` (replicas report every second)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        asked, reports = worker_reports(app)
        if reports and all(asked - r["reported_s_ago"] > moment for r in reports):
            return reports
        time.sleep(0.2)
    raise AssertionError(f"no fresh worker reports since {moment}")


def wait_idle(app: str = "tts", timeout_s: float = 120) -> list[dict]:
    """Reports, made after this call began, in which no replica has a request running or queued."""
    start = time.monotonic()
    deadline = start + timeout_s
    while time.monotonic() < deadline:
        reports = reports_after(start, app)
        if all(r["active"] == 0 and r["queued"] == 0 for r in reports):
            return reports
        start = time.monotonic()
    raise AssertionError("the workers did not become idle")


def total_steps(reports: list[dict]) -> int:
    """Model steps the reporting workers ran so far."""
    return sum(r["steps"] for r in reports)


def total_admissions(reports: list[dict]) -> int:
    """Requests the reporting workers started in a slot so far (one generation each)."""
    return sum(r["admissions"] for r in reports)
