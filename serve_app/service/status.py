"""What the cluster looks like to clients: every GPU and worker replica (/api/gpu/status, MCP's
get_gpu_status) and whether a request can succeed now (/ready), for each model of the app. Both
read the worker registry, node facts and Serve's status, never a worker handle, so they never wake
a deployment that scaled to zero."""

from __future__ import annotations

import asyncio

from deployments.engine.download_progress import describe
from deployments.protocol import DEFAULT_MODEL_NAME, WORKER_DEPLOYMENT

from ..context import IngressContext
from ..errors import APIError
from .served_models import ServedModel

FAILED_DEPLOYMENT_STATES = ("NOT_DEPLOYED", "DEPLOY_FAILED", "UNHEALTHY")


def _models(ctx: IngressContext) -> list[ServedModel]:
    """The app's models, the default one first."""
    default = ctx.settings.default_model_name
    return sorted(ctx.models.values(), key=lambda m: m.name != default)


def _deployment_of(report: dict) -> str:
    return report.get("deployment") or WORKER_DEPLOYMENT  # a replica of an older release says none


async def gpu_status(ctx: IngressContext) -> dict:
    # Node facts and Serve's view come from short-lived caches shared by every caller of this
    # ingress replica (serve_app/service/cache.py); the replicas' reports are read fresh (one actor call).
    cluster = ctx.cluster
    replicas, nodes, states = await asyncio.gather(
        cluster.replicas(), cluster.node_facts.get(), cluster.deployment_states.get())
    models = _models(ctx)
    kinds = {m.name: m.kind for m in models}
    return {
        "nodes": nodes,
        "total_gpus": sum(len(n["gpus"]) for n in nodes),
        "total_ray_gpus": sum(n["ray_gpus"] for n in nodes),
        # How fresh `nodes` is, and how many times this ingress replica has asked the nodes.
        "node_facts": {"age_s": round(cluster.node_facts.age_s() or 0.0, 2), "reads": cluster.node_facts.loads,
                       "ttl_s": cluster.node_facts.ttl_s},
        "worker_deployment": states[models[0].deployment],  # the default model's, as before several models
        "worker_deployments": {m.name: {**states[m.deployment], "deployment": m.deployment, "model": m.public_id,
                                        "kind": m.kind} for m in models},
        "replicas": [{
            "replica": r.get("replica"), "node": r.get("node"), "node_id": r.get("node_id"), "gpu": r.get("gpu"),
            "model_name": r.get("model_name") or DEFAULT_MODEL_NAME, "deployment": _deployment_of(r),
            "kind": kinds.get(r.get("model_name") or DEFAULT_MODEL_NAME),
            "state": r["model"]["state"], "error": r["model"].get("error"),
            "device": r["model"].get("device"), "idle_seconds": r["model"].get("idle_seconds"),
            "offload_after_s": r["model"].get("offload_after_s"),
            "vram": r["model"].get("gpu"), "torch_allocated_mib": r["model"].get("torch_allocated_mib"),
            "loads": r["model"].get("loads"), "offloads": r["model"].get("offloads"),
            "reloads": r["model"].get("reloads"), "load_seconds": r["model"].get("load_seconds"),
            "reload_seconds": r["model"].get("reload_seconds"),
            # While it fetches files from the hub: {repo, file, files_done, files_total,
            # bytes_done, bytes_total, rate_bps, eta_s}.
            "download": r["model"].get("download"),
            # Slots: rows of the replica's streaming batch; busy ones speak, free ones wait.
            "active": r.get("active"), "queued": r.get("queued"), "max_batch_size": r.get("max_batch_size"),
            "free_slots": r.get("free_slots"), "steps": r.get("steps"), "admissions": r.get("admissions"),
            "recent_busy_slots": r.get("recent_busy_slots"), "reported_s_ago": r.get("reported_s_ago"),
            # `max_batch_size: auto`: the count chosen, its p95 tick, the budget, the margin.
            "slot_sizing": r.get("slot_sizing"), "audio_underruns": r.get("audio_underruns"),
        } for r in replicas],
    }


# A 503 says when to ask again, as every 503 of the service does.
NOT_READY_RETRY_S = "5"


def _model_readiness(model: ServedModel, state: dict, replicas: list[dict]) -> dict:
    """Whether a request for `model` can succeed now, and why not."""
    own = [r for r in replicas if _deployment_of(r) == model.deployment]
    view = {"ready": True, "reason": None, "deployment": model.deployment, "model": model.public_id,
            "replicas": len(own)}
    model_error = model.workers.model_error(own)
    downloading = first_download(own)
    if state["status"] in FAILED_DEPLOYMENT_STATES:
        view.update(ready=False, reason=f"{model.deployment} deployment is {state['status']}: {state['message']}")
    elif downloading:
        view.update(ready=False, reason=downloading)
    elif model_error:
        view.update(ready=False, reason=f"model failed to load: {model_error}")
    return view


async def readiness(ctx: IngressContext) -> tuple[dict, int, dict | None]:
    """(body, HTTP status, headers) of /ready: can a request for the default model succeed now
    (`ready`, `reason`), and each model's answer (`models`). Never wakes a deployment scaled to
    zero (Serve's status and the registry only)."""
    models = _models(ctx)
    states = await ctx.cluster.read_deployment_states()
    default_state = states[models[0].deployment]
    try:
        replicas = await ctx.cluster.replicas()
    except APIError as exc:
        return ({"ready": False, "reason": exc.message, "worker_deployment": default_state, "replicas": None,
                 "models": None}, 503, exc.headers)
    views = {m.name: _model_readiness(m, states[m.deployment], replicas) for m in models}
    default = views[models[0].name]
    body = {"ready": default["ready"], "reason": default["reason"], "worker_deployment": default_state,
            "replicas": default["replicas"], "models": views}
    return body, 200 if body["ready"] else 503, None if body["ready"] else {"Retry-After": NOT_READY_RETRY_S}


def first_download(replicas: list[dict]) -> str | None:
    """Why no request can succeed soon, in words, while no replica has the model and one is
    downloading it (a first start: the real model is 3.7 GB), else None."""
    models = [r.get("model") or {} for r in replicas]
    if any(m.get("state") in ("ready", "offloaded") for m in models):
        return None
    download = next((m["download"] for m in models if m.get("download")), None)
    return f"downloading the model: {describe(download)}" if download else None
