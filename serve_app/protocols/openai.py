"""OpenAI's speech API as this service speaks it: the request of `POST /v1/audio/speech`, the
model list's entries, usage, and OpenAI's voice names (mapped to Kyutai voices by the
`openai_voices` setting; serve_app/service/openai_voices.py resolves them). Wire shapes only."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, RootModel, StrictStr

from ..audio.formats import AudioFormatName
from ..audio.tempo import MAX_SPEED, MIN_SPEED
from .rest import ErrorEvent, VoiceName, voice_field
from .text import speech_text

# OpenAI name -> voice id in kyutai/tts-voices.
DEFAULT_OPENAI_VOICES: dict[str, str] = {
    "alloy": "unmute-prod-website/default_voice.wav",
    "ash": "voice-donations/Selfie.wav",
    "ballad": "unmute-prod-website/ex04_narration_longform_00001.wav",
    "coral": "alba-mackenna/casual.wav",
    "echo": "expresso/ex03-ex01_happy_001_channel1_334s.wav",
    "fable": "alba-mackenna/merchant.wav",
    "nova": "vctk/p225_023.wav",
    "onyx": "voice-donations/Butter.wav",
    "sage": "vctk/p244_023.wav",
    "shimmer": "expresso/ex04-ex02_confused_001_channel1_499s.wav",
    "verse": "ears/p010/freeform_speech_01.wav",
    "marin": "vctk/p262_023.wav",
    "cedar": "unmute-prod-website/developer-1.mp3",
}
OPENAI_VOICE_NAMES = tuple(DEFAULT_OPENAI_VOICES)
MODEL_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")


def default_openai_voices() -> dict[str, str]:
    return dict(DEFAULT_OPENAI_VOICES)




class VoiceRef(BaseModel):
    id: VoiceName


# OpenAI's published limit of `instructions` (CreateSpeechRequest).
MAX_INSTRUCTIONS_CHARS = 4096


class SpeechRequest(BaseModel):
    """OpenAI's CreateSpeechRequest, field for field (`model` and `voice` may be omitted here)."""
    # Unknown fields are ignored, as OpenAI-compatible servers do: clients add fields over time.
    model_config = {"extra": "ignore", "strict": True}  # strict: as serve_app/protocols/rest.py says

    # OpenAI's shape: a known name or any string.
    model: Literal[MODEL_ALIASES] | StrictStr = Field(
        "tts-1", description="A model's name or id from GET /v1/models; any other name (tts-1, tts-1-hd, "
                             "gpt-4o-mini-tts, ...) gets the default model.")
    input: StrictStr = speech_text("The text to speak.", "Hello from the cluster.")
    voice: Literal[OPENAI_VOICE_NAMES] | VoiceName | VoiceRef | None = voice_field(
        "An OpenAI voice name (alloy, echo, nova, ...) or a voice id from GET /v1/audio/voices; "
        "`{\"id\": ...}` as the newest SDKs send it.")
    response_format: AudioFormatName = Field(
        "mp3", description="pcm is raw signed 16-bit little-endian, 24 kHz, mono (no header).")
    speed: float = Field(1.0, ge=MIN_SPEED, le=MAX_SPEED,
                         description="Time-stretches the audio (pitch kept) by this factor.")
    instructions: StrictStr | None = Field(None, max_length=MAX_INSTRUCTIONS_CHARS,
                                           description="Accepted and ignored: the model has no instruction input.")
    stream_format: Literal["audio", "sse"] = Field(
        "audio", description="audio: chunked encoded audio; sse: speech.audio.delta / speech.audio.done events.")

    @property
    def voice_name(self) -> str | None:
        return self.voice.id if isinstance(self.voice, VoiceRef) else self.voice


def usage(text: str, frames: int) -> dict:
    words = len(text.split())
    return {"input_tokens": words, "output_tokens": frames, "total_tokens": words + frames}


def model_entry(model_id: str, kind: str = "tts-embedding-voices") -> dict:
    """One model as OpenAI lists it, with its kind (tts-embedding-voices, tts-audio-prompt, stt):
    a speech-to-text model answers on /api/asr-streaming, not on /v1/audio/speech."""
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "kyutai", "kind": kind}


SPEECH_EXAMPLES = {
    "mp3": {"summary": "MP3, as the OpenAI SDK asks by default", "value": {
        "model": "tts-1", "voice": "alloy", "input": "Hello from the cluster!"}},
    "sse": {"summary": "Server-Sent Events (speech.audio.delta, speech.audio.done)", "value": {
        "model": "gpt-4o-mini-tts", "voice": "alloy", "input": "Streaming, as it is spoken.",
        "response_format": "pcm", "stream_format": "sse"}},
}


# ---- responses (documentation), OpenAI's shapes ----------------------------------------------------
class Usage(BaseModel):
    input_tokens: int = Field(description="Words of the input.")
    output_tokens: int = Field(description="80 ms frames of audio.")
    total_tokens: int


class SpeechAudioDelta(BaseModel):
    type: Literal["speech.audio.delta"]
    audio: str = Field(description="The next piece of the audio, base64.")


class SpeechAudioDone(BaseModel):
    type: Literal["speech.audio.done"]
    usage: Usage


class SpeechEvent(RootModel[Annotated[SpeechAudioDelta | SpeechAudioDone | ErrorEvent,
                                      Field(discriminator="type")]]):
    """The `data` of one Server-Sent Event of POST /v1/audio/speech with stream_format sse
    (OpenAI's CreateSpeechResponseStreamEvent; `error` if the synthesis fails midway)."""


class Model(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    # Not OpenAI's (optional, so that a client made from this document reads OpenAI's lists too).
    kind: str = Field("tts-embedding-voices", description="tts-embedding-voices, tts-audio-prompt or stt "
                      "(speech to text: Kyutai's /api/asr-streaming socket serves it).")


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]


class OpenAIVoice(BaseModel):
    id: str = Field(description="The value to pass as `voice`.")
    name: str
    voice: str = Field(description="The Kyutai voice id it speaks with.")


class OpenAIVoiceList(BaseModel):
    voices: list[OpenAIVoice]


class OpenAIVoiceObject(BaseModel):
    """OpenAI's voice object (audio.voices.create's answer)."""
    id: str = Field(description="The value to pass as `voice`.")
    object: Literal["audio.voice"] = "audio.voice"
    created_at: int
    name: str
    type: Literal["audio_sample"] = "audio_sample"
