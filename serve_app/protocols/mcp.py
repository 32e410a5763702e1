"""What the MCP tools return, published as their output schemas (wire shapes only)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from .rest import SpokenWord, Voice, VoiceList  # noqa: F401 - the MCP tools' output shapes too


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
