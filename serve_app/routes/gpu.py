"""GPUs of the cluster and the TTSWorker replicas on them. Neither route wakes a deployment that
scaled to zero: they read the worker registry and ask nodes directly, never through the handle."""

import asyncio

from fastapi import APIRouter, Body, Depends

from ..context import IngressContext, get_ctx
from ..protocols.rest import OffloadRequest

router = APIRouter(tags=["gpu"])


async def gpu_status(ctx: IngressContext) -> dict:
    # Node facts and Serve's view come from short-lived caches shared by every caller of this
    # ingress replica (serve_app/service/cache.py); the replicas' reports are read fresh (one actor call).
    workers = ctx.workers
    replicas, nodes, deployment = await asyncio.gather(
        workers.replicas(), workers.node_facts.get(), workers.deployment_states.get())
    return {
        "nodes": nodes,
        "total_gpus": sum(len(n["gpus"]) for n in nodes),
        "total_ray_gpus": sum(n["ray_gpus"] for n in nodes),
        # How fresh `nodes` is, and how many times this ingress replica has asked the nodes.
        "node_facts": {"age_s": round(workers.node_facts.age_s() or 0.0, 2), "reads": workers.node_facts.loads,
                       "ttl_s": workers.node_facts.ttl_s},
        "worker_deployment": deployment,
        "replicas": [{
            "replica": r.get("replica"), "node": r.get("node"), "node_id": r.get("node_id"), "gpu": r.get("gpu"),
            "state": r["model"]["state"], "error": r["model"].get("error"),
            "device": r["model"].get("device"), "idle_seconds": r["model"].get("idle_seconds"),
            "offload_after_s": r["model"].get("offload_after_s"),
            "vram": r["model"].get("gpu"), "torch_allocated_mib": r["model"].get("torch_allocated_mib"),
            "loads": r["model"].get("loads"), "offloads": r["model"].get("offloads"),
            "reloads": r["model"].get("reloads"), "load_seconds": r["model"].get("load_seconds"),
            "reload_seconds": r["model"].get("reload_seconds"),
            # Slots: rows of the replica's streaming batch; busy ones speak, free ones wait.
            "active": r.get("active"), "queued": r.get("queued"), "max_batch_size": r.get("max_batch_size"),
            "free_slots": r.get("free_slots"), "steps": r.get("steps"), "admissions": r.get("admissions"),
            "recent_busy_slots": r.get("recent_busy_slots"), "reported_s_ago": r.get("reported_s_ago"),
        } for r in replicas],
    }


@router.get("/api/gpu/status", summary="Every GPU of the cluster and every TTSWorker replica")
async def status(ctx: IngressContext = Depends(get_ctx)) -> dict:
    return await gpu_status(ctx)


@router.post("/api/gpu/offload", summary="Offload the model from VRAM (all replicas, or one GPU/replica)")
async def offload(target: OffloadRequest | None = Body(None), ctx: IngressContext = Depends(get_ctx)) -> dict:
    target = target or OffloadRequest()
    return await ctx.workers.offload(gpu=target.gpu, replica=target.replica)
