"""Speech to text of a whole file, as OpenAI's transcriptions and MCP's speech_to_text ask for it:
the model a request names, the upload decoded by serve_app/audio/clips.py's rules (in a thread;
decoding stops past `transcription_max_s`), then the audio sent to a speech-to-text worker whole,
as one TranscriptionRequest. The worker's loop is not clocked: a row steps whenever it holds a
frame, so a file is heard as fast as the worker steps (one frame per step), not in real time.

`open_transcript` waits for the worker's first events before any response starts, as
serve_app/service/streaming.py does for speech, so a refusal still gets its HTTP status."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, AsyncIterator

import numpy as np

from deployments.protocol import FailureKind, TranscriptionDone, TranscriptionRequest, WordBegun

from ..audio.clips import NOT_AUDIO, REFUSALS, ClipRefused, decode_audio
from ..errors import APIError
from ..protocols.error_shape import Refusal
from .speech import api_error_for, speech_refusals
from .streaming import SpeechStream, first_events
from .worker_client import WorkerError

if TYPE_CHECKING:
    from ..context import IngressContext
    from .served_models import ServedModel

NO_STT_MODEL = Refusal("no_stt_model", "This service has no speech-to-text model (GET /v1/models lists its models).",
                       "model")
WRONG_KIND = Refusal("wrong_model_kind", "The model named is a text-to-speech model.", "model")
UNSUPPORTED_LANGUAGE = Refusal("unsupported_language", "The model does not hear this language (the message lists "
                                                       "those it hears).", "language")
TOO_LONG = Refusal("clip_too_long", "The file decodes to more than transcription_max_s of audio (decoding stops "
                                    "there, whatever the file's size).", "file")


def refusals() -> dict[int, list[Refusal]]:
    """Every way a transcription is refused, as the OpenAPI document states it (the body limit's
    413 and the guards' are serve_app/openapi.py's)."""
    worker = speech_refusals("file", cfg=False)
    return {400: [NO_STT_MODEL, WRONG_KIND, UNSUPPORTED_LANGUAGE], 415: REFUSALS[415],
            422: [TOO_LONG, *(r for r in REFUSALS[422] if r.code == "clip_decode_limit"),
                  Refusal("invalid_request", "The worker refused the audio.", "file")],
            500: worker[500], 503: worker[503]}


def listening_model(ctx: IngressContext, name: str | None, any_name: bool = False) -> ServedModel:
    """The speech-to-text model a request names: none (or, with `any_name`, OpenAI's names and any
    name this service does not know) -> the app's first; a text-to-speech model's name is a 400."""
    first = next((m for m in ctx.models.values() if not m.speaks), None)
    known = name is not None and (name in ctx.models or any(m.public_id == name for m in ctx.models.values()))
    if name is None or (any_name and not known):
        if first is None:
            raise APIError(400, NO_STT_MODEL.description, param="model", code=NO_STT_MODEL.code)
        return first
    return ctx.model_for(name, speaks=False)


def check_language(model: ServedModel, language: str | None) -> str:
    """The language code to report: the one asked for, when the model hears it (else a 400), or
    the model's first (Kyutai's models need no language: they hear any of theirs)."""
    languages = model.spec.languages
    if language is None or language == "":
        return languages[0]
    if language.lower() not in languages:
        raise APIError(400, f"model '{model.name}' hears {', '.join(languages)}, not {language[:20]!r}",
                       param="language", code=UNSUPPORTED_LANGUAGE.code)
    return language.lower()


async def decode_upload(ctx: IngressContext, data: bytes, param: str = "file") -> np.ndarray:
    """The uploaded file as 24 kHz mono float32, or a 4xx (clips.py's refusals)."""
    settings = ctx.settings
    try:
        pcm, _ = await asyncio.to_thread(decode_audio, data, settings.transcription_max_s,
                                         settings.transcription_decode_timeout_s, max_setting="transcription_max_s")
    except ClipRefused as exc:
        raise APIError(exc.status, exc.message, param=param, code=exc.code) from None
    if pcm.size == 0:
        raise APIError(415, "the file holds no audio", param=param, code=NOT_AUDIO.code)
    return pcm


def worker_error(exc: WorkerError, param: str = "file") -> APIError:
    if exc.kind == FailureKind.INVALID:
        return APIError(422, exc.message, param=param, code="invalid_request")
    return api_error_for(exc)


async def open_transcript(model: ServedModel, pcm: np.ndarray, param: str = "file") -> SpeechStream:
    """The transcription of `pcm` running on a worker, its first events arrived; APIError for every
    refusal."""
    batches = model.workers.stream_batches(TranscriptionRequest(audio=pcm, model=model.name))
    return await first_events(batches, lambda exc: worker_error(exc, param))


async def heard(stream: SpeechStream) -> AsyncIterator[WordBegun | TranscriptionDone]:
    """Each word as soon as its text is known, then the TranscriptionDone (WorkerError midway)."""
    try:
        async for batch in stream.batches():
            for event in batch:
                if isinstance(event, (WordBegun, TranscriptionDone)):
                    yield event
    finally:
        await stream.aclose()


async def transcribe(model: ServedModel, pcm: np.ndarray, param: str = "file") -> TranscriptionDone:
    """The whole transcript of `pcm` (words with times); APIError for every failure."""
    stream = await open_transcript(model, pcm, param)
    try:
        async with contextlib.aclosing(heard(stream)) as events:  # closed at once: the worker stops
            async for event in events:
                if isinstance(event, TranscriptionDone):
                    return event
    except WorkerError as exc:
        raise worker_error(exc, param) from None
    raise APIError(500, "the worker ended the stream without a result", code="generation_failed")

