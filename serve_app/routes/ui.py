"""The web page at `/`, its static files, and `GET /api/info` (what the page says about the model).

Every asset lives in `serve_app/static/` and is served from the installed package: the page needs
no network beyond this service.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from ..context import IngressContext, get_ctx
from ..protocols.rest import Info

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["ui"])


def mount_static(app) -> None:
    """`/static/...`: the page's scripts and styles (a mount, which a router cannot carry)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    # no-cache: browsers revalidate, so a new release's page never runs with stale scripts.
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def _version() -> str:
    try:
        return metadata.version("kyutai-tts-serve")
    except metadata.PackageNotFoundError:
        return "unknown"


@router.get("/api/info", summary="Which model is served, and whether it is a random-weight test model",
            responses={200: {"model": Info}})
async def info(ctx: IngressContext = Depends(get_ctx)) -> dict:
    settings = ctx.settings
    default_name = settings.default_model_name
    models = [m.describe(default=m.name == default_name) for m in ctx.models.values()]
    default = next(m for m in models if m["default"])
    # The top-level fields describe the default model (`engine`: a scripted fake runs, tests only).
    return {"model": default["id"], "test_model": default["test_model"], "engine": default["engine"],
            "version": _version(), "default_voice": default["default_voice"],
            "default_cfg_coef": default["default_cfg_coef"], "max_text_chars": settings.max_text_chars,
            "models": models}
