"""Audio files for the voice-clip tests, encoded here with PyAV (FFmpeg): any rate, channels,
container and codec, so that what serve_app/audio/clips.py decodes is a real file of that kind."""

from __future__ import annotations

import functools
import io

import av
import numpy as np


def tone(seconds: float, rate: int = 24000, amplitude: float = 0.3, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def audio_file(channels: np.ndarray, rate: int = 24000, container: str = "wav", codec: str = "pcm_s16le",
               layout: str | None = None) -> bytes:
    """`channels` [C, N] float in [-1, 1] as a file of `container`/`codec` at `rate`."""
    channels = np.atleast_2d(channels)
    layout = layout or {1: "mono", 2: "stereo"}[channels.shape[0]]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = layout
        # Packed s16: one row of interleaved samples.
        samples = (np.clip(channels, -1, 1) * 32767).round().astype("<i2").T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


@functools.lru_cache(maxsize=2)  # encoding an hour takes a second: once per test run
def silence_bomb(seconds: float = 3600.0) -> bytes:
    """An hour of silence as FLAC: a small file that decodes to far more audio than any clip."""
    return audio_file(np.zeros((1, int(seconds * 8000)), np.float32), rate=8000, container="flac", codec="flac")


def count_decoding(monkeypatch) -> list[float]:
    """Makes serve_app/audio/clips.py's decoder note, after each decode, the seconds of audio it
    decoded (the work a file cost): the list returned fills as files are decoded."""
    from serve_app.audio import clips

    decoded: list[float] = []

    class Counting(clips._Decoder):
        def decode(self, data):
            try:
                return super().decode(data)
            finally:
                decoded.append(self.decoded_s)

    monkeypatch.setattr(clips, "_Decoder", Counting)
    return decoded


def checkpoint_clip(checkpoint, name: str, rate: int = 24000) -> np.ndarray:
    """A clip of a test checkpoint (e.g. the tiny STT model's `clips/mid.wav`) as mono float32 at
    `rate` (resampled by sphn, as the reference reads it)."""
    import sphn

    pcm, _ = sphn.read(str(checkpoint / name), sample_rate=rate)
    return pcm[0].astype(np.float32)
