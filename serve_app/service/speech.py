"""Synthesis as the routes (REST, OpenAI, MCP, UI) use it: validated request in, audio out."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

import numpy as np

from deployments.protocol import VOICE_EMBEDDING_SHAPE, FailureKind, SynthesisDone, SynthesisRequest

from .. import audio
from ..context import IngressContext
from ..errors import APIError
from ..protocols.error_shape import Refusal
from ..request_ids import current_request_id
from . import openai_voices
from .voice_store import is_clip_id
from .worker_client import WorkerError

RETRY_AFTER_S = "5"


def speech_refusals(text_param: str, cfg: bool = True) -> dict[int, list[Refusal]]:
    """Every way a synthesis is refused (synthesis_request's checks, api_error_for), as the
    OpenAPI document of each speech route states it; `text_param` names its text field, `cfg`
    says whether the route takes a cfg_coef."""
    voice = [Refusal("invalid_voice", "A voice name this service refuses (`..`, an absolute path, odd "
                                      "characters, longer than 256).", "voice"),
             Refusal("unknown_voice", "A voice this service does not have: GET /api/voices lists them.", "voice"),
             Refusal("invalid_request", "The worker refused the voice (its files lack it).", "voice")]
    text = [Refusal("empty_text", f"{text_param} is empty or only whitespace.", text_param),
            Refusal("text_too_long", f"{text_param} is longer than max_text_chars.", text_param),
            Refusal("invalid_text", f"{text_param} is not Unicode text (a lone surrogate).", text_param),
            Refusal("invalid_request", "The worker refused it: only control characters, an unreadable or too "
                                       "long <break> tag, more than max_audio_s of audio.", text_param),
            *([Refusal("invalid_cfg", "cfg_coef is not a value the chosen model takes (each model has its "
                                      "own: the message lists them).", "cfg_coef")] if cfg else [])]
    return {400: voice, 422: text,
            500: [Refusal("generation_failed", "The worker failed while speaking (logged on the server).")],
            503: [Refusal("model_unavailable", "The model cannot be loaded now (the message says whether to "
                                               "retry or which setting to fix)."),
                  Refusal("overloaded", "Every worker and its queue is full; retry shortly."),
                  Refusal("worker_failed", "The worker serving it died or was replaced; retry."),
                  Refusal("worker_timeout", "No worker started it, or it went silent, for worker_timeout_s.")]}


def voice_header(voice: str) -> str:
    """A voice id as an HTTP header value: headers are Latin-1, voice ids may be any script."""
    return urllib.parse.quote(voice, safe="/@._- ")


def api_error_for(exc: WorkerError, text_param: str = "text") -> APIError:
    """The HTTP error of a worker's failure; the worker's `text` is the route's `text_param` (the
    OpenAI API calls it `input`)."""
    if exc.kind == FailureKind.INVALID:
        # Same statuses as the ingress's own checks: 400 for a voice, 422 for a malformed field.
        param = exc.param or "text"
        param = text_param if param == "text" else param
        return APIError(400 if param == "voice" else 422, exc.message, param=param, code="invalid_request")
    if exc.kind == FailureKind.UNAVAILABLE:
        return APIError(503, f"the TTS model is unavailable: {exc.message}", code="model_unavailable",
                        headers={"Retry-After": "30"})
    if exc.kind == FailureKind.TIMEOUT:
        return APIError(503, exc.message, code="worker_timeout", headers={"Retry-After": "30"})
    if exc.kind == FailureKind.CRASHED:
        return APIError(503, exc.message, code="worker_failed", headers={"Retry-After": RETRY_AFTER_S})
    if exc.kind == FailureKind.OVERLOADED:
        return APIError(503, exc.message, code="overloaded", headers={"Retry-After": RETRY_AFTER_S})
    # Only paced (streamed) answers expire, so only after their 200: an SSE error event says it
    # (not a status the operations document), a plain audio stream is cut.
    if exc.kind == FailureKind.EXPIRED:
        return APIError(503, exc.message, code="stream_expired", headers={"Retry-After": RETRY_AFTER_S})
    return APIError(500, exc.message, code="generation_failed")


@dataclass
class Speech:
    pcm: np.ndarray
    done: SynthesisDone

    @property
    def served_by(self) -> dict:
        return self.done.served_by

    def headers(self) -> dict:
        return {"X-TTS-GPU": str(self.served_by.get("gpu")), "X-TTS-Replica": str(self.served_by.get("replica")),
                "X-TTS-Node": str(self.served_by.get("node_id")),
                "X-TTS-Duration": f"{self.done.duration_s:.3f}", "X-TTS-Voice": voice_header(self.done.voice)}


def synthesis_request(ctx: IngressContext, text: str, voice: str | None = None, cfg_coef: float | None = None,
                      *, model: str | None = None, text_param: str = "text", openai_names: bool = False,
                      stream_text: bool = False, voice_embedding: list | None = None,
                      cfg_param: str = "cfg_coef") -> SynthesisRequest:
    """The worker request of every route, made here only: text then voice checked as the routes
    answer them (APIError 422 naming `text_param`, 400 for the voice; None is the default voice).
    `openai_names` also accepts OpenAI's voice names (the openai_voices setting); `stream_text`
    marks text that keeps coming while it speaks (the WebSocket); a client's speaker embedding
    (already validated) replaces the named voice. cfg_coef is checked against the chosen model's
    rule (422 naming `cfg_param`, with the values it takes; None: the model's default), and the
    worker checks its model's set again. `model` names the model (ctx.model_for: None is the
    default one; with `openai_names` any unknown name is the default one too, as OpenAI's clients
    send `tts-1`). An uploaded voice must have been fetched first (`ctx.fetch_voice`)."""
    if voice is not None and is_clip_id(voice.strip()) and (model is None or (openai_names and model not in ctx.models)):
        model = ctx.uploaded_voice(voice.strip()).model  # an uploaded voice speaks with its own model
    served = ctx.model_for(model, any_name=openai_names)
    text = ctx.check_text(text, param=text_param, limit=served.settings.max_text_chars)
    voice_id = (openai_voices.resolve_voice(ctx, voice, model=served) if openai_names and voice is not None
                else ctx.check_voice(voice, model=served))
    cfg_coef = served.check_cfg(cfg_coef, param=cfg_param)
    # The HTTP request's id (serve_app/request_ids.py) names it in the worker's log too.
    ids = {"request_id": current_request_id()} if current_request_id() else {}
    clip = ctx.voice_store.pcm(ctx.uploaded_voice(voice_id)) if is_clip_id(voice_id) else None
    return SynthesisRequest(text=text, voice=voice_id, cfg_coef=cfg_coef, stream_text=stream_text, voice_clip=clip,
                            voice_embedding=voice_embedding,
                            voice_shape=None if voice_embedding is None else list(VOICE_EMBEDDING_SHAPE),
                            model=served.name, **ids)


async def synthesize(ctx: IngressContext, text: str, voice: str | None = None,
                     cfg_coef: float | None = None, model: str | None = None) -> Speech:
    """Whole-clip synthesis; raises APIError with the right status for every failure."""
    await ctx.fetch_voice(voice)
    request = synthesis_request(ctx, text, voice, cfg_coef, model=model)
    try:
        pcm, done = await ctx.workers_for(request).synthesize(request)
    except WorkerError as exc:
        raise api_error_for(exc) from None
    return Speech(pcm, done)


def encode_and_maybe_save(ctx: IngressContext, speech: Speech, fmt: str, save: bool) -> tuple[bytes, str | None]:
    data = audio.encode(speech.pcm, fmt)
    name = ctx.outputs.save(data, audio.FORMATS[fmt].extension) if save else None
    return data, name
