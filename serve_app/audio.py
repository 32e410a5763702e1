"""Encoding float PCM (24 kHz mono) into the formats clients ask for, with PyAV (FFmpeg)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np

from deployments.synthesis import SAMPLE_RATE


@dataclass(frozen=True)
class AudioFormat:
    name: str
    media_type: str
    container: str | None  # None: raw PCM, no container
    codec: str | None
    extension: str


FORMATS: dict[str, AudioFormat] = {f.name: f for f in [
    AudioFormat("wav", "audio/wav", "wav", "pcm_s16le", "wav"),
    AudioFormat("mp3", "audio/mpeg", "mp3", "libmp3lame", "mp3"),
    AudioFormat("opus", "audio/ogg; codecs=opus", "ogg", "libopus", "ogg"),
    AudioFormat("aac", "audio/aac", "adts", "aac", "aac"),
    AudioFormat("flac", "audio/flac", "flac", "flac", "flac"),
    # Raw signed 16-bit little-endian, 24 kHz mono: never labelled as WAV.
    AudioFormat("pcm", "audio/L16; rate=24000; channels=1", None, None, "pcm"),
]}


def to_int16(pcm: np.ndarray) -> np.ndarray:
    return (np.clip(pcm, -1.0, 1.0) * 32767.0).round().astype("<i2")


def encode(pcm: np.ndarray, fmt: str) -> bytes:
    """The whole clip in format `fmt` (a key of FORMATS)."""
    encoder = StreamEncoder(fmt)
    streamed = encoder.feed(pcm) + encoder.finish()
    # Containers that patch their header on close (WAV sizes) are complete only in the buffer.
    return encoder.complete_file() if encoder.format.container else streamed


class StreamEncoder:
    """Incremental encoder: `feed()` PCM as it arrives and send the returned bytes on; `finish()`
    flushes. WAV streams carry an 'unknown length' header, as streaming WAV servers do."""

    def __init__(self, fmt: str):
        self.format = FORMATS[fmt]
        self._buffer = io.BytesIO()
        self._sent = 0
        self._container = None
        self._stream = None
        self._pts = 0
        if self.format.container:
            self._container = av.open(self._buffer, mode="w", format=self.format.container)
            self._stream = self._container.add_stream(self.format.codec, rate=SAMPLE_RATE)
            self._stream.layout = "mono"

    def _take(self) -> bytes:
        data = self._buffer.getvalue()[self._sent:]
        self._sent += len(data)
        return data

    def feed(self, pcm: np.ndarray) -> bytes:
        samples = to_int16(pcm)
        if self._container is None:
            return samples.tobytes()
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        self._pts += samples.shape[0]
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._take()

    def complete_file(self) -> bytes:
        """The whole file, headers patched (after finish())."""
        return self._buffer.getvalue()

    def finish(self) -> bytes:
        if self._container is None:
            return b""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._take()
