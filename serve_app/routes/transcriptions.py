"""OpenAI-compatible speech to text: `POST /v1/audio/transcriptions` (multipart, as the OpenAI SDKs,
Open WebUI and the LiveKit and Pipecat plug-ins send it).

What the fields do here:

- `file`: any audio format FFmpeg reads, at most `max_transcription_bytes` (25 MiB by default);
  decoded, mixed to mono and resampled to 24 kHz; at most `transcription_max_s` of audio (decoding
  stops there). The file is heard as fast as the worker steps, not in real time.
- `model`: a speech-to-text model's name or id from GET /v1/models; OpenAI's names (whisper-1,
  gpt-4o-transcribe, ...) and any name this service does not know get its first speech-to-text model.
- `language`: ISO-639-1; the model's languages only (Kyutai's stt-1b-en_fr: en, fr), else a 400.
  Kyutai's models need no language hint: they hear each of theirs as it comes.
- `prompt`: accepted and ignored (Kyutai's models take no text context); the response then carries
  `X-STT-Prompt: ignored`. `temperature`: accepted and ignored (the model decodes greedily).
- `response_format`: json (default: `text` and `usage`), text, srt, vtt, or verbose_json (`language`,
  `duration`, `text`, `segments`, and `words` when `timestamp_granularities[]` holds `word`; only
  `word` leaves `segments` out). Segments are the words grouped at sentence ends and pauses.
- `stream`: true sends Server-Sent Events: `{"type": "transcript.text.delta", "delta"}` per word as
  soon as it is heard, then `{"type": "transcript.text.done", "text", "usage"}` (response_format
  is then ignored, as OpenAI does).

Errors use OpenAI's shape `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse

from deployments.protocol import TranscriptionDone, WordBegun

from ..audio import captions
from ..context import IngressContext, get_ctx
from ..protocols import transcription as wire
from ..protocols.error_shape import error_responses
from ..protocols.sse import SSE_MEDIA_TYPE, event_stream, sse
from ..security import upload
from ..service import transcription
from ..service.streaming import STREAM_HEADERS, ClosingStreamingResponse, sse_error

router = APIRouter(tags=["openai"])

MAX_FIELD_CHARS = 2000


def _content() -> dict:
    json_schema = {"anyOf": [{"$ref": "#/components/schemas/Transcription"},
                             {"$ref": "#/components/schemas/TranscriptionVerbose"}]}
    return {"application/json": {"schema": json_schema},
            **{media.split(";")[0]: {"schema": {"type": "string"}} for media in wire.TEXT_MEDIA_TYPES.values()},
            SSE_MEDIA_TYPE: event_stream(wire.TranscriptionEvent)}


def _body(done: TranscriptionDone, fmt: str, language: str, granularities: list[str]):
    words = done.words
    text = wire.joined([w.word for w in words])
    if fmt in captions.FORMATS:
        return PlainTextResponse(captions.render(words, fmt), media_type=wire.TEXT_MEDIA_TYPES[fmt])
    if fmt == "text":
        return PlainTextResponse(text + "\n", media_type=wire.TEXT_MEDIA_TYPES["text"])
    if fmt == "json":
        return {"text": text, "usage": wire.usage(done.duration_s)}
    body = {"task": "transcribe", "language": wire.language_name(language), "duration": round(done.duration_s, 3),
            "text": text, "usage": wire.usage(done.duration_s)}
    if "word" in granularities:
        body["words"] = [{"word": w.word, "start": round(w.start_s, 3), "end": round(w.end_s, 3)} for w in words]
    if granularities != ["word"]:
        body["segments"] = wire.segments(words)
    return body


async def _events(stream):
    """The SSE body: a delta per word as it is heard, then done (an error event if it fails).
    Closing it (a client gone) closes the worker stream at once, which stops the transcription."""
    words: list[str] = []
    try:
        async with contextlib.aclosing(transcription.heard(stream)) as heard:
            async for event in heard:
                if isinstance(event, WordBegun):
                    words.append(event.text)
                    yield sse({"type": "transcript.text.delta", "delta": (" " if len(words) > 1 else "") + event.text})
                else:
                    yield sse({"type": "transcript.text.done", "text": wire.joined(words),
                               "usage": wire.usage(event.duration_s)})
    except Exception as exc:  # noqa: BLE001 - a started stream ends with an error event, never cut
        yield sse_error(exc)


@router.post("/v1/audio/transcriptions", summary="OpenAI-compatible speech to text (audio.transcriptions.create)",
             description=__doc__,
             responses={200: {"content": _content(), "description": "The transcript in response_format, or SSE "
                                                                    "events (stream true)."},
                        **error_responses(transcription.refusals())})
@upload("max_transcription_bytes")
async def create_transcription(
        file: UploadFile = File(description="The audio: any format FFmpeg reads."),
        model: str = Form("", max_length=200, description="whisper-1, or a model from GET /v1/models."),
        language: str = Form("", max_length=20, description="ISO-639-1 code of a language the model hears."),
        prompt: str = Form("", max_length=MAX_FIELD_CHARS, description="Accepted and ignored."),
        response_format: wire.ResponseFormat = Form("json"),
        temperature: float = Form(0.0, ge=0, le=1, description="Accepted and ignored (greedy decoding)."),
        timestamp_granularities: list[wire.Granularity] = Form(
            ["segment"], alias="timestamp_granularities[]", description="word and/or segment (verbose_json)."),
        stream: bool = Form(False, description="true: Server-Sent Events, a delta per word."),
        ctx: IngressContext = Depends(get_ctx)):
    served = transcription.listening_model(ctx, model or None, any_name=True)
    language = transcription.check_language(served, language or None)
    pcm = await transcription.decode_upload(ctx, await file.read())
    headers = {"X-STT-Prompt": "ignored"} if prompt else {}
    if stream:
        opened = await transcription.open_transcript(served, pcm)
        return ClosingStreamingResponse(_events(opened), media_type=SSE_MEDIA_TYPE,
                                        headers={**STREAM_HEADERS, **headers})
    done = await transcription.transcribe(served, pcm)
    body = _body(done, response_format, language, list(timestamp_granularities))
    if isinstance(body, dict):
        return JSONResponse(body, headers=headers)
    body.headers.update(headers)
    return body
