"""The service's own TTS route, and saved files."""

import asyncio
import base64
import dataclasses

import numpy as np
from fastapi import APIRouter, Body, Depends, Path, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from deployments.protocol import SAMPLE_RATE

from .. import audio
from ..audio import captions
from ..service import speech, streaming
from ..context import IngressContext, get_ctx
from ..errors import APIError
from ..protocols.error_shape import Refusal, error_responses
from ..protocols.rest import SPEECH_FILE_EXAMPLE, TTS_EXAMPLES, SpeechFile, TTSEvent, TTSRequest
from ..protocols.sse import SSE_MEDIA_TYPE, event_stream
from ..service.outputs import DISK_FULL, OUTPUT_NAME_PATTERN, OUTPUT_TOO_LARGE
from ..audio.tempo import Tempo

router = APIRouter(tags=["tts"])

TTS_DESCRIPTION = """Speaks `text` with `voice`. What comes back depends on the options:

- default: the audio file in `format` (wav, mp3, opus in Ogg, aac in ADTS, flac, or pcm = raw signed
  16-bit little-endian 24 kHz mono).
- `stream: true`: the same audio sent while it is generated (chunked body; WAV then carries an
  'unknown length' header). The first bytes leave as soon as the model made its first 80 ms.
- `timestamps: true` and/or `captions: "vtt" | "srt"`: JSON `{audio (base64), media_type, format,
  duration_s, voice, gpu, replica, words: [{word, start_s, end_s}], captions?}`.
- `stream: true` with `timestamps` or `captions`: Server-Sent Events, each `data: {...}` with a
  `type`: `audio` (`audio`: base64 chunk of the file), `word` (`word`, `start_s`, `end_s`, sent as soon
  as the word is known, usually before its audio), then `done` (as the JSON answer, without `audio`),
  or `error` (`error`: the usual error object) if the synthesis fails midway.
- `save: true`: JSON with the file's `url` instead of the audio (not with `stream`).

`speed` time-stretches the audio without changing its pitch; word times are scaled to match.
Captions group words into cues of at most 10 words / 4 s, cut at sentence ends and pauses."""


def output_url(request: Request, name: str) -> str:
    return str(request.url_for("get_output", name=name))


@router.post("/api/tts", summary="Text to speech",
             description=TTS_DESCRIPTION,
             responses={200: {"model": SpeechFile, "content": {
                                  **audio.binary_content(), SSE_MEDIA_TYPE: event_stream(TTSEvent),
                                  "application/json": {"example": SPEECH_FILE_EXAMPLE}},
                              "description": "The audio (or JSON / SSE, see above); headers X-TTS-GPU, "
                                             "X-TTS-Replica and X-TTS-Node (Ray node id) say where it ran (not on streamed answers)."},
                        **error_responses({**speech.speech_refusals("text"), 507: [DISK_FULL, OUTPUT_TOO_LARGE]})})
async def tts(request: Request, body: TTSRequest = Body(openapi_examples=TTS_EXAMPLES),
              ctx: IngressContext = Depends(get_ctx)):
    if body.stream:
        return await _streamed(body, ctx)
    result = await speech.synthesize(ctx, body.text, body.voice, body.cfg_coef, model=body.model)
    # Stretching and encoding a long clip takes seconds of CPU: off the event loop.
    if body.speed != 1.0:
        result = await asyncio.to_thread(_stretched, result, body.speed)
    data, saved = await asyncio.to_thread(speech.encode_and_maybe_save, ctx, result, body.format, body.save)
    headers = result.headers()
    words = [w.to_dict() for w in result.done.words]
    described = {"format": body.format, "duration_s": result.done.duration_s, "voice": result.done.voice,
                 "gpu": result.served_by.get("gpu"), "replica": result.served_by.get("replica"), "words": words}
    if body.captions:
        described["captions"] = captions.render(words, body.captions)
    if saved:
        return JSONResponse({"url": output_url(request, saved), **described}, headers=headers)
    if body.timestamps or body.captions:
        return JSONResponse({"audio": base64.b64encode(data).decode("ascii"),
                             "media_type": audio.FORMATS[body.format].media_type, **described}, headers=headers)
    return Response(data, media_type=audio.FORMATS[body.format].media_type, headers=headers)


def _stretched(result: speech.Speech, speed: float) -> speech.Speech:
    """The clip time-stretched by `speed`, its duration and word times scaled to match."""
    tempo = Tempo(speed)
    pcm = np.concatenate([tempo.process(result.pcm), tempo.flush()])
    done = dataclasses.replace(
        result.done, duration_s=round(pcm.shape[0] / SAMPLE_RATE, 3),
        words=[w.scaled(speed) for w in result.done.words])
    return speech.Speech(pcm, done)


async def _streamed(body: TTSRequest, ctx: IngressContext):
    await ctx.fetch_voice(body.voice)
    request = speech.synthesis_request(ctx, body.text, body.voice, body.cfg_coef, model=body.model)
    stream = await streaming.open_speech(ctx, request, speed=body.speed)
    headers = {**streaming.STREAM_HEADERS, "X-TTS-Voice": speech.voice_header(request.voice)}
    if not (body.timestamps or body.captions):
        return streaming.ClosingStreamingResponse(streaming.encoded_audio(stream, body.format, body.speed),
                                                  media_type=audio.FORMATS[body.format].media_type, headers=headers)

    def done(final, words, _frames) -> dict:
        event = {"type": "done", "format": body.format, "duration_s": round(final.duration_s / body.speed, 3),
                 "voice": final.voice, "gpu": final.served_by.get("gpu"),
                 "replica": final.served_by.get("replica"), "words": words}
        if body.captions:
            event["captions"] = captions.render(words, body.captions)
        return event

    events = streaming.sse_speech(stream, body.format, body.speed, audio_type="audio", word_type="word", done=done)
    return streaming.ClosingStreamingResponse(events, media_type=SSE_MEDIA_TYPE, headers=headers)


NO_SUCH_OUTPUT = Refusal("not_found", "no such output file (or it was deleted: saved files are kept for "
                                      "outputs_max_age_s)", "name")


@router.get("/api/outputs/{name}", name="get_output", summary="A file saved with save: true",
            responses={200: {"content": audio.binary_content(), "description": "The saved audio file."},
                       **error_responses({404: NO_SUCH_OUTPUT})})
async def get_output(name: str = Path(description="The name in the URL `save: true` returned.",
                                      json_schema_extra={"pattern": OUTPUT_NAME_PATTERN}),
                     ctx: IngressContext = Depends(get_ctx)):
    path = ctx.outputs.path(name)
    if path is None:
        raise APIError(404, NO_SUCH_OUTPUT.description, param=NO_SUCH_OUTPUT.param, code=NO_SUCH_OUTPUT.code)
    media_type = next((f.media_type for f in audio.FORMATS.values() if f.extension == path.suffix[1:]), None)
    return FileResponse(path, media_type=media_type)
