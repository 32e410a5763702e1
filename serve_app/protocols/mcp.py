"""What the MCP tools return, published as their output schemas (wire shapes only)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SpokenWord(BaseModel):
    word: str
    start_s: float = Field(description="When the word starts in the audio, in seconds.")
    end_s: float = Field(description="When the word ends in the audio, in seconds.")


class SpeechResult(BaseModel):
    url: str | None = Field(description=(
        "Where the same audio file can be downloaded (HTTP GET); null when called with save=false."))
    format: str = Field(description="Audio format of the file.")
    mime_type: str = Field(description="MIME type of the audio content.")
    sample_rate: int = Field(description="Samples per second (the audio is mono).")
    duration_s: float = Field(description="Length of the audio in seconds.")
    voice: str = Field(description="The voice id that was used.")
    gpu: int | None = Field(description="GPU index of the replica that generated it (None on CPU).")
    replica: str | None = Field(description="The TTSWorker replica that generated it.")
    words: list[SpokenWord] = Field(description="Word timestamps.")


class Voice(BaseModel):
    id: str = Field(description="The value to pass as `voice` to text_to_speech.")
    group: str | None = Field(description="Collection the voice comes from (e.g. expresso, vctk).")
    language: str | None = Field(description="Language code when known (e.g. en, fr).")
    source: str = Field(description="'local' (a directory of the service) or 'repo' (the voice repository).")


class VoiceList(BaseModel):
    default: str = Field(description="The voice used when text_to_speech gets no voice.")
    voices: list[Voice]
    model: str = Field(description="The model these voices are for (its name).")
    models: list[str] = Field(description="Every model of the service, the default one first: a value for "
                                          "text_to_speech's `model`.")
