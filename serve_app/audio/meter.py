"""Prometheus metrics of an Ingress replica, exported through Ray's metrics endpoint (with the
deployment/replica tags Serve adds): the CPU its audio encoding costs, per format.

Encoding is the ingress's main CPU cost (benchmarks/ingress_encoding.py). Two counters per format,
CPU seconds spent and audio seconds produced, give the dashboard its ratio (CPU per audio
second) and the audio rate the tier carries. An 80 ms frame is encoded in ~0.4 ms, so amounts are
summed here and handed to Ray once per FLUSH_EVERY_S by a thread of their own, not on every frame.
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
    encoding threads); a daemon thread hands the sums to Ray's counters every FLUSH_EVERY_S, so
    encoding never waits on Ray and an idle replica's last second is exported too."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: dict[str, list[float]] = {}
        self._flusher: threading.Thread | None = None
        self._counters = None  # created by the first export, inside a Ray worker

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
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_forever, name="encoding-metrics", daemon=True)
                self._flusher.start()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        if pending:
            self._export(pending)

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_EVERY_S)
            self.flush()

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
