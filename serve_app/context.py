"""What every route needs, built once per ingress replica and kept on `app.state.ctx`."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from deployments import loading
from deployments.voices import VoiceCatalog, VoiceError, validate_voice_name

from .errors import APIError
from .outputs import OutputStore
from .settings import AppSettings
from .workers import WorkerClient


@dataclass
class IngressContext:
    settings: AppSettings
    workers: WorkerClient
    voices: VoiceCatalog
    outputs: OutputStore

    @classmethod
    def create(cls, settings: AppSettings, worker_handle, app_name: str) -> "IngressContext":
        engine = settings.engine_settings()
        voices = VoiceCatalog(loading.local_voice_dirs(engine), loading.voice_repo(engine),
                              suffix=None, hub_timeout_s=settings.hub_timeout_s)
        return cls(settings, WorkerClient(worker_handle, app_name), voices, OutputStore(settings.outputs_dir, settings.outputs_max_age_s))

    def check_voice(self, voice: str | None, param: str = "voice") -> str:
        """The voice id to use; 400 for a refused or unknown name. When the voice list cannot be
        known here (hub unreachable, nothing cached) the worker has the last word."""
        if voice is None:
            return self.settings.default_voice
        try:
            voice_id = validate_voice_name(voice)
        except VoiceError as exc:
            raise APIError(400, str(exc), param=param, code="invalid_voice") from None
        known = {v.id for v in self.voices.list_voices()}
        if known and voice_id not in known:
            raise APIError(400, f"unknown voice '{voice_id}': GET /api/voices lists the available voices",
                           param=param, code="unknown_voice")
        return voice_id

    def check_text(self, text: str, param: str = "text") -> str:
        if not text.strip():
            raise APIError(422, f"{param} must not be empty or only whitespace", param=param, code="empty_text")
        if len(text) > self.settings.max_text_chars:
            raise APIError(422, f"{param} is {len(text)} characters long; the limit is "
                           f"{self.settings.max_text_chars}", param=param, code="text_too_long")
        return text


def get_ctx(request: Request) -> IngressContext:
    return request.app.state.ctx
