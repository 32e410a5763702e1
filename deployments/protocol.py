"""What a synthesis request is, and the events it produces while it is generated.

Events travel from the GPU replica to the ingress through Ray, so they are small plain dataclasses.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 24_000
FRAME_SAMPLES = 1_920  # one model step: 80 ms at 24 kHz


@dataclass
class SynthesisRequest:
    text: str
    voice: str | None = None
    cfg_coef: float | None = None
    # True: `text` is only the start; more words come while it speaks (the WebSocket).
    stream_text: bool = False
    # A speaker embedding sent by the client instead of a named voice (flat list + its shape).
    voice_embedding: list[float] | None = None
    voice_shape: list[int] | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


@dataclass
class Word:
    word: str
    start_s: float
    end_s: float

    def to_dict(self) -> dict:
        return {"word": self.word, "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3)}

    def scaled(self, speed: float) -> "Word":
        """The same word in audio time-stretched by `speed` (2.0: twice as fast)."""
        return Word(self.word, self.start_s / speed, self.end_s / speed)


@dataclass
class AudioChunk:
    """PCM float32 in [-1, 1], mono, 24 kHz: one or more 80 ms frames."""
    pcm: np.ndarray


@dataclass
class WordSpoken:
    word: Word


@dataclass
class SynthesisDone:
    request_id: str
    voice: str
    duration_s: float
    words: list[Word]
    # Filled in by the worker: where it ran.
    served_by: dict = field(default_factory=dict)


@dataclass
class SynthesisFailed:
    message: str
    kind: str = "error"  # "invalid" (caller's fault), "unavailable" (model cannot load), "error"
    param: str | None = None  # with "invalid": the request field at fault


@dataclass
class TextFeedOpened:
    """First event of a `stream_text` request: where to send the rest of its words
    (`inbox.put.remote(session, text, end)`, see deployments/serve/text_inbox.py)."""
    inbox: object  # a Ray actor handle
    session: str


SynthesisEvent = TextFeedOpened | AudioChunk | WordSpoken | SynthesisDone | SynthesisFailed
