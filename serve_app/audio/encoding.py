"""Encoding float PCM (24 kHz mono) into the formats clients ask for, with PyAV (FFmpeg)."""

from __future__ import annotations

import io

import av
import numpy as np

from deployments.protocol import SAMPLE_RATE

from .formats import FORMATS, AudioFormat
from .meter import ENCODING


def to_int16(pcm: np.ndarray) -> np.ndarray:
    return (np.clip(pcm, -1.0, 1.0) * 32767.0).round().astype("<i2")


# Encoder settings per codec. LAME's default quality (3: full psychoacoustic noise shaping) cost
# ~12 ms of CPU per second of 24 kHz mono audio; quality 7 costs ~5 ms at the same bitrate (the
# same bytes per second), and at speech bitrates the difference is hard to hear. Measured by
# benchmarks/ingress_encoding.py, which also shows what the other formats cost.
CODEC_OPTIONS: dict[str, dict[str, str]] = {"libmp3lame": {"compression_level": "7"}}

# Encoding more audio than this on an event loop holds every other request up: callers with a
# running loop hand longer pieces to a thread (see `costly`).
INLINE_MAX_MS = 1.0
# CPU milliseconds per second of audio (24 kHz mono, this machine class), from the benchmark;
# rounded up. Formats not listed cost far less than a millisecond per frame.
CPU_MS_PER_AUDIO_S = {"mp3": 6.0, "opus": 5.0, "aac": 5.0, "flac": 1.0, "wav": 0.3, "pcm": 0.1}


def costly(fmt: str, samples: int) -> bool:
    """Whether encoding `samples` of `fmt` may take more than INLINE_MAX_MS of CPU."""
    return samples / SAMPLE_RATE * CPU_MS_PER_AUDIO_S.get(fmt, 10.0) > INLINE_MAX_MS


def _open(sink, fmt: AudioFormat):
    # Ogg pages are flushed every 20 ms of audio instead of FFmpeg's default 1 s, so a stream
    # sends each 80 ms frame as soon as it is encoded.
    options = {"page_duration": "20000"} if fmt.container == "ogg" else {}
    container = av.open(sink, mode="w", format=fmt.container, options=options)
    stream = container.add_stream(fmt.codec, rate=SAMPLE_RATE, options=dict(CODEC_OPTIONS.get(fmt.codec, {})))
    stream.layout = "mono"
    container.start_encoding()  # the header now, so even an empty clip is a valid file
    return container, stream


def _frame(samples: np.ndarray, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    frame.pts = pts
    return frame


def encode(pcm: np.ndarray, fmt: str) -> bytes:
    """The whole clip in format `fmt` (a key of FORMATS), headers complete (WAV and FLAC sizes,
    MP3 length): the container writes into a seekable buffer and patches them on close."""
    with ENCODING.timed(fmt, pcm.shape[0] / SAMPLE_RATE):
        return _encode(pcm, FORMATS[fmt])


def _encode(pcm: np.ndarray, audio_format: AudioFormat) -> bytes:
    samples = to_int16(pcm)
    if audio_format.container is None:
        return samples.tobytes()
    buffer = io.BytesIO()
    container, stream = _open(buffer, audio_format)
    for packet in stream.encode(_frame(samples, 0)) if samples.size else ():
        container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    return buffer.getvalue()


class _Pipe:
    """A write-only, NON-seekable file for FFmpeg: muxers then write streaming headers (WAV with
    'unknown length' sizes, FLAC without a total) instead of seeking back to patch them, and every
    byte written can be sent on at once."""

    def __init__(self):
        self._parts: list[bytes] = []

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class StreamEncoder:
    """Incremental encoder: `feed()` PCM as it arrives and send the returned bytes on; `finish()`
    flushes the encoder and the container. The concatenation of everything returned is a valid
    file of the format (WAV carries an 'unknown length' header, as streaming WAV servers do)."""

    def __init__(self, fmt: str):
        self.format = FORMATS[fmt]
        self._pipe = _Pipe()
        self._container = None
        self._stream = None
        self._pts = 0
        if self.format.container:
            self._container, self._stream = _open(self._pipe, self.format)

    def feed(self, pcm: np.ndarray) -> bytes:
        with ENCODING.timed(self.format.name, pcm.shape[0] / SAMPLE_RATE):
            return self._feed(pcm)

    def finish(self) -> bytes:
        with ENCODING.timed(self.format.name, 0.0):
            return self._finish()

    def _feed(self, pcm: np.ndarray) -> bytes:
        samples = to_int16(pcm)
        if self._container is None:
            return samples.tobytes()
        if samples.size == 0:
            return b""
        frame = _frame(samples, self._pts)
        self._pts += samples.shape[0]
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._pipe.take()

    def _finish(self) -> bytes:
        if self._container is None:
            return b""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None
        return self._pipe.take()
