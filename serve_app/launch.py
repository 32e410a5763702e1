"""Starting the application from a Serve config file on a Ray cluster (local or remote).

`deploy(config)` does what `serve run CONFIG` does (start Serve with the config's http_options,
then deploy its applications through the controller), with adjustments for one machine: relative
paths in `args` become absolute, `PORT` overrides the port, and on a local cluster each deployment's
GPU and CPU reservations are fitted to what the cluster really has (no GPU: one CPU replica, with a
loud warning; too few cores: smaller CPU reservations, said in one line; several worker deployments,
one per model: the replicas they start with fit the GPUs together, see _share_gpus).
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from pathlib import Path

import yaml

log = logging.getLogger(__name__)
PATH_ARGS = ("model_path", "outputs_dir", "voice_store_dir")


def read_config(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _absolute_paths(args: dict, base: Path) -> None:
    """Relative paths of the args, and of each entry of its model table, made absolute."""
    for entry in (args.get("models") or {}).values():
        if isinstance(entry, dict):
            _absolute_paths(entry, base)
    for key in PATH_ARGS:
        if args.get(key):
            args[key] = str((base / Path(args[key]).expanduser()).resolve())
    if args.get("voice_dirs"):
        dirs = args["voice_dirs"]
        dirs = dirs.split(",") if isinstance(dirs, str) else dirs
        args["voice_dirs"] = [str((base / Path(d).expanduser()).resolve()) for d in dirs]


def ray_init_options(environ) -> tuple[dict, bool]:
    """The `ray.init` arguments for `python -m serve_app.run`, and whether the config is then
    fitted to the cluster's resources.

    RAY_ADDRESS (an address, or "auto") joins an existing cluster: its autoscaler adds the nodes
    the config asks for, so nothing is fitted to what happens to be up now (an autoscaling cluster
    may have no GPU node yet: fitting would fall back to a CPU replica and cap max_replicas at the
    GPUs visible at that moment). Without it (or with "local"), a new local Ray of our own is
    started ("local" never joins one found on this machine), with RAY_NUM_GPUS logical GPUs if
    set, and the config is fitted to it."""
    address = (environ.get("RAY_ADDRESS") or "").strip()
    if address and address != "local":
        return {"address": address}, False
    init: dict = {"address": "local"}
    if environ.get("RAY_NUM_GPUS"):
        init["num_gpus"] = int(environ["RAY_NUM_GPUS"])
    return init, True


def fit_to_cluster(config: dict, cluster: dict[str, float] | None, base: Path | None = None,
                   port: int | str | None = None) -> tuple[dict, list[str]]:
    """A copy of `config` adjusted to this cluster, and the warnings to show (one line each).

    `cluster` is the local Ray cluster's resources (`ray.cluster_resources()`): each deployment's
    GPU and CPU reservations are fitted to it, since Serve would wait forever for a replica the
    cluster cannot place. None for a cluster we joined (RAY_ADDRESS): its autoscaler adds the nodes
    the config asks for, so reservations and replica counts stay as written.
    """
    config = copy.deepcopy(config)
    warnings = []
    if port:
        config.setdefault("http_options", {})["port"] = int(port)
    deployments = []
    for app in config.get("applications", []):
        _absolute_paths(app.setdefault("args", {}), base or Path.cwd())
        deployments += app.get("deployments", [])
    if cluster is not None:
        cpu_tier = [d for d in deployments if not d.get("ray_actor_options", {}).get("num_gpus")]
        for deployment in deployments:
            warnings += _fit_gpus(deployment, cluster.get("GPU", 0.0))
        warnings += _share_gpus(deployments, cluster.get("GPU", 0.0))
        _fit_cpu_tier(cpu_tier, deployments, cluster.get("CPU", 0.0))
        warnings += _fit_cpus(deployments, cluster.get("CPU", 0.0))
    return config, warnings


def _fit_gpus(deployment: dict, cluster_gpus: float) -> list[str]:
    """One replica per GPU (a replica asking for a fraction of one shares it with other models'
    replicas, not with its own: still one per GPU); on a cluster without GPUs one replica on CPU."""
    actor = deployment.get("ray_actor_options", {})
    need = actor.get("num_gpus", 0)
    if need <= 0:
        return []
    if cluster_gpus < need:
        actor["num_gpus"] = 0
        _set_max_replicas(deployment, 1)
        return [f"NO GPU in this Ray cluster: running ONE {deployment['name']} replica on CPU instead of "
                f"waiting for a GPU forever. The real model is far slower than real time on CPU."]
    _set_max_replicas(deployment, int(cluster_gpus // max(need, 1.0)))
    return []


def _share_gpus(deployments: list[dict], cluster_gpus: float) -> list[str]:
    """Several GPU deployments (a worker deployment per model) on one cluster's GPUs. The replicas
    each starts with (min/initial_replicas, or num_replicas) must fit together, or the app would
    never be RUNNING: they are given in config order (the default model's deployment first) and a
    deployment left without room starts with fewer, at zero it is woken by its first request.
    Each keeps max_replicas = the GPUs (models scale to zero on their own, so one may use them all
    while the others sleep), and if together they may ask for more, the warning says so."""
    gpu_deployments = [d for d in deployments if d.get("ray_actor_options", {}).get("num_gpus", 0) > 0]
    if len(gpu_deployments) < 2:
        return []
    warnings, left = [], cluster_gpus
    for deployment in gpu_deployments:
        need = deployment["ray_actor_options"]["num_gpus"]
        wanted = _start_replicas(deployment)
        fits = min(wanted, int(left / need + 1e-9))
        if fits < wanted:
            _set_start_replicas(deployment, fits)
            warnings.append(f"{deployment['name']} starts with {fits} replica(s) instead of {wanted}: the "
                            f"deployments before it in the config hold the GPUs of this Ray cluster "
                            f"({cluster_gpus:g}); a request for its model wakes one when a GPU is free.")
        left -= fits * need
    most = sum(d["ray_actor_options"]["num_gpus"] * _max_replicas(d) for d in gpu_deployments)
    if most > cluster_gpus + 1e-9:
        names = ", ".join(d["name"] for d in gpu_deployments)
        warnings.append(f"{names} may ask for {most:g} GPUs together and this Ray cluster has {cluster_gpus:g}: "
                        f"a replica that finds no GPU waits until another model's replicas scale down. Give "
                        f"each a fraction (ray_actor_options.num_gpus: 0.5) to keep them on the GPUs at once.")
    return warnings


def _start_replicas(deployment: dict) -> int:
    autoscaling = deployment.get("autoscaling_config")
    if autoscaling:
        start = autoscaling.get("initial_replicas")
        return max(autoscaling.get("min_replicas") or 0, start if start is not None else 0)
    replicas = deployment.get("num_replicas", 1)
    return replicas if isinstance(replicas, int) else 1


def _set_start_replicas(deployment: dict, count: int) -> None:
    autoscaling = deployment.get("autoscaling_config")
    if autoscaling:
        for key in ("min_replicas", "initial_replicas"):
            if autoscaling.get(key) is not None:
                autoscaling[key] = min(autoscaling[key], count)
    else:
        deployment["num_replicas"] = count


def _set_max_replicas(deployment: dict, count: int) -> None:
    autoscaling = deployment.get("autoscaling_config")
    if autoscaling:
        autoscaling["max_replicas"] = count
        for key in ("min_replicas", "initial_replicas"):
            if autoscaling.get(key) is not None:
                autoscaling[key] = min(autoscaling[key], count)
    elif isinstance(deployment.get("num_replicas", 1), int):
        deployment["num_replicas"] = min(deployment.get("num_replicas", 1), count)


def _max_replicas(deployment: dict) -> int:
    autoscaling = deployment.get("autoscaling_config")
    if autoscaling:
        return autoscaling.get("max_replicas", 1)
    replicas = deployment.get("num_replicas", 1)
    return replicas if isinstance(replicas, int) else 1


def _fit_cpu_tier(cpu_tier: list[dict], deployments: list[dict], cluster_cpus: float) -> None:
    """Caps the max_replicas of autoscaling deployments that need no GPU (the Ingress) to the CPUs
    left on this cluster by every other deployment at its most replicas; at least one replica
    (what does not fit then is shrunk by _fit_cpus). Said nowhere: on one machine, more ingress
    replicas than cores only add processes."""
    for deployment in cpu_tier:
        cpus = deployment.get("ray_actor_options", {}).get("num_cpus", 1)
        if not deployment.get("autoscaling_config") or not cpus:
            continue
        others = sum(d.get("ray_actor_options", {}).get("num_cpus", 1) * _max_replicas(d)
                     for d in deployments if d is not deployment)
        fits = max(1, int((cluster_cpus - others) // cpus))
        if fits < _max_replicas(deployment):
            _set_max_replicas(deployment, fits)


def _fit_cpus(deployments: list[dict], cluster_cpus: float) -> list[str]:
    """Scales every CPU reservation by one factor when all the replicas that may run at once
    (max_replicas of each) would reserve more CPUs than the cluster has, e.g. production's 2 + 1
    on a 2-core machine. Serve's controller and proxies reserve no CPU, so no room is kept for them.
    A deployment without num_cpus counts Serve's default, 1."""
    wanted = [d.get("ray_actor_options", {}).get("num_cpus", 1) for d in deployments]
    total = sum(cpus * _max_replicas(d) for cpus, d in zip(wanted, deployments))
    if total <= cluster_cpus:
        return []
    scale = cluster_cpus / total
    changes = []
    for old, deployment in zip(wanted, deployments):
        # Rounded down (Ray counts CPUs in 1/10000ths): the sum stays within the cluster.
        new = max(math.floor(old * scale * 100) / 100, 0.01) if old else 0
        deployment.setdefault("ray_actor_options", {})["num_cpus"] = new
        changes.append(f"{deployment['name']} {old:g} -> {new:g}")
    return [f"This Ray cluster has {cluster_cpus:g} CPUs and the config reserves {total:g}: "
            f"CPU reservations scaled to fit ({', '.join(changes)})."]


def deploy(config: dict, wait_s: float = 300.0, stop: threading.Event | None = None) -> dict | None:
    """Starts Serve and deploys the config's applications; waits until they are RUNNING
    (returns None when `stop` is set before that)."""
    from ray.serve._private import api as serve_private_api  # what `serve run CONFIG` uses
    from ray.serve.config import ProxyLocation
    from ray.serve.schema import ServeDeploySchema

    from ray import serve

    stop = stop or threading.Event()
    schema = ServeDeploySchema(**config)
    # The config's proxy_location, as `serve run` reads it (EveryNode when unset).
    http_options = {**schema.http_options.dict(), "location": ProxyLocation._to_deployment_mode(
        schema.proxy_location).value}
    client = serve_private_api.serve_start(http_options=http_options)
    client.deploy_apps(schema, _blocking=False)
    deadline = time.monotonic() + wait_s
    names = [app.name for app in schema.applications]
    while True:
        status = serve.status()
        states = {name: status.applications.get(name) for name in names}
        failed = {n: s.message for n, s in states.items() if s and str(s.status).endswith("DEPLOY_FAILED")}
        if failed:
            raise RuntimeError(f"deployment failed: {failed}")
        if all(s and str(s.status).endswith("RUNNING") for s in states.values()):
            return {"port": schema.http_options.port, "host": schema.http_options.host}
        if time.monotonic() > deadline:
            raise TimeoutError(f"applications not running after {wait_s:.0f}s: "
                               f"{ {n: (s.status, s.message) if s else None for n, s in states.items()} }")
        if stop.wait(0.5):
            return None
