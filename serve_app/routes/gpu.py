"""GPUs of the cluster and the TTSWorker replicas on them. Neither route wakes a deployment that
scaled to zero: they read the worker registry and ask nodes directly, never through the handle."""

from fastapi import APIRouter, Body, Depends

from ..context import IngressContext, get_ctx
from ..service.status import gpu_status
from ..protocols.rest import OffloadRequest

router = APIRouter(tags=["gpu"])


@router.get("/api/gpu/status", summary="Every GPU of the cluster and every TTSWorker replica")
async def status(ctx: IngressContext = Depends(get_ctx)) -> dict:
    return await gpu_status(ctx)


@router.post("/api/gpu/offload", summary="Offload the model from VRAM (all replicas, or one GPU/replica)")
async def offload(target: OffloadRequest | None = Body(None), ctx: IngressContext = Depends(get_ctx)) -> dict:
    target = target or OffloadRequest()
    return await ctx.cluster.offload(gpu=target.gpu, replica=target.replica)
