"""GPUs of the cluster and the TTSWorker replicas on them. Neither route wakes a deployment that
scaled to zero: they read the worker registry and ask nodes directly, never through the handle."""

from fastapi import APIRouter, Body, Depends

from ..context import IngressContext, get_ctx
from ..service.status import gpu_status
from ..protocols.error_shape import error_responses
from ..protocols.rest import OFFLOAD_EXAMPLES, GpuStatus, OffloadRequest, OffloadResult
from ..service.cluster import REGISTRY_UNAVAILABLE

router = APIRouter(tags=["gpu"])


# Both read the worker registry first.
REGISTRY_REFUSALS = error_responses({503: REGISTRY_UNAVAILABLE})


@router.get("/api/gpu/status", summary="Every GPU of the cluster and every TTSWorker replica",
            responses={200: {"model": GpuStatus}, **REGISTRY_REFUSALS})
async def status(ctx: IngressContext = Depends(get_ctx)) -> dict:
    return await gpu_status(ctx)


@router.post("/api/gpu/offload", summary="Offload the model from VRAM (all replicas, or one GPU/replica)",
             responses={200: {"model": OffloadResult}, **REGISTRY_REFUSALS})
async def offload(target: OffloadRequest = Body(openapi_examples=OFFLOAD_EXAMPLES),
                  ctx: IngressContext = Depends(get_ctx)) -> dict:
    return await ctx.cluster.offload(gpu=target.gpu, replica=target.replica)
