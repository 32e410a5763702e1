"""Liveness and readiness."""

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ..context import IngressContext, get_ctx
from ..errors import APIError

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the ingress answers (never calls a worker)")
async def health() -> dict:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: can a TTS request succeed now?")
async def ready(ctx: IngressContext = Depends(get_ctx)):
    deployment = await ctx.workers.deployment_state()
    try:
        replicas = await ctx.workers.replicas()
    except APIError as exc:
        return JSONResponse({"ready": False, "reason": exc.message, "worker_deployment": deployment,
                             "replicas": None}, status_code=503, headers=exc.headers)
    body = {"ready": True, "reason": None, "worker_deployment": deployment,
            "replicas": len(replicas)}
    model_error = ctx.workers.model_error(replicas)
    if deployment["status"] in ("NOT_DEPLOYED", "DEPLOY_FAILED", "UNHEALTHY"):
        body.update(ready=False, reason=f"TTSWorker deployment is {deployment['status']}: {deployment['message']}")
    elif model_error:
        body.update(ready=False, reason=f"model failed to load: {model_error}")
    return JSONResponse(body, status_code=200 if body["ready"] else 503)
