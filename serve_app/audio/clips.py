"""Voice clips: an uploaded file of any format FFmpeg reads, turned into the prompt a cloning model
continues (24 kHz mono float PCM), or refused with a clear 4xx.

What is checked, in order, on bytes nobody vouches for (the upload's declared type is ignored: the
bytes are what they decode as):
1. It decodes: FFmpeg (PyAV) finds an audio stream and decodes it (else 415 `clip_not_audio`).
2. Bounded work, so that a decompression bomb or a lying header cannot hold the ingress: decoding
   stops as soon as the audio decoded passes `max_s` (422 `clip_too_long`, whatever the file's size
   or what its header claims), a clip of more than `MAX_CHANNELS` channels or a sample rate outside
   `SAMPLE_RATES` is refused before its audio is kept, and the whole decode has a deadline
   (`decode_timeout_s`, checked between packets: 422 `clip_decode_limit`).
3. Resampled to 24 kHz (FFmpeg's resampler) and mixed down to mono (the channels' mean),
   non-finite samples zeroed.
4. Its quiet start and end (20 ms windows below `silence_dbfs`) are cut; nothing left is 422
   `clip_silent`; less than `min_s` left is 422 `clip_too_short`.
5. Trimmed to `prompt_s` (10 s by default), the prompt the model is given. Why 10 s: moshi feeds
   the whole clip as teacher-forced steps (one 80 ms frame a step, DESIGN.md section 9) before the
   first word, so every second of prompt delays the first audio by 12.5 steps on first use and
   costs ~2.5 MB of cached row state (issue 19's snapshots: ~25 MB per 10 s); the model's context is
   500 steps (40 s), so a 10 s prompt leaves 30 s of context for the speech; and Kyutai's own voice
   prompts (kyutai/tts-voices) are about 10 s long. More prompt buys little likeness for that cost.

`decode_clip` is synchronous CPU work (up to `decode_timeout_s`): call it in a thread.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import av
import numpy as np

from deployments.protocol import SAMPLE_RATE

from ..errors import APIError
from ..protocols.error_shape import Refusal

MAX_CHANNELS = 8
SAMPLE_RATES = range(4000, 384001)
WINDOW_S = 0.02  # the silence meter's window

NOT_AUDIO = Refusal("clip_not_audio", "The file is not audio FFmpeg can decode (its declared type is not trusted).",
                    "file")
TOO_SHORT = Refusal("clip_too_short", "The clip holds less sound than voice_clip_min_s (its quiet start and end "
                                      "not counted).", "file")
TOO_LONG = Refusal("clip_too_long", "The clip decodes to more than voice_clip_max_s of audio (decoding stops there).",
                   "file")
SILENT = Refusal("clip_silent", "The clip is silent (no 20 ms above voice_clip_silence_dbfs).", "file")
DECODE_LIMIT = Refusal("clip_decode_limit", "The clip costs more to decode than any valid clip (decode time, "
                                            "channels or sample rate beyond the limits).", "file")
# status -> the refusals of that status, for the OpenAPI document of a route that takes a clip.
REFUSALS: dict[int, list[Refusal]] = {415: [NOT_AUDIO], 422: [TOO_SHORT, TOO_LONG, SILENT, DECODE_LIMIT]}


class ClipRefused(APIError):
    def __init__(self, refusal: Refusal, message: str):
        status = next(status for status, refusals in REFUSALS.items() if refusal.code in {r.code for r in refusals})
        super().__init__(status, message, param=refusal.param, code=refusal.code)


@dataclass(frozen=True)
class ClipLimits:
    min_s: float = 3.0
    max_s: float = 30.0
    prompt_s: float = 10.0
    silence_dbfs: float = -50.0
    decode_timeout_s: float = 5.0

    @classmethod
    def from_settings(cls, settings) -> "ClipLimits":
        return cls(settings.voice_clip_min_s, settings.voice_clip_max_s, settings.voice_prompt_s,
                   settings.voice_clip_silence_dbfs, settings.voice_clip_decode_timeout_s)


@dataclass(frozen=True)
class Clip:
    pcm: np.ndarray        # the prompt: float32, mono, SAMPLE_RATE, at most prompt_s long
    sound_s: float         # seconds of sound in the upload (its quiet start and end cut)
    source: str            # what it decoded as: "container/codec"

    @property
    def duration_s(self) -> float:
        return self.pcm.shape[0] / SAMPLE_RATE


class _Decoder:
    """One upload's decode, its work counted (`decoded_s`: audio decoded, at the input's rate).
    `max_setting` names the setting of `limits.max_s` in the refusal's message."""

    def __init__(self, limits: ClipLimits, clock=time.monotonic, max_setting: str = "voice_clip_max_s"):
        self.limits, self.clock, self.max_setting = limits, clock, max_setting
        self.decoded_s = 0.0
        # Resampled with the input's channels kept (planar), then averaged: FFmpeg's own downmix
        # adds the channels at -3 dB each, which lifts a centred voice by 3 dB and can clip it.
        self.resampler = av.AudioResampler(format="fltp", rate=SAMPLE_RATE)

    def decode(self, data: bytes) -> tuple[np.ndarray, str]:
        deadline = self.clock() + self.limits.decode_timeout_s
        try:
            container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
        except Exception:  # noqa: BLE001 - whatever FFmpeg says about bytes that are not a file it reads
            raise ClipRefused(NOT_AUDIO, "the file is not audio that FFmpeg can read") from None
        with container:
            if not container.streams.audio:
                raise ClipRefused(NOT_AUDIO, f"the file ({container.format.name}) holds no audio stream")
            stream = container.streams.audio[0]
            source = f"{container.format.name}/{stream.codec_context.name}"
            parts = []
            try:
                for packet in container.demux(stream):
                    if self.clock() > deadline:
                        raise ClipRefused(DECODE_LIMIT, f"decoding the clip took more than "
                                                        f"{self.limits.decode_timeout_s:g} s")
                    for frame in packet.decode():
                        parts += self._take(frame)
                parts += self._mono(self.resampler.resample(None))
            except ClipRefused:
                raise
            except Exception:  # noqa: BLE001 - a corrupt or truncated stream
                if not parts:
                    raise ClipRefused(NOT_AUDIO, f"the file ({source}) does not decode as audio") from None
                # A damaged tail: keep what decoded (FFmpeg players do the same).
            if not parts:
                raise ClipRefused(NOT_AUDIO, f"the file ({source}) holds no decodable audio")
        return np.concatenate(parts).astype(np.float32, copy=False), source

    def _take(self, frame) -> list[np.ndarray]:
        channels = len(frame.layout.channels)
        if channels > MAX_CHANNELS or frame.sample_rate not in SAMPLE_RATES:
            raise ClipRefused(DECODE_LIMIT, f"the clip has {channels} channels at {frame.sample_rate} Hz (at most "
                                            f"{MAX_CHANNELS} channels, {SAMPLE_RATES[0]} to {SAMPLE_RATES[-1]} Hz)")
        self.decoded_s += frame.samples / frame.sample_rate
        if self.decoded_s > self.limits.max_s:
            raise ClipRefused(TOO_LONG, f"the audio is longer than {self.limits.max_s:g} s ({self.max_setting})")
        frame.pts = None  # the resampler keeps its own time; a lying or broken timestamp cannot confuse it
        return self._mono(self.resampler.resample(frame))

    @staticmethod
    def _mono(frames) -> list[np.ndarray]:
        return [frame.to_ndarray().mean(axis=0) for frame in frames]


def sound_span(pcm: np.ndarray, silence_dbfs: float) -> tuple[int, int] | None:
    """Start and end (samples) of the part between the first and last 20 ms windows louder than
    `silence_dbfs` (RMS), or None when none is."""
    window = int(SAMPLE_RATE * WINDOW_S)
    count = pcm.shape[0] // window
    if count == 0:
        return None
    rms = np.sqrt(np.mean(np.square(pcm[:count * window].reshape(count, window), dtype=np.float64), axis=1))
    loud = np.flatnonzero(rms > 10 ** (silence_dbfs / 20))
    if loud.size == 0:
        return None
    return int(loud[0]) * window, (int(loud[-1]) + 1) * window


def decode_audio(data: bytes, max_s: float, decode_timeout_s: float, *, max_setting: str,
                 clock=time.monotonic) -> tuple[np.ndarray, str]:
    """Any uploaded audio by steps 1-3 of the module docstring (decoding stops past `max_s`, whose
    setting `max_setting` a refusal names): (24 kHz mono float32 in [-1, 1], "container/codec"),
    or ClipRefused. Speech to transcribe takes it as it is (silence included)."""
    limits = ClipLimits(min_s=0.0, max_s=max_s, decode_timeout_s=decode_timeout_s)
    pcm, source = _Decoder(limits, clock, max_setting).decode(data)
    return np.clip(np.nan_to_num(pcm, nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0), source


def decode_clip(data: bytes, limits: ClipLimits = ClipLimits(), clock=time.monotonic) -> Clip:
    """The prompt of an uploaded clip (module docstring), or ClipRefused (a 4xx APIError)."""
    pcm, source = decode_audio(data, limits.max_s, limits.decode_timeout_s, max_setting="voice_clip_max_s",
                               clock=clock)
    span = sound_span(pcm, limits.silence_dbfs)
    if span is None:
        raise ClipRefused(SILENT, f"the clip is silent (nothing above {limits.silence_dbfs:g} dBFS)")
    sound = pcm[span[0]:span[1]]
    sound_s = sound.shape[0] / SAMPLE_RATE
    if sound_s < limits.min_s:
        raise ClipRefused(TOO_SHORT, f"the clip holds {sound_s:.1f} s of sound (its quiet start and end cut); "
                                     f"at least {limits.min_s:g} s are needed (voice_clip_min_s)")
    return Clip(np.ascontiguousarray(sound[:int(limits.prompt_s * SAMPLE_RATE)]), sound_s, source)
