"""The voices a request may name: the presets of each model, and the caller's uploaded ones."""

from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from fastapi.responses import JSONResponse

from ..audio.clips import REFUSALS as CLIP_REFUSALS
from ..context import IngressContext, get_ctx
from ..protocols.error_shape import error_responses
from ..protocols.rest import UploadedVoice, VoiceListing
from ..protocols.text import MODEL_NAMES
from ..security import upload
from ..service import voice_uploads
from ..service.shared_voices import STORE_UNAVAILABLE
from ..service.voice_store import NOT_FOUND, STORE_FULL, VOICE_QUOTA
from ..service.voices import voice_listing

router = APIRouter(tags=["voices"])

# What creating a voice may answer besides the guards (the OpenAI route shares it).
CREATE_REFUSALS = {**CLIP_REFUSALS, 403: [voice_uploads.UPLOADS_OFF, VOICE_QUOTA, STORE_FULL],
                   400: [voice_uploads.NO_CLONING_MODEL], 503: [STORE_UNAVAILABLE]}
# Deleting: the caller has no such voice, or the application's voice store is not answering.
DELETE_REFUSALS = {404: [NOT_FOUND], 503: [STORE_UNAVAILABLE]}


@router.get("/api/voices", summary="List voices (id, group, language) and your uploaded ones",
            responses={200: {"model": VoiceListing}, **error_responses({503: [STORE_UNAVAILABLE]})})
async def list_voices(filter: str | None = Query(None, max_length=100, description="Substring of the id, or a language code"),
                      model: str | None = Query(None, max_length=200, json_schema_extra={MODEL_NAMES: True}, description="A model's name or id (default: "
                                                "the default model); an unknown one is a 400"),
                      ctx: IngressContext = Depends(get_ctx)) -> dict:
    return await voice_listing(ctx, filter, model=model)


@router.post("/api/voices", status_code=201, summary="Make a voice of a cloning model from a clip",
             description="A clip of any format FFmpeg reads (3 to 30 s of sound; its first 10 s of sound "
                         "become the voice's prompt) as multipart `file`, with `name` and `consent` (your "
                         "statement that the speaker agreed). Needs an API key (the voice is that key's "
                         "only), unless the service allows anonymous uploads. The same clip sent again by "
                         "the same key is the voice it already has.",
             responses={201: {"model": UploadedVoice}, **error_responses(CREATE_REFUSALS)})
@upload("max_voice_clip_bytes")
async def create_voice(file: UploadFile = File(description="The clip"),
                       name: str = Form(min_length=1, max_length=voice_uploads.MAX_NAME_CHARS),
                       consent: str = Form(min_length=1, max_length=voice_uploads.MAX_CONSENT_CHARS,
                                           description="The speaker's consent: who agreed, and how"),
                       model: str | None = Form(None, max_length=200, description="A cloning model's name (default: "
                                                "the first cloning model)"),
                       ctx: IngressContext = Depends(get_ctx)):
    record, _ = await voice_uploads.create_voice(ctx, await file.read(), name, consent, model)
    return JSONResponse(record.public(), status_code=201)


@router.delete("/api/voices/{voice_id}", summary="Delete one of your uploaded voices",
               responses=error_responses(DELETE_REFUSALS))
async def delete_voice(voice_id: str = Path(max_length=100), ctx: IngressContext = Depends(get_ctx)) -> dict:
    record = await voice_uploads.delete_voice(ctx, voice_id)
    return {"id": record.id, "deleted": True}
