"""Prometheus metrics of an Ingress replica, exported through Ray's metrics endpoint (with the
deployment/replica tags Serve adds): the CPU its audio encoding costs, per format.

Encoding is the ingress's main CPU cost (benchmarks/ingress_encoding.py). Two counters per format,
CPU seconds spent and audio seconds produced, give the dashboard its ratio (CPU per audio
second) and the audio rate the tier carries. An 80 ms frame is encoded in ~0.4 ms, so amounts are
summed here and handed to Ray at most once per FLUSH_EVERY_S, not on every frame.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 1.0


class EncodingMeter:
    """Sums (CPU seconds, audio seconds) per format from any thread (the event loop and the
    encoding threads) and adds them to Ray's counters at most once per FLUSH_EVERY_S."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: dict[str, list[float]] = {}
        self._flushed_at = time.monotonic()
        self._counters = None  # created on the first flush, inside a Ray worker

    @contextlib.contextmanager
    def timed(self, fmt: str, audio_s: float):
        """Records the CPU this thread spends in the block (not the wall time: other threads and
        requests run meanwhile) as encoding `audio_s` seconds of `fmt`."""
        started = time.thread_time()
        try:
            yield
        finally:
            self.record(fmt, audio_s, time.thread_time() - started)

    def record(self, fmt: str, audio_s: float, cpu_s: float) -> None:
        with self._lock:
            sums = self._pending.setdefault(fmt, [0.0, 0.0])
            sums[0] += cpu_s
            sums[1] += audio_s
            if time.monotonic() - self._flushed_at < FLUSH_EVERY_S:
                return
            pending, self._pending = self._pending, {}
            self._flushed_at = time.monotonic()
        self._export(pending)

    def _export(self, pending: dict[str, list[float]]) -> None:
        try:
            if self._counters is None:
                from ray.serve.metrics import Counter

                self._counters = (
                    Counter("tts_ingress_encode_cpu_seconds", tag_keys=("format",),
                            description="CPU seconds the ingress spent encoding audio, by format."),
                    Counter("tts_ingress_encoded_audio_seconds", tag_keys=("format",),
                            description="Seconds of audio the ingress encoded, by format."))
            cpu, audio = self._counters
            for fmt, (cpu_s, audio_s) in pending.items():
                if cpu_s > 0:  # Ray's counters take positive increments only
                    cpu.inc(cpu_s, tags={"format": fmt})
                if audio_s > 0:
                    audio.inc(audio_s, tags={"format": fmt})
        except Exception:  # noqa: BLE001 - outside Ray (benchmarks, unit use) there is nowhere to export
            log.debug("encoding metrics not exported", exc_info=True)


ENCODING = EncodingMeter()
