"""The service's own TTS route, and saved files."""

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from .. import audio, speech
from ..context import IngressContext, get_ctx
from ..errors import APIError
from ..schemas import TTSRequest

router = APIRouter(tags=["tts"])


def output_url(request: Request, name: str) -> str:
    return str(request.url_for("get_output", name=name))


@router.post("/api/tts", summary="Text to speech",
             responses={200: {"content": {f.media_type: {} for f in audio.FORMATS.values()},
                              "description": "The audio; headers X-TTS-GPU and X-TTS-Replica say where it ran."}})
async def tts(body: TTSRequest, request: Request, ctx: IngressContext = Depends(get_ctx)):
    result = await speech.synthesize(ctx, body.text, body.voice, body.cfg_coef)
    data, saved = speech.encode_and_maybe_save(ctx, result, body.format, body.save)
    headers = result.headers()
    if saved:
        return JSONResponse({
            "url": output_url(request, saved), "format": body.format, "duration_s": result.done.duration_s,
            "voice": result.done.voice, "gpu": result.served_by.get("gpu"),
            "replica": result.served_by.get("replica"), "words": [w.to_dict() for w in result.done.words],
        }, headers=headers)
    return Response(data, media_type=audio.FORMATS[body.format].media_type, headers=headers)


@router.get("/api/outputs/{name}", name="get_output", summary="A file saved with save: true")
async def get_output(name: str, ctx: IngressContext = Depends(get_ctx)):
    path = ctx.outputs.path(name)
    if path is None:
        raise APIError(404, "no such output file", param="name", code="not_found")
    media_type = next((f.media_type for f in audio.FORMATS.values() if f.extension == path.suffix[1:]), None)
    return FileResponse(path, media_type=media_type)
