"""Request and response models of the service's own REST API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictStr, field_validator, model_validator

from deployments.protocol import CFG_COEFS

from ..audio.captions import FORMATS as CAPTION_FORMATS
from ..audio.formats import AudioFormatName
from ..audio.tempo import MAX_SPEED, MIN_SPEED


class TTSRequest(BaseModel):
    model_config = {"extra": "forbid"}

    text: StrictStr = Field(..., description="Text to speak. Supports <break time=\"0.5s\"/> pauses.",
                            examples=["Hello from the cluster."])
    model: StrictStr | None = Field(None, description="A model's name or id from GET /v1/models (default: the "
                                    "default model); an unknown one is a 400.")
    voice: StrictStr | None = Field(None, description="Voice id from GET /api/voices (default: the configured voice).")
    format: AudioFormatName = Field("wav", description="Audio format of the response.")
    cfg_coef: float | None = Field(None, description="Voice adherence, 1.0 to 4.0 in steps of 0.5 (default 2.0).")
    save: bool = Field(False, description="Also store the file under the outputs directory and return its URL.")
    stream: bool = Field(False, description="Send the audio while it is generated (chunked body); with timestamps "
                         "or captions: Server-Sent Events (audio, word, done). Not with save.")
    timestamps: bool = Field(False, description="Return JSON: the audio in base64 and words [{word, start_s, end_s}].")
    captions: Literal[tuple(CAPTION_FORMATS)] | None = Field(None, description="Also return WebVTT or SRT captions of the "
                                                   "words (in the JSON answer, or the final SSE event).")
    speed: float = Field(1.0, ge=MIN_SPEED, le=MAX_SPEED, description="Time-stretch factor (pitch kept): 2.0 speaks twice as fast.")

    @model_validator(mode="after")
    def _stream_not_saved(self):
        if self.stream and self.save:
            raise ValueError("save cannot be combined with stream: request the file without stream")
        return self

    @field_validator("cfg_coef")
    @classmethod
    def _cfg_step(cls, value):
        if value is not None and value not in CFG_COEFS:
            raise ValueError(f"must be one of {', '.join(f'{v:g}' for v in CFG_COEFS)}")
        return value


class OffloadRequest(BaseModel):
    model_config = {"extra": "forbid"}

    gpu: int | None = Field(None, ge=0, description="Only replicas on this GPU index.")
    replica: str | None = Field(None, max_length=128, description="Only this replica id.")
