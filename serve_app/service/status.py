"""What the cluster looks like to clients: every GPU and worker replica (/api/gpu/status, MCP's
get_gpu_status) and whether a request can succeed now (/ready). Both read the worker registry,
node facts and Serve's status, never the worker handle, so they never wake a deployment that
scaled to zero."""

from __future__ import annotations

import asyncio

from ..context import IngressContext
from ..errors import APIError


async def gpu_status(ctx: IngressContext) -> dict:
    # Node facts and Serve's view come from short-lived caches shared by every caller of this
    # ingress replica (serve_app/service/cache.py); the replicas' reports are read fresh (one actor call).
    cluster = ctx.cluster
    replicas, nodes, deployment = await asyncio.gather(
        cluster.replicas(), cluster.node_facts.get(), cluster.deployment_states.get())
    return {
        "nodes": nodes,
        "total_gpus": sum(len(n["gpus"]) for n in nodes),
        "total_ray_gpus": sum(n["ray_gpus"] for n in nodes),
        # How fresh `nodes` is, and how many times this ingress replica has asked the nodes.
        "node_facts": {"age_s": round(cluster.node_facts.age_s() or 0.0, 2), "reads": cluster.node_facts.loads,
                       "ttl_s": cluster.node_facts.ttl_s},
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


# A 503 says when to ask again, as every 503 of the service does.
NOT_READY_RETRY_S = "5"


async def readiness(ctx: IngressContext) -> tuple[dict, int, dict | None]:
    """(body, HTTP status, headers) of /ready: can a TTS request succeed now? Never wakes a
    deployment scaled to zero (Serve's status and the registry only)."""
    deployment = await ctx.cluster.deployment_state()
    try:
        replicas = await ctx.cluster.replicas()
    except APIError as exc:
        return ({"ready": False, "reason": exc.message, "worker_deployment": deployment, "replicas": None},
                503, exc.headers)
    body = {"ready": True, "reason": None, "worker_deployment": deployment,
            "replicas": len(replicas)}
    model_error = ctx.workers.model_error(replicas)
    if deployment["status"] in ("NOT_DEPLOYED", "DEPLOY_FAILED", "UNHEALTHY"):
        body.update(ready=False, reason=f"TTSWorker deployment is {deployment['status']}: {deployment['message']}")
    elif model_error:
        body.update(ready=False, reason=f"model failed to load: {model_error}")
    return body, 200 if body["ready"] else 503, None if body["ready"] else {"Retry-After": NOT_READY_RETRY_S}
