"""Ingress CPU per second of audio, per format: what one ingress core can carry.

    .venv/bin/python benchmarks/ingress_encoding.py [--seconds 20] [--streams 8] [--repeat 3]

Three measurements, each in CPU time of this process (`time.process_time()`, every thread, as the
ingress replica pays it; wall time would hide threads and idle waits), divided by the seconds of
audio produced:

1. encoder: serve_app/audio/encoding.py's StreamEncoder fed 80 ms frames of 24 kHz float32 (what
   serve_app/service/streaming.py encoded_audio does per frame), mp3 also through the time-stretch path
   (speed 1.25); and whole-clip encoding (`audio.encode`, what non-streamed answers and MCP use).
2. route: the ingress's FastAPI app in this process, `POST /v1/audio/speech` streamed, called as an
   ASGI app (no HTTP socket, no client) with the real WorkerClient over a fake Serve handle that
   yields one 80 ms AudioChunk per event, as a TTSWorker does. This is the ingress's whole HTTP
   streaming path except Ray: the handle's transport and deserialization, and Serve's HTTP proxy
   (another process), are not in it. `route - encoder` per event is the per-event overhead of
   the streaming path (Starlette, the body generator, WorkerClient).
3. both with the encoder settings from before this change ("before": LAME's default quality) and
   as they are now ("after"), in the same run.

Audio is noise at speech level (the worst case for encoders; the test model's audio is noise too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deployments.protocol import FRAME_SAMPLES, SAMPLE_RATE, AudioChunk, SynthesisDone  # noqa: E402
from serve_app.audio import encoding as audio  # noqa: E402

FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]
OLD_CODEC_OPTIONS: dict = {}  # before: every codec at FFmpeg's defaults
NEW_CODEC_OPTIONS = dict(audio.CODEC_OPTIONS)


def cpu_s() -> float:
    return time.process_time()


def rusage_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SAMPLE_RATE)) * 0.1).astype(np.float32)


def frames(pcm: np.ndarray):
    for start in range(0, pcm.shape[0], FRAME_SAMPLES):
        yield pcm[start:start + FRAME_SAMPLES]


# ---- 1. the encoder alone ---------------------------------------------------------------------------
def streamed_encoder_ms(fmt: str, pcm: np.ndarray, speed: float = 1.0) -> float:
    from serve_app.audio.tempo import Tempo

    start = cpu_s()
    encoder, tempo = audio.StreamEncoder(fmt), Tempo(speed)
    for frame in frames(pcm):
        encoder.feed(tempo.process(frame))
    encoder.feed(tempo.flush())
    encoder.finish()
    return (cpu_s() - start) / (pcm.shape[0] / SAMPLE_RATE) * 1000


def whole_clip_ms(fmt: str, pcm: np.ndarray) -> float:
    start = cpu_s()
    audio.encode(pcm, fmt)
    return (cpu_s() - start) / (pcm.shape[0] / SAMPLE_RATE) * 1000


# ---- 2. the ingress route in this process -------------------------------------------------------------
class FakeResponses:
    """What `handle.synthesize_stream.options(stream=True).remote(request)` returns: event lists."""

    def __init__(self, pcm: np.ndarray):
        self._events = [[AudioChunk(frame.copy())] for frame in frames(pcm)]
        self._events.append([SynthesisDone("bench", "voice", pcm.shape[0] / SAMPLE_RATE, [],
                                           served_by={"gpu": 0, "replica": "bench"})])

    def __aiter__(self):
        return self

    async def __anext__(self):
        if not self._events:
            raise StopAsyncIteration
        await asyncio.sleep(0)  # a real stream waits for the worker here
        return self._events.pop(0)

    def cancel(self):
        pass


class FakeHandle:
    def __init__(self, pcm: np.ndarray):
        self.pcm = pcm
        self.synthesize_stream = SimpleNamespace(
            options=lambda **_: SimpleNamespace(remote=lambda request: FakeResponses(self.pcm)))


def build_app(pcm: np.ndarray, outputs_dir: str):
    from serve_app.context import IngressContext
    from serve_app.ingress import create_app
    from serve_app.settings import AppSettings

    settings = AppSettings(outputs_dir=outputs_dir, voice_repo=None)
    return create_app(IngressContext.create(settings, {"default": FakeHandle(pcm)}, "bench"))


async def call(app, fmt: str) -> int:
    """One streamed POST /v1/audio/speech; returns the bytes of its body."""
    body = json.dumps({"input": "benchmark", "response_format": fmt}).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/audio/speech", "raw_path": b"/v1/audio/speech", "query_string": b"",
             "root_path": "", "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                                          (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}
    sent = {"body": b"", "request": False, "size": 0, "status": None}

    async def receive():
        if not sent["request"]:
            sent["request"] = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays connected

    async def send(message):
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]
        elif message["type"] == "http.response.body":
            sent["size"] += len(message.get("body", b""))

    await app(scope, receive, send)
    assert sent["status"] == 200, sent
    return sent["size"]


def route_ms(app, fmt: str, streams: int, seconds: float) -> tuple[float, float, int]:
    """(CPU ms per audio second by process_time, the same by getrusage, body bytes of one stream)."""
    async def run():
        return await asyncio.gather(*(call(app, fmt) for _ in range(streams)))

    start, start_ru = cpu_s(), rusage_s()
    sizes = asyncio.run(run())
    audio_s = streams * seconds
    return (cpu_s() - start) / audio_s * 1000, (rusage_s() - start_ru) / audio_s * 1000, sizes[0]


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per stream")
    parser.add_argument("--streams", type=int, default=8, help="concurrent streams through the route")
    parser.add_argument("--repeat", type=int, default=3, help="each figure is the least of this many runs")
    options = parser.parse_args()
    pcm = noise(options.seconds)
    events = options.seconds * SAMPLE_RATE / FRAME_SAMPLES

    print(f"CPU ms per second of audio (24 kHz mono, {options.seconds:g} s clips of noise; "
          f"route: {options.streams} concurrent streams)\n")
    header = (f"{'format':<12}{'encoder stream':>16}{'whole clip':>12}{'route stream':>14}{'(rusage)':>10}"
              f"{'overhead/event':>16}")
    with tempfile.TemporaryDirectory() as outputs:
        app = build_app(pcm, outputs)
        route_ms(app, "pcm", 1, options.seconds)  # warm-up: imports, first requests
        results = {}
        for label, codec_options in (("before", OLD_CODEC_OPTIONS), ("after", NEW_CODEC_OPTIONS)):
            audio.CODEC_OPTIONS.clear()
            audio.CODEC_OPTIONS.update(codec_options)
            print(f"== {label}: codec options {codec_options or 'FFmpeg defaults'}")
            print(header)
            for fmt in FORMATS:
                # The least of several runs: other processes on the machine only ever add.
                enc = min(streamed_encoder_ms(fmt, pcm) for _ in range(options.repeat))
                whole = min(whole_clip_ms(fmt, pcm) for _ in range(options.repeat))
                route, route_ru, size = min(route_ms(app, fmt, options.streams, options.seconds)
                                            for _ in range(options.repeat))
                overhead_us = (route - enc) * options.seconds / events * 1000
                results[label, fmt] = route
                print(f"{fmt:<12}{enc:>16.2f}{whole:>12.2f}{route:>14.2f}{route_ru:>10.2f}{overhead_us:>13.0f} us"
                      f"   ({size * 8 / options.seconds / 1000:.0f} kbit/s)")
            print(f"{'mp3 x1.25':<12}{streamed_encoder_ms('mp3', pcm, 1.25):>16.2f}   (time-stretched, speed 1.25)\n")
        audio.CODEC_OPTIONS.clear()
        audio.CODEC_OPTIONS.update(NEW_CODEC_OPTIONS)
    mp3_before, mp3_after = results["before", "mp3"], results["after", "mp3"]
    print(f"streamed mp3 through the ingress route: {mp3_before:.2f} -> {mp3_after:.2f} ms CPU per audio second: "
          f"one core carries ~{1000 / mp3_before:.0f} -> ~{1000 / mp3_after:.0f} real-time mp3 streams "
          f"(Ray's handle transport and Serve's HTTP proxy not included)")


if __name__ == "__main__":
    main()
