"""Voices made from uploaded clips, as every surface (REST, OpenAI, MCP) creates, lists and deletes
them: the rules (uploads need API keys unless anonymous uploads are allowed; a voice belongs to a
cloning model), the clip's validation (serve_app/audio/clips.py, in a thread) and, on delete, its
cached prompt dropped on every replica of its model (the registry's commands: cluster.forget_clip)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from deployments.engine.models import ModelKind
from deployments.protocol import clip_prompt_key

from ..audio.clips import ClipLimits, decode_clip
from ..errors import APIError
from ..protocols.error_shape import Refusal
from .voice_store import NOT_FOUND, StoredVoice

if TYPE_CHECKING:
    from ..context import IngressContext
    from ..settings import AppSettings
    from .served_models import ServedModel

log = logging.getLogger(__name__)

UPLOADS_OFF = Refusal("uploads_disabled", "Voice uploads need API keys (each key owns its voices), or the "
                                          "allow_anonymous_uploads setting.")
NO_CLONING_MODEL = Refusal("no_cloning_model", "No model of this service speaks from voice clips.", "model")
MAX_NAME_CHARS = 100
MAX_CONSENT_CHARS = 200


def uploads_allowed(settings: AppSettings) -> bool:
    """Whether this service takes voice uploads at all (the listing tells the page up front)."""
    return bool(settings.api_keys) or settings.allow_anonymous_uploads


def check_uploads_allowed(ctx: IngressContext) -> None:
    if not uploads_allowed(ctx.settings):
        raise APIError(403, "voice uploads are off: this service has no API keys (set api_keys, or "
                            "allow_anonymous_uploads to let anyone upload)", code=UPLOADS_OFF.code)


def cloning_model(ctx: IngressContext, name: str | None) -> ServedModel:
    """The model an uploaded voice is for: the one named (it must speak from clips), else the
    app's first cloning model."""
    if name is not None:
        served = ctx.model_for(name)
        if served.spec.kind is not ModelKind.TTS_AUDIO_PROMPT:
            raise APIError(400, f"model '{served.name}' does not speak from voice clips", param="model",
                           code="wrong_model_kind")
        return served
    served = next((m for m in ctx.models.values() if m.spec.kind is ModelKind.TTS_AUDIO_PROMPT), None)
    if served is None:
        raise APIError(400, "no model of this service speaks from voice clips", param="model",
                       code=NO_CLONING_MODEL.code)
    return served


def _text_field(value: str | None, param: str, limit: int) -> str:
    value = (value or "").strip()
    if not value or len(value) > limit:
        raise APIError(422, f"{param} must hold 1 to {limit} characters", param=param, code=f"invalid_{param}")
    return value


async def create_voice(ctx: IngressContext, data: bytes, name: str | None, consent: str | None,
                       model: str | None = None) -> tuple[StoredVoice, bool]:
    """A voice of the caller from an uploaded clip: (record, created). 403 when uploads are off or
    a quota is reached; 4xx for a bad clip (clips.py), name, consent or model."""
    check_uploads_allowed(ctx)
    name = _text_field(name, "name", MAX_NAME_CHARS)
    consent = _text_field(consent, "consent", MAX_CONSENT_CHARS)
    served = cloning_model(ctx, model)
    clip = await asyncio.to_thread(decode_clip, data, ClipLimits.from_settings(ctx.settings))
    record, created = await ctx.voice_store.add(ctx.owner, name, served.name, consent, clip.pcm)
    if created:
        log.info("voice %s uploaded for model %s (%.1f s, %s)", record.id, served.name, record.duration_s, clip.source)
    return record, created


async def delete_voice(ctx: IngressContext, voice_id: str) -> StoredVoice:
    """Deletes the caller's voice (404 when the caller has none of that id, another key's included)
    and drops its cached prompt on every running replica of its model."""
    owner = ctx.owner
    record = await ctx.voice_store.fetch(owner, voice_id)
    if record is None:
        raise APIError(404, f"you have no voice '{voice_id[:100]}'", param=NOT_FOUND.param, code=NOT_FOUND.code)
    key = clip_prompt_key(ctx.voice_store.pcm(record))
    await ctx.voice_store.delete(owner, voice_id)
    served = ctx.models.get(record.model)
    if served is not None:
        try:
            result = await ctx.cluster.forget_clip(served.deployment, key)
            log.info("voice %s deleted; its prompt dropped on %s replica(s)", voice_id, result.get("requested"))
        except Exception as exc:  # noqa: BLE001 - the voice is gone; a cached prompt only costs memory
            log.warning("voice %s deleted; dropping its cached prompt failed: %s", voice_id, exc)
    return record


async def listed(ctx: IngressContext, model: str | None = None) -> list[dict]:
    """The caller's uploaded voices (of `model` only, when named), as listings show them."""
    if ctx.voice_store is None:
        return []
    return [r.public() for r in await ctx.voice_store.list(ctx.owner) if model is None or r.model == model]
