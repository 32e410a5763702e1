"""OpenAI-compatible speech API: `POST /v1/audio/speech`, `GET /v1/audio/voices`, `GET /v1/models`.

Clients written for OpenAI (the official SDKs, Open WebUI, LiveKit, ...) work unchanged. What the
fields do here:

- `model`: any name is accepted; there is one model (Kyutai TTS).
- `voice`: an OpenAI name (alloy, ash, ballad, coral, echo, fable, nova, onyx, sage, shimmer, verse,
  marin, cedar) mapped by the `openai_voices` setting, or a Kyutai voice id from `GET /api/voices`;
  `{"id": ...}` objects are accepted too. A name mapped to a voice this server lacks is a 400.
- `response_format`: mp3 (default), opus (Ogg), aac (ADTS), flac, wav, or pcm = raw signed 16-bit
  little-endian, 24 kHz, mono, without any header.
- `speed` (0.25-4.0): honoured by time-stretching the generated audio without changing its pitch
  (FFmpeg's `atempo`); the model itself always speaks at its natural pace.
- `instructions`: accepted and ignored: Kyutai's model has no instruction input (its voice comes from
  the voice sample). The response carries `X-TTS-Instructions: ignored` when some were given.
- `stream_format`: `audio` (default) sends the encoded audio as a chunked body while it is
  generated; `sse` sends `data: {"type": "speech.audio.delta", "audio": <base64>}` events, then
  `data: {"type": "speech.audio.done", "usage": {...}}`. Usage counts input words as input tokens
  and 80 ms audio frames as output tokens (the model's own token counts stay on the GPU).

Every response streams: the first audio leaves the service as soon as the model produced it.
Errors use OpenAI's shape `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Body, Depends, File, Form, Path, UploadFile

from .. import audio
from ..protocols.error_shape import error_responses
from ..protocols.openai import (MODEL_ALIASES, SPEECH_EXAMPLES, Model, ModelList, OpenAIVoiceList, SpeechEvent,
                                OpenAIVoiceObject, SpeechRequest, model_entry, usage)
from ..security import upload
from ..service import openai_voices, voice_uploads
from .voices import CREATE_REFUSALS, DELETE_REFUSALS
from ..service.speech import speech_refusals, synthesis_request, voice_header
from ..context import IngressContext, get_ctx
from ..protocols.sse import SSE_MEDIA_TYPE, event_stream
from ..service.streaming import STREAM_HEADERS, ClosingStreamingResponse, encoded_audio, open_speech, sse_speech

router = APIRouter(tags=["openai"])

@router.post("/v1/audio/speech", summary="OpenAI-compatible text to speech (always streamed)", description=__doc__,
             responses={200: {"content": {**audio.binary_content(), SSE_MEDIA_TYPE: event_stream(SpeechEvent)},
                              "description": "The audio as it is generated, or SSE events (stream_format sse)."},
                        **error_responses(speech_refusals("input", cfg=False))})
async def create_speech(body: SpeechRequest = Body(openapi_examples=SPEECH_EXAMPLES),
                        ctx: IngressContext = Depends(get_ctx)):
    await ctx.fetch_voice(body.voice_name)
    request = synthesis_request(ctx, body.input, body.voice_name, model=body.model, text_param="input",
                                openai_names=True)
    stream = await open_speech(ctx, request, text_param="input", speed=body.speed)
    headers = {**STREAM_HEADERS, "X-TTS-Voice": voice_header(request.voice)}
    if body.instructions:
        headers["X-TTS-Instructions"] = "ignored"
    if body.stream_format == "sse":
        events = sse_speech(stream, body.response_format, body.speed, audio_type="speech.audio.delta",
                            word_type=None, done=lambda _, __, frames: {"type": "speech.audio.done",
                                                                        "usage": usage(request.text, frames)})
        return ClosingStreamingResponse(events, media_type=SSE_MEDIA_TYPE, headers=headers)
    return ClosingStreamingResponse(encoded_audio(stream, body.response_format, body.speed),
                                    media_type=audio.FORMATS[body.response_format].media_type, headers=headers)


@router.get("/v1/audio/voices", summary="Voices for /v1/audio/speech: OpenAI names, then Kyutai voice ids",
            responses={200: {"model": OpenAIVoiceList}})
async def list_voices(ctx: IngressContext = Depends(get_ctx)) -> dict:
    return {"voices": openai_voices.list_voices(ctx, await ctx.voices.listing.get())}


@router.post("/v1/audio/voices", summary="OpenAI-compatible: a voice from an audio sample (audio.voices.create)",
             description="As POST /api/voices, in OpenAI's shape: multipart `audio_sample`, `consent`, `name` "
                         "(and `type`: only `audio_sample`; `model` optional, the first cloning model by "
                         "default). Answers OpenAI's voice object; `id` is a value for `voice`.",
             responses={200: {"model": OpenAIVoiceObject}, **error_responses(CREATE_REFUSALS)})
@upload("max_voice_clip_bytes")
async def create_voice(audio_sample: UploadFile = File(description="The clip"),
                       consent: str = Form(min_length=1, max_length=voice_uploads.MAX_CONSENT_CHARS),
                       name: str = Form(min_length=1, max_length=voice_uploads.MAX_NAME_CHARS),
                       type: Literal["audio_sample"] = Form("audio_sample"),
                       model: str | None = Form(None, max_length=200),
                       ctx: IngressContext = Depends(get_ctx)) -> dict:
    record, _ = await voice_uploads.create_voice(ctx, await audio_sample.read(), name, consent, model)
    return {"id": record.id, "object": "audio.voice", "created_at": record.created, "name": record.name,
            "type": "audio_sample"}


@router.delete("/v1/audio/voices/{voice_id}", summary="OpenAI-compatible: delete one of your voices",
               responses=error_responses(DELETE_REFUSALS))
async def delete_voice(voice_id: str = Path(max_length=100), ctx: IngressContext = Depends(get_ctx)) -> dict:
    record = await voice_uploads.delete_voice(ctx, voice_id)
    return {"id": record.id, "deleted": True, "object": "audio.voice.deleted"}


def _model_ids(ctx: IngressContext) -> list[tuple[str, str]]:
    """(id, kind) of every model, then of the short names of a model table, then OpenAI's names
    (which, like any unknown name, get the default model)."""
    ids = [(m.public_id, m.kind) for m in ctx.models.values()]
    names = [(m.name, m.kind) for m in ctx.models.values() if ctx.settings.models and m.name not in dict(ids)]
    return [*ids, *names, *((alias, ctx.default_model.kind) for alias in MODEL_ALIASES)]


@router.get("/v1/models", summary="Model names accepted by /v1/audio/speech (any name works) and their kinds",
            responses={200: {"model": ModelList}})
async def list_models(ctx: IngressContext = Depends(get_ctx)) -> dict:
    return {"object": "list", "data": [model_entry(m, kind) for m, kind in _model_ids(ctx)]}


@router.get("/v1/models/{model_id:path}", summary="One model (an unknown name is the default model)",
            responses={200: {"model": Model}})
async def get_model(model_id: str, ctx: IngressContext = Depends(get_ctx)) -> dict:
    kinds = dict(_model_ids(ctx))
    return model_entry(model_id, kinds.get(model_id, ctx.default_model.kind))
