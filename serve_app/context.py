"""What every route needs, built once per ingress replica and kept on `app.state.ctx`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import Request

from deployments.engine.base import unicode_problem
from deployments.engine.voices import VoiceError, validate_voice_name

from .errors import APIError
from .service.outputs import OutputStore
from .service.voice_store import PREFIX as CLIP_PREFIX
from .service.shared_voices import VoiceStoreClient
from .service.voice_store import StoredVoice, is_clip_id, owner_of
from .service.voices import ModelVoices
from .security.api_keys import current_key
from .settings import AppSettings
from .service.cluster import ClusterView
from .service.served_models import ServedModel, served_models
from .service.worker_client import WorkerClient

log = logging.getLogger(__name__)


@dataclass
class IngressContext:
    settings: AppSettings
    outputs: OutputStore
    cluster: ClusterView       # status and offload, never through the handle
    # Every model of the app by name (the default one included): serve_app/service/served_models.py.
    models: dict[str, ServedModel]
    # Uploaded voices of the cloning models: the application's one store (serve_app/service/shared_voices.py).
    voice_store: VoiceStoreClient | None = None

    @classmethod
    def create(cls, settings: AppSettings, worker_handles: dict, app_name: str,
               shared_store: bool = False) -> "IngressContext":
        """`shared_store`: the voice store is the application's actor (every ingress replica under
        Serve); else a store in this process (tests without Ray)."""
        models = served_models(settings, worker_handles, app_name)
        if settings.allow_anonymous_uploads and not settings.api_keys:
            log.warning("!!! allow_anonymous_uploads is on and no API key is set: ANYONE who reaches this "
                        "service can upload voice clips, and every client sees and deletes the same voices !!!")
        quotas = (settings.voice_store_dir, settings.voice_store_max_voices_per_key, settings.voice_store_max_bytes)
        store = VoiceStoreClient.shared(app_name, *quotas) if shared_store else VoiceStoreClient.local(*quotas)
        return cls(settings, OutputStore(settings.outputs_dir, settings.outputs_max_age_s, settings.outputs_max_bytes),
                   ClusterView(app_name, [m.deployment for m in models.values()]), models, store)

    @property
    def owner(self) -> str:
        """Who the request being served is, as the voice store knows owners (its key's hash)."""
        return owner_of(current_key())

    async def fetch_voice(self, voice: str | None) -> None:
        """Asks the voice store for `voice` when it is an uploaded one (the caller's), before the
        request's sync checks (`uploaded_voice`, speech.synthesis_request) read the answer."""
        if self.voice_store is not None and voice is not None:
            await self.voice_store.fetch(self.owner, voice)

    def uploaded_voice(self, voice_id: str, param: str = "voice") -> StoredVoice:
        """The caller's uploaded voice `voice_id` as the store answered the request's
        `voice_store.fetch`; 400 unknown_voice when the caller has none of that id (another key's
        voice is unknown too: ids leak nothing)."""
        record = self.voice_store.get(self.owner, voice_id) if self.voice_store else None
        if record is None:
            raise APIError(400, f"unknown voice '{voice_id[:100]}': you have no uploaded voice of that id "
                                "(GET /api/voices lists yours)", param=param, code="unknown_voice")
        return record

    @property
    def default_model(self) -> ServedModel:
        """The model a request gets when it names none."""
        return self.models[self.settings.default_model_name]

    @property
    def workers(self) -> WorkerClient:
        """The default model's worker client."""
        return self.default_model.workers

    @property
    def voices(self) -> ModelVoices:
        """The default model's voices: its catalog, the index requests are checked against, and
        the listing of /v1/audio/voices (read at most every few seconds, one read shared)."""
        return self.default_model.voices

    def model_for(self, name: str | None, param: str = "model", any_name: bool = False,
                  speaks: bool = True) -> ServedModel:
        """The model a request names: None -> the default one; a name of the table, or a model's
        id (its repo, or local/<folder>) -> that one. Any other name is a 400, unless `any_name`
        (OpenAI's API, whose clients send `tts-1` and the like): then it is the default model.
        A model of the wrong kind (`speaks`: a text-to-speech model is wanted) is a 400 too."""
        default = self.default_model
        found = self.models.get(name) if name is not None else default
        found = found or next((m for m in self.models.values() if m.public_id == name), None)
        if found is None and not any_name:
            raise APIError(400, f"unknown model {name[:100]!r}: GET /v1/models lists the models of this service",
                           param=param, code="unknown_model")
        found = found or default
        if found.speaks != speaks:
            what = "a text-to-speech" if found.speaks else "a speech-to-text"
            raise APIError(400, f"model '{found.name}' is {what} model: it cannot serve this request",
                           param=param, code="wrong_model_kind")
        return found

    def check_voice(self, voice: str | None, param: str = "voice", model: ServedModel | None = None) -> str:
        """The voice id to use with `model` (None: the default model); 400 for a refused name or
        one the model does not have. When no voice is known here yet (hub unreachable and nothing
        cached, or the first listing still running) the worker has the last word. Never blocks: it
        reads the background-refreshed index."""
        voices = (model or self.default_model).voices
        if voice is None:
            return voices.default_voice
        if is_clip_id(voice.strip()):
            record = self.uploaded_voice(voice.strip(), param)
            served = model or self.default_model
            if record.model != served.name:
                raise APIError(400, f"voice '{record.id}' is a voice of model '{record.model}', not of "
                                    f"'{served.name}'", param=param, code="unknown_voice")
            return record.id
        try:
            voice_id = validate_voice_name(voice)
        except VoiceError as exc:
            raise APIError(400, str(exc), param=param, code="invalid_voice") from None
        known = voices.index.ids
        if known and voice_id not in known:
            where = "" if model is None or len(self.models) == 1 else f" of model '{model.name}'"
            raise APIError(400, f"unknown voice '{voice_id}'{where}: GET /api/voices lists the available voices",
                           param=param, code="unknown_voice")
        return voice_id

    def workers_for(self, request) -> WorkerClient:
        """The worker client of the model a request was made for (speech.synthesis_request)."""
        model = getattr(request, "model", None)
        return self.models[model].workers if model in self.models else self.workers

    def check_text(self, text: str, param: str = "text", limit: int | None = None) -> str:
        """The text of a request as the ingress checks it before any worker is involved (422
        naming `param`): valid Unicode, not empty, at most `limit` characters (a model's
        max_text_chars; None: the app's). The worker checks more (control characters, <break>
        tags, audio length)."""
        limit = self.settings.max_text_chars if limit is None else limit
        problem = unicode_problem(text)
        if problem:
            raise APIError(422, f"{param} {problem}", param=param, code="invalid_text")
        if not text.strip():
            raise APIError(422, f"{param} must not be empty or only whitespace", param=param, code="empty_text")
        if len(text) > limit:
            raise APIError(422, f"{param} is {len(text)} characters long; the limit is {limit}", param=param,
                           code="text_too_long")
        return text


def get_ctx(request: Request) -> IngressContext:
    return request.app.state.ctx
