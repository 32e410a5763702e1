"""What crosses a worker handle: requests, the events they produce, the ways they fail, and the
contract values both sides of the service read (the ingress imports this module without torch).

Events travel from the GPU replica to the ingress through Ray, so they are small plain dataclasses.
"""

from __future__ import annotations

import enum
import hashlib
import re
import uuid
from dataclasses import dataclass, field

import numpy as np

# ---- contract values: one home each ---------------------------------------------------------------
SAMPLE_RATE = 24_000
FRAME_SAMPLES = 1_920  # one model step: 80 ms at 24 kHz
FRAME_RATE = SAMPLE_RATE / FRAME_SAMPLES  # 12.5 model steps per second of audio
PCM_BYTES = 4  # a sample as AudioChunk carries it (float32)

# A speaker embedding of Kyutai's 1.6B TTS (a `kyutai/tts-voices` file, or a WebSocket `Voice`
# message): float32 [1, dim, frames].
VOICE_EMBEDDING_SHAPE = (1, 512, 125)
VOICE_EMBEDDING_SIZE = VOICE_EMBEDDING_SHAPE[1] * VOICE_EMBEDDING_SHAPE[2]

# The cfg coefficients the CFG-distilled 1.6B model was trained on (a conditioning input, not a
# free float): 1.0 to 4.0 in steps of 0.5.
CFG_MIN, CFG_MAX, CFG_STEP = 1.0, 4.0, 0.5
CFG_COEFS = tuple(CFG_MIN + CFG_STEP * i for i in range(int((CFG_MAX - CFG_MIN) / CFG_STEP) + 1))

# The cfg coefficient of a model with real classifier-free guidance (kyutai/tts-0.75b-en-public:
# a null-conditioned pass beside each row, logits pushed away from it by the coefficient): any
# float, bounded here. 1.0 is no guidance (the null pass is skipped); below 1 the guidance turns
# against the text, so it is refused. 5.0 is past anything Kyutai ships (its scripts default to
# 2.0; the 1.6B was distilled on 1 to 4): higher values push the logits so far from the model's
# distribution that the audio breaks up, so they are refused as a client's mistake rather than
# spoken as noise. Unlike the 1.6B's set, no step: the coefficient is arithmetic, not a lookup.
REAL_CFG_MIN, REAL_CFG_MAX = 1.0, 5.0


@dataclass(frozen=True)
class CfgRule:
    """The cfg coefficients one model takes: a set (`values`, a CFG-distilled model's conditioning
    input) or any number from `low` to `high` (real guidance). What the ingress checks a request's
    cfg_coef against and states in its documents; the worker checks its model's own set again."""
    low: float
    high: float
    values: tuple[float, ...] | None = None  # None: any number in [low, high]

    @classmethod
    def one_of(cls, values: tuple[float, ...]) -> "CfgRule":
        return cls(min(values), max(values), tuple(sorted(values)))

    def allows(self, value: float) -> bool:
        if self.values is not None:
            return value in self.values
        return self.low <= value <= self.high

    def describe(self) -> str:
        if self.values is not None:
            return "one of " + ", ".join(f"{v:g}" for v in self.values)
        return f"a number from {self.low:g} to {self.high:g}"

    def step(self) -> float | None:
        """The spacing of `values` when they are evenly spaced multiples of it (0.5 for the 1.6B's
        set): JSON Schema's multipleOf can state them; None otherwise."""
        if self.values is None or len(self.values) < 2:
            return None
        step = self.values[1] - self.values[0]
        even = all(abs(b - a - step) < 1e-9 for a, b in zip(self.values, self.values[1:]))
        return step if even and abs(self.low / step - round(self.low / step)) < 1e-9 else None

    def json_schema(self) -> dict:
        """This rule as JSON Schema keywords of a number."""
        if self.values is not None and self.step() is None:
            return {"enum": list(self.values)}
        schema = {"minimum": self.low, "maximum": self.high}
        return {**schema, "multipleOf": self.step()} if self.step() is not None else schema


DISTILLED_CFG = CfgRule.one_of(CFG_COEFS)
REAL_CFG = CfgRule(REAL_CFG_MIN, REAL_CFG_MAX)

# Models of an app (the `models` table of its args) are named by short ids; an app without a table
# has one model, named DEFAULT_MODEL_NAME. Each model has a worker deployment of its own: the
# default model's keeps the name operators, dashboards and manifests know (WORKER_DEPLOYMENT), each
# other model's is WORKER_DEPLOYMENT + "_" + its name (`worker_deployment`).
DEFAULT_MODEL_NAME = "default"
MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
WORKER_DEPLOYMENT = "TTSWorker"


def worker_deployment(model: str, default_model: str) -> str:
    """The worker deployment that serves `model` in an app whose default model is `default_model`."""
    return WORKER_DEPLOYMENT if model == default_model else f"{WORKER_DEPLOYMENT}_{model}"


# Rows of a replica's streaming batch when no config says otherwise (user_config max_batch_size;
# the worker's max_ongoing_requests follows it, see deployments/routing.py).
DEFAULT_SLOTS = 8


class FailureKind(str, enum.Enum):
    """Why a request failed, as every layer names it (metrics tag requests with the value)."""
    INVALID = "invalid"          # the caller's fault; `param` names the field
    UNAVAILABLE = "unavailable"  # the model cannot be loaded now
    ERROR = "error"              # a bug or a device error on the worker
    TIMEOUT = "timeout"          # the worker sent nothing for the ingress's worker_timeout_s
    CRASHED = "crashed"          # the replica died or was replaced under the request
    OVERLOADED = "overloaded"    # every replica and queue is full (Serve's back-pressure)
    EXPIRED = "expired"          # a stream fell too far behind its real-time playback (pacing)

    def __str__(self) -> str:
        return self.value


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
    # The app's model it was routed to (its name in the model table); the worker serves one model.
    model: str | None = None
    # Set for a streamed response: seconds of audio its client plays per second (its `speed`); the
    # row is paced to it (deployments/engine/pacing.py). None: a whole clip, made as fast as it can.
    playback_rate: float | None = None
    # An uploaded voice of a cloning model (`voice` is then its `clip:` id): its prompt, float32
    # mono PCM at SAMPLE_RATE, validated by the ingress. It travels with the request (no shared
    # filesystem); the worker caches its prompt state by `clip_prompt_key`.
    voice_clip: np.ndarray | None = None


def clip_prompt_key(pcm: np.ndarray) -> str:
    """The cache key of an uploaded clip's prompt on a worker: its PCM's content (the ingress
    computes the same key to drop it from every replica when the voice is deleted)."""
    data = np.ascontiguousarray(pcm, dtype=np.float32).tobytes()
    return "pcm:" + hashlib.sha256(data).hexdigest()[:24]


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
    kind: FailureKind = FailureKind.ERROR
    param: str | None = None  # with INVALID: the request field at fault


@dataclass
class InputFeedOpened:
    """First event of a streamed request (`stream_text` words, `stream_audio` audio): where to send
    the rest of its input (`inbox.put.remote(session, item, end)`, deployments/serve/text_inbox.py)."""
    inbox: object  # a Ray actor handle
    session: str


TextFeedOpened = InputFeedOpened  # its name before audio streams used it too


SynthesisEvent = InputFeedOpened | AudioChunk | WordSpoken | SynthesisDone | SynthesisFailed


# ---- audio in / text out (speech to text) ---------------------------------------------------------
# The contract of the STT engines (deployments/engine/stt.py, the fake in deployments/engine/fakes.py)
# and of the worker's `transcribe_stream`.

@dataclass
class TranscriptionRequest:
    """Speech to transcribe: float32 PCM in [-1, 1], mono, SAMPLE_RATE. Sent whole in `audio`, or,
    with `stream_audio`, started (maybe empty) and continued while it is transcribed."""
    audio: np.ndarray | None = None
    stream_audio: bool = False
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    # The app's model it was routed to (its name in the model table); the worker serves one model.
    model: str | None = None


@dataclass
class WordHeard:
    """A word of the transcript, sent once its end is known (times in the input audio)."""
    word: Word


@dataclass
class PauseHeard:
    """After each model step of a stream, from a model with voice-activity heads: the probability
    that the speaker has paused, one per head (Kyutai's 1B: horizons 0.5, 1, 2 and 3 s)."""
    step: int                # the stream's model steps so far (silence prefix and flush included)
    pause_prs: list[float]
    buffered_samples: int = 0  # the stream's audio received and not yet heard, after this step


@dataclass
class Listening:
    """A streamed transcription holds a row: from now on each frame sent is heard at the next step
    (Kyutai's ASR socket answers `Ready` then)."""


@dataclass
class WordBegun:
    """A word of the transcript whose text is complete and whose start is known; its end comes
    with its WordHeard (Kyutai's `Word`, then `EndWord`)."""
    text: str
    start_s: float


@dataclass
class StreamMarker:
    """A client's marker. As input (after audio, through the inbox) it marks a point of the stream;
    as an event it says that every frame before that point has been heard, the model's delay
    included (Kyutai's `Marker`)."""
    marker_id: int


@dataclass
class TranscriptionDone:
    request_id: str
    duration_s: float  # the audio transcribed
    words: list[Word]
    # Filled in by the worker: where it ran.
    served_by: dict = field(default_factory=dict)


# One failure event for every kind: nothing in it is about synthesis (message, FailureKind, param).
RequestFailed = SynthesisFailed

TranscriptionEvent = (InputFeedOpened | Listening | WordBegun | WordHeard | PauseHeard | StreamMarker
                      | TranscriptionDone | RequestFailed)
