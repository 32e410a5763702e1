"""The voices a request may name."""

from fastapi import APIRouter, Depends, Query

from ..context import IngressContext, get_ctx
from ..protocols.rest import VoiceListing
from ..protocols.text import MODEL_NAMES
from ..service.voices import voice_listing

router = APIRouter(tags=["voices"])


@router.get("/api/voices", summary="List voices (id, group, language)", responses={200: {"model": VoiceListing}})
async def list_voices(filter: str | None = Query(None, max_length=100, description="Substring of the id, or a language code"),
                      model: str | None = Query(None, max_length=200, json_schema_extra={MODEL_NAMES: True}, description="A model's name or id (default: "
                                                "the default model); an unknown one is a 400"),
                      ctx: IngressContext = Depends(get_ctx)) -> dict:
    return await voice_listing(ctx, filter, model=model)
