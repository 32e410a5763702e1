"""The cluster as status pages and operators see it: every worker replica's last report (the
registry actor), Serve's view of the worker deployment, every node's GPUs, and offload commands.
Nothing here calls the worker handle: a handle call routes to (or wakes) a replica, and a status
page polled every few seconds must never keep a deployment from scaling to zero."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import ray
from ray import serve

from deployments.serve.registry import REPORT_PERIOD_S, get_registry

from ..errors import APIError
from ..protocols.error_shape import Refusal
from .cache import TTLCache

log = logging.getLogger(__name__)
WORKER_DEPLOYMENT = "TTSWorker"

REGISTRY_TIMEOUT_S = 10.0
# How long node facts (Ray's node list and one NVML task per node) and Serve's view of the
# deployment are reused: the web page polls every 3 s per open tab, all tabs share one read.
NODE_FACTS_TTL_S = 5.0
DEPLOYMENT_STATE_TTL_S = 1.0
REGISTRY_UNAVAILABLE = Refusal("registry_unavailable",
                               "the worker registry is not answering (it is being restarted); retry shortly")
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])(?:[A-Za-z]:)?[\\/][^\s'\"`,;()\[\]{}]+")
_LONG_HEX_ID = re.compile(r"\b[0-9a-fA-F]{16,}\b")


def public_summary(text: str | None, limit: int = 240) -> str:
    """A Serve or Ray message made fit for clients: its first line only (Serve appends the
    replica's traceback after "Error:" on the next lines), with no absolute paths and no actor,
    node or replica ids. The whole text belongs in the server's log."""
    lines = (text or "").strip().splitlines()
    first = re.sub(r"\s*(with exception)?\.?\s*Error:\s*$", ".", lines[0]) if lines else ""
    first = _LONG_HEX_ID.sub("<id>", _ABSOLUTE_PATH.sub("<path>", first))
    return first if len(first) <= limit else first[:limit - 1] + "\u2026"


class ClusterView:
    """One per ingress replica: the registry actor's handle (looked up once) and short-lived
    caches of what every caller of this replica shares."""

    def __init__(self, app_name: str, worker_deployments: list[str] | None = None):
        self.app_name = app_name
        # The app's worker deployments, one per model (the default model's first).
        self.worker_deployments = list(worker_deployments or [WORKER_DEPLOYMENT])
        self._registry_handle = None  # looked up once (a blocking call, made in a thread)
        self.node_facts: TTLCache[list[dict]] = TTLCache(cluster_gpus, NODE_FACTS_TTL_S)
        self.deployment_states: TTLCache[dict] = TTLCache(self.read_deployment_states, DEPLOYMENT_STATE_TTL_S)

    async def registry(self):
        """The registry actor's handle. Looking it up is a blocking call to Ray's control plane:
        done once, in a thread; `replicas()` forgets it when the registry stops answering."""
        if self._registry_handle is None:
            self._registry_handle = await asyncio.to_thread(get_registry, self.app_name)
        return self._registry_handle

    async def replicas(self) -> list[dict]:
        """Every running replica's last report. APIError 503 while the registry actor is down
        (Ray restarts it; replicas report again within a second)."""
        try:
            registry = await self.registry()
            return await asyncio.wait_for(registry.snapshot.remote(), timeout=REGISTRY_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - RayActorError, a timeout: the same answer
            self._registry_handle = None  # looked up again next time (a new actor, if it was lost)
            log.warning("the worker registry did not answer: %s: %s", exc.__class__.__name__, str(exc)[:300])
            raise APIError(503, REGISTRY_UNAVAILABLE.description, code=REGISTRY_UNAVAILABLE.code,
                           headers={"Retry-After": "2"}) from None

    async def read_deployment_states(self) -> dict[str, dict]:
        """Serve's own view of each worker deployment (status, message, replica counts by state),
        by deployment name: one read of Serve's status for all of them."""
        return await asyncio.to_thread(self._deployment_states)

    def _deployment_states(self) -> dict[str, dict]:
        try:
            app = serve.status().applications.get(self.app_name)
            deployments = app.deployments if app else {}
        except Exception as exc:
            log.warning("reading Serve's status failed: %s: %s", exc.__class__.__name__, str(exc)[:500])
            unknown = {"status": "UNKNOWN", "message": "Serve's status could not be read; retry shortly", "replicas": {}}
            return {name: dict(unknown) for name in self.worker_deployments}
        return {name: _deployment_view(name, deployments.get(name)) for name in self.worker_deployments}

    async def offload(self, gpu: int | None = None, replica: str | None = None,
                      wait_s: float = 10.0) -> dict:
        """Asks matching replicas to offload; replies with each one's result. At zero replicas
        this is a no-op: nothing is woken."""
        targets = [r for r in await self.replicas()
                   if (gpu is None or r.get("gpu") == gpu) and (replica is None or r.get("replica") == replica)]
        return await self._command({"action": "offload"}, targets, wait_s)

    async def forget_clip(self, deployment: str, key: str, wait_s: float = 5.0) -> dict:
        """Drops an uploaded voice's cached prompt (`key`: deployments.protocol.clip_prompt_key)
        on every running replica of `deployment`, through the registry's commands (each replica
        picks them up with its next report, within REPORT_PERIOD_S). A replica that starts later
        never had it. Nothing is woken."""
        targets = [r for r in await self.replicas() if r.get("deployment") == deployment]
        return await self._command({"action": "forget_clip", "key": key}, targets, wait_s)

    async def _command(self, command: dict, targets: list[dict], wait_s: float) -> dict:
        if not targets:
            return {"requested": 0, "results": [], "note": "no running worker replica matched"}
        registry = await self.registry()
        command_id = await registry.submit.remote(command, [t["replica"] for t in targets])
        deadline = time.monotonic() + wait_s
        while True:
            progress = await registry.results.remote(command_id)
            if not progress["pending"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(REPORT_PERIOD_S / 4)
        return {"requested": len(targets), "results": list(progress["results"].values()),
                "pending": progress["pending"]}


def _deployment_view(name: str, deployment) -> dict:
    """One deployment's status as clients may read it (Serve's message without internals)."""
    if deployment is None:
        return {"status": "NOT_DEPLOYED", "message": "", "replicas": {}}
    message = public_summary(deployment.message)
    if message != (deployment.message or "").strip():
        log.warning("%s deployment: %s", name, deployment.message)  # the whole story, here only
    return {"status": str(getattr(deployment.status, "value", deployment.status)), "message": message,
            "replicas": {str(getattr(k, "value", k)): v for k, v in deployment.replica_states.items()}}


@ray.remote(num_cpus=0)
def _node_report() -> dict:
    from deployments.serve.gpu_info import node_report

    return node_report()


async def cluster_gpus() -> list[dict]:
    """Every alive node with its GPUs: Ray's logical GPU count, and NVML facts where NVIDIA GPUs
    exist (asked by a zero-CPU task pinned to each node: no Serve replica is involved)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in await asyncio.to_thread(ray.nodes) if n.get("Alive")]
    refs = [_node_report.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
            for n in nodes]
    reports = []
    for node, ref in zip(nodes, refs):
        try:
            facts = await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout=10)
        except Exception as exc:
            log.warning("GPU report of node %s failed: %s: %s", node.get("NodeManagerHostname"),
                        exc.__class__.__name__, str(exc)[:500])
            facts = {"node": node.get("NodeManagerHostname"), "gpus": [],
                     "error": "this node did not report its GPUs (the ingress's log has the cause); retry shortly"}
        reports.append({
            "node_id": node["NodeID"],
            "node_ip": node.get("NodeManagerAddress"),
            "hostname": facts.get("node") or node.get("NodeManagerHostname"),
            "ray_gpus": node.get("Resources", {}).get("GPU", 0.0),
            "gpus": facts.get("gpus", []),
        })
    return reports
