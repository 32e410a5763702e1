"""What every route needs, built once per ingress replica and kept on `app.state.ctx`."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from fastapi import Request

from deployments.engine import loading
from deployments.engine.base import unicode_problem
from deployments.engine.voices import VoiceCatalog, VoiceError, validate_voice_name

from .service.cache import TTLCache
from .errors import APIError
from .service.outputs import OutputStore
from .service.voices import VoiceIndex
from .settings import AppSettings
from .service.cluster import ClusterView
from .service.worker_client import WorkerClient

log = logging.getLogger(__name__)


@dataclass
class IngressContext:
    settings: AppSettings
    workers: WorkerClient      # synthesis through the worker handle
    voices: VoiceCatalog
    outputs: OutputStore
    voice_index: VoiceIndex
    cluster: ClusterView       # status and offload, never through the handle
    # The full listing for /api/voices, /v1/audio/voices and MCP: read in a thread (a directory
    # walk, maybe the hub) at most every few seconds, one read shared by concurrent callers.
    voice_list: TTLCache = field(init=False, repr=False)

    VOICE_LIST_TTL_S = 5.0

    def __post_init__(self):
        self.voice_list = TTLCache(lambda: asyncio.to_thread(self.voices.list_voices), self.VOICE_LIST_TTL_S)

    @classmethod
    def create(cls, settings: AppSettings, worker_handle, app_name: str) -> "IngressContext":
        engine = settings.engine_settings()
        voices = VoiceCatalog(loading.local_voice_dirs(engine), loading.voice_repo(engine),
                              suffix=None, hub_timeout_s=settings.hub_timeout_s)
        return cls(settings, WorkerClient(worker_handle, app_name, settings.worker_timeout_s), voices,
                   OutputStore(settings.outputs_dir, settings.outputs_max_age_s,
                               settings.outputs_max_bytes), VoiceIndex(voices), ClusterView(app_name))

    def check_voice(self, voice: str | None, param: str = "voice") -> str:
        """The voice id to use; 400 for a refused or unknown name. When no voice is known here yet
        (hub unreachable and nothing cached, or the first listing still running) the worker has
        the last word. Never blocks: it reads the background-refreshed index."""
        if voice is None:
            return self.settings.default_voice
        try:
            voice_id = validate_voice_name(voice)
        except VoiceError as exc:
            raise APIError(400, str(exc), param=param, code="invalid_voice") from None
        known = self.voice_index.ids
        if known and voice_id not in known:
            raise APIError(400, f"unknown voice '{voice_id}': GET /api/voices lists the available voices",
                           param=param, code="unknown_voice")
        return voice_id

    def check_text(self, text: str, param: str = "text") -> str:
        """The text of a request as the ingress checks it before any worker is involved (422
        naming `param`); the worker checks more (control characters, <break> tags, audio length)."""
        problem = unicode_problem(text)
        if problem:
            raise APIError(422, f"{param} {problem}", param=param, code="invalid_text")
        if not text.strip():
            raise APIError(422, f"{param} must not be empty or only whitespace", param=param, code="empty_text")
        if len(text) > self.settings.max_text_chars:
            raise APIError(422, f"{param} is {len(text)} characters long; the limit is "
                           f"{self.settings.max_text_chars}", param=param, code="text_too_long")
        return text


def get_ctx(request: Request) -> IngressContext:
    return request.app.state.ctx
