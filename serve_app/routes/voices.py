"""The voices a request may name."""

from fastapi import APIRouter, Depends, Query

from ..context import IngressContext, get_ctx

router = APIRouter(tags=["voices"])


def filter_voices(voices: list[dict], query: str | None) -> list[dict]:
    if not query:
        return voices
    needle = query.lower()
    return [v for v in voices if needle in v["id"].lower() or needle == (v.get("language") or "")]


@router.get("/api/voices", summary="List voices (id, group, language)")
async def list_voices(filter: str | None = Query(None, max_length=100, description="Substring of the id, or a language code"),
                      ctx: IngressContext = Depends(get_ctx)) -> dict:
    voices = [v.to_dict() for v in await ctx.voice_list.get()]
    body = {"default": ctx.settings.default_voice, "voices": filter_voices(voices, filter)}
    if ctx.voices.repo_error:
        body["warning"] = ctx.voices.repo_error
    return body
