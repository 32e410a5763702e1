"""Liveness and readiness."""

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ..context import IngressContext, get_ctx
from ..protocols.error_shape import STATUS_HEADERS
from ..protocols.rest import Health, Readiness
from ..service.status import readiness

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the ingress answers (never calls a worker)",
            responses={200: {"model": Health}})
async def health() -> dict:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: can a TTS request succeed now?",
            responses={200: {"model": Readiness, "description": "Ready."},
                       503: {"model": Readiness, "headers": STATUS_HEADERS[503],
                             "description": "Not ready: `reason` says why."}})
async def ready(ctx: IngressContext = Depends(get_ctx)):
    body, status, headers = await readiness(ctx)
    return JSONResponse(body, status_code=status, headers=headers)
