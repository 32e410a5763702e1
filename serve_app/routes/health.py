"""Liveness and readiness."""

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ..context import IngressContext, get_ctx
from ..service.status import readiness

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the ingress answers (never calls a worker)")
async def health() -> dict:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: can a TTS request succeed now?")
async def ready(ctx: IngressContext = Depends(get_ctx)):
    body, status, headers = await readiness(ctx)
    return JSONResponse(body, status_code=status, headers=headers)
