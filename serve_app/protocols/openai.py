"""OpenAI's speech API as this service speaks it: the request of `POST /v1/audio/speech`, the
model list's entries, usage, and OpenAI's voice names (mapped to Kyutai voices by the
`openai_voices` setting; serve_app/service/openai_voices.py resolves them). Wire shapes only."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictStr

from ..audio.formats import AudioFormatName
from ..audio.tempo import MAX_SPEED, MIN_SPEED

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


def default_openai_voices() -> dict[str, str]:
    return dict(DEFAULT_OPENAI_VOICES)


MODEL_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")


class VoiceRef(BaseModel):
    id: StrictStr


class SpeechRequest(BaseModel):
    # Unknown fields are ignored, as OpenAI-compatible servers do: clients add fields over time.
    model_config = {"extra": "ignore"}

    model: StrictStr = Field("tts-1", description="A model's name or id from GET /v1/models; any other name "
                             "(tts-1, tts-1-hd, gpt-4o-mini-tts, ...) gets the default model.")
    input: StrictStr = Field(..., description="The text to speak.", examples=["Hello from the cluster."])
    voice: StrictStr | VoiceRef | None = Field(
        None, description="An OpenAI voice name (alloy, echo, nova, ...) or a voice id from GET /v1/audio/voices.")
    response_format: AudioFormatName = Field(
        "mp3", description="pcm is raw signed 16-bit little-endian, 24 kHz, mono (no header).")
    speed: float = Field(1.0, ge=MIN_SPEED, le=MAX_SPEED,
                         description="Time-stretches the audio (pitch kept) by this factor.")
    instructions: StrictStr | None = Field(None, description="Accepted and ignored: the model has no instruction input.")
    stream_format: Literal["audio", "sse"] = Field(
        "audio", description="audio: chunked encoded audio; sse: speech.audio.delta / speech.audio.done events.")

    @property
    def voice_name(self) -> str | None:
        return self.voice.id if isinstance(self.voice, VoiceRef) else self.voice


def usage(text: str, frames: int) -> dict:
    words = len(text.split())
    return {"input_tokens": words, "output_tokens": frames, "total_tokens": words + frames}


def model_entry(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "kyutai"}
