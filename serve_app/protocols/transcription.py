"""OpenAI's transcription API as this service speaks it (`POST /v1/audio/transcriptions`): the
response formats, the bodies of json and verbose_json, the Server-Sent Events of `stream: true`,
and the MCP tool's result. Wire shapes only; serve_app/service/transcription.py fills them.

Segments (verbose_json, srt, vtt) are the caption cues of serve_app/audio/captions.py: words
grouped at sentence ends, at pauses and every few seconds. Kyutai's model gives no per-segment
log-probabilities or compression ratios: those fields hold neutral values (0, 1, 0), as OpenAI
clients expect them present."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, RootModel

from ..audio.captions import cues
from .rest import ErrorEvent

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
RESPONSE_FORMATS: tuple[str, ...] = ResponseFormat.__args__
TEXT_MEDIA_TYPES = {"text": "text/plain; charset=utf-8", "srt": "application/x-subrip; charset=utf-8",
                    "vtt": "text/vtt; charset=utf-8"}
Granularity = Literal["word", "segment"]
# OpenAI's transcription models: any of them (like any unknown name) gets the app's first
# speech-to-text model.
STT_MODEL_ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
# OpenAI's `language` is ISO-639-1; verbose_json answers the language's name in English.
LANGUAGE_NAMES = {"en": "english", "fr": "french"}


class TranscriptionWord(BaseModel):
    word: str
    start: float = Field(description="Seconds from the start of the file.")
    end: float


class TranscriptionSegment(BaseModel):
    id: int
    seek: int = Field(0, description="Always 0: the file is heard as one stream.")
    start: float
    end: float
    text: str
    tokens: list[int] = Field(default_factory=list, description="Empty: the text tokens stay on the worker.")
    temperature: float = Field(0.0, description="Always 0: the model decodes greedily.")
    avg_logprob: float = Field(0.0, description="Not measured (0).")
    compression_ratio: float = Field(1.0, description="Not measured (1).")
    no_speech_prob: float = Field(0.0, description="Not measured (0).")


class TranscriptionUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float = Field(description="Seconds of audio transcribed.")


class Transcription(BaseModel):
    """response_format json."""
    text: str
    usage: TranscriptionUsage


class TranscriptionVerbose(BaseModel):
    """response_format verbose_json: `words` with timestamp_granularities[] word, `segments`
    unless only words were asked for."""
    task: Literal["transcribe"] = "transcribe"
    language: str = Field(description="The language asked for (its English name), else the model's first.")
    duration: float = Field(description="Seconds of audio.")
    text: str
    words: list[TranscriptionWord] | None = None
    segments: list[TranscriptionSegment] | None = None
    usage: TranscriptionUsage


class TextDelta(BaseModel):
    type: Literal["transcript.text.delta"]
    delta: str = Field(description="The next word, with the space before it.")


class TextDone(BaseModel):
    type: Literal["transcript.text.done"]
    text: str
    usage: TranscriptionUsage


class TranscriptionEvent(RootModel[Annotated[TextDelta | TextDone | ErrorEvent, Field(discriminator="type")]]):
    """The `data` of one Server-Sent Event of POST /v1/audio/transcriptions with stream true
    (OpenAI's TranscriptionTextDeltaEvent / TranscriptionTextDoneEvent; `error` if it fails midway)."""


class HeardWord(BaseModel):
    word: str
    start_s: float
    end_s: float


class SpeechToTextResult(BaseModel):
    """What MCP's speech_to_text returns."""
    text: str
    duration_s: float = Field(description="Seconds of audio heard.")
    model: str = Field(description="The speech-to-text model that heard it.")
    words: list[HeardWord] = Field(description="Each word with its start and end in the audio (seconds).")


def joined(words: list[str]) -> str:
    return " ".join(words)


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code)


def segments(words) -> list[dict]:
    """verbose_json's segments: the caption cues of `words` (Word objects or dicts)."""
    return [TranscriptionSegment(id=index, start=round(cue.start_s, 3), end=round(cue.end_s, 3),
                                 text=cue.text).model_dump()
            for index, cue in enumerate(cues(words))]


def usage(duration_s: float) -> dict:
    return {"type": "duration", "seconds": round(duration_s, 3)}
