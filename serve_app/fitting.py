"""A config's deployments fitted to the GPUs and CPUs a local Ray cluster really has (`make serve`,
`make demo`: serve_app/launch.py), since Serve waits forever for a replica the cluster cannot place.

The rules, for any number of worker deployments (one per model) beside the ingress:
- each worker keeps at most one replica per GPU (`max_replicas` = the GPUs; a replica asking for
  a fraction of a GPU shares it with other models' replicas, not its own); without a GPU each runs
  one replica on CPU, and one loud line says so;
- the replicas the workers start with are placed on the GPUs in config order (the default model's
  deployment first), each on one GPU as Ray places a fractional demand: a worker left without
  room starts with fewer, and a request for its model wakes one when room frees;
- CPU reservations count the replicas that can run at once: the workers together never hold more
  GPUs than there are, so their CPUs are bounded by what the GPUs can hold (workers x max_replicas
  would count a second model's replicas on GPUs that the first one's already hold);
- ingress replicas are capped to the cores left, and every CPU reservation shrinks by one factor
  when the rest still does not fit.

The cluster is one pool of whole GPUs (a local Ray is one node); Ray counts resources in
1/10000ths, and so does the placement here.
"""

from __future__ import annotations

import math

_UNITS = 10_000  # Ray's resource granularity


def fit_resources(deployments: list[dict], cluster: dict[str, float]) -> list[str]:
    """Adjusts `deployments` (the config's dicts, in place) to `cluster` (`ray.cluster_resources()`);
    returns the warnings to show, one line each."""
    gpus, cpus = cluster.get("GPU", 0.0), cluster.get("CPU", 0.0)
    # Deployments that never ask for a GPU (the Ingress); workers moved to CPU are not among them.
    cpu_tier = [d for d in deployments if not _gpus(d)]
    warnings = _fit_gpus(deployments, gpus)
    warnings += _share_gpus(deployments, gpus)
    _fit_cpu_tier(cpu_tier, deployments, gpus, cpus)
    return warnings + _fit_cpus(deployments, gpus, cpus)


def _gpus(deployment: dict) -> float:
    return deployment.get("ray_actor_options", {}).get("num_gpus", 0) or 0


def _cpus(deployment: dict) -> float:
    """Its CPUs per replica (Serve's default, 1, when unset)."""
    return deployment.get("ray_actor_options", {}).get("num_cpus", 1)


def _fit_gpus(deployments: list[dict], cluster_gpus: float) -> list[str]:
    """One replica per GPU at most; on a cluster without (enough) GPUs one replica on CPU."""
    on_cpu = []
    for deployment in deployments:
        need = _gpus(deployment)
        if need <= 0:
            continue
        if cluster_gpus < need:
            deployment["ray_actor_options"]["num_gpus"] = 0
            set_max_replicas(deployment, 1)
            on_cpu.append(deployment["name"])
        else:
            set_max_replicas(deployment, int(cluster_gpus // max(need, 1.0)))
    if not on_cpu:
        return []
    which = f"ONE {on_cpu[0]} replica" if len(on_cpu) == 1 else f"ONE replica each of {', '.join(on_cpu)}"
    return [f"NO GPU in this Ray cluster: running {which} on CPU instead of waiting for a GPU forever. "
            f"The real models are far slower than real time on CPU."]


class _GpuPool:
    """The free share of each GPU, as Ray hands them out: a fractional demand on one GPU (the one
    it fits most tightly), a demand of one or more on that many whole free GPUs."""

    def __init__(self, cluster_gpus: float):
        self.free = [_UNITS] * int(cluster_gpus + 1e-9)

    def place(self, need: float) -> bool:
        units = round(need * _UNITS)
        if units >= _UNITS:
            whole = [i for i, free in enumerate(self.free) if free == _UNITS][:math.ceil(units / _UNITS)]
            if len(whole) * _UNITS < units:
                return False
            for i in whole:
                self.free[i] = 0
            return True
        fitting = [i for i, free in enumerate(self.free) if free >= units]
        if not fitting:
            return False
        tightest = min(fitting, key=lambda i: self.free[i])
        self.free[tightest] -= units
        return True


def _share_gpus(deployments: list[dict], cluster_gpus: float) -> list[str]:
    """Several GPU deployments on one cluster's GPUs: the replicas each starts with must be placed
    together, or the app would never be RUNNING. Each keeps max_replicas = the GPUs (models scale
    to zero on their own, so one may use them all while the others sleep); if all of them at their
    most cannot be placed together, the warning says so."""
    workers = [d for d in deployments if _gpus(d) > 0]
    if len(workers) < 2:
        return []
    warnings, pool = [], _GpuPool(cluster_gpus)
    for deployment in workers:
        wanted = start_replicas(deployment)
        fits = next((n for n in range(wanted) if not pool.place(_gpus(deployment))), wanted)
        if fits < wanted:
            set_start_replicas(deployment, fits)
            warnings.append(f"{deployment['name']} starts with {fits} replica(s) instead of {wanted}: the "
                            f"deployments before it in the config hold the GPUs of this Ray cluster "
                            f"({cluster_gpus:g}); a request for its model wakes one when a GPU is free.")
    pool = _GpuPool(cluster_gpus)
    if not all(pool.place(_gpus(d)) for d in workers for _ in range(max_replicas(d))):
        most = sum(_gpus(d) * max_replicas(d) for d in workers)
        names = ", ".join(d["name"] for d in workers)
        warnings.append(f"{names} may ask for {most:g} GPUs together and this Ray cluster has {cluster_gpus:g}: "
                        f"a replica that finds no GPU waits until another model's replicas scale down. Give "
                        f"each a fraction (ray_actor_options.num_gpus: 0.5) to keep them on the GPUs at once.")
    return warnings


def _cpus_at_once(deployments: list[dict], cluster_gpus: float) -> float:
    """The most CPUs `deployments` reserve together, each at its most replicas, GPU workers only as
    many as the GPUs hold at once. An upper bound (the GPUs filled by the workers with the most CPUs
    per GPU first, a fraction of a replica counted): never below what can really run."""
    total = sum(_cpus(d) * max_replicas(d) for d in deployments if not _gpus(d))
    left = cluster_gpus
    for deployment in sorted((d for d in deployments if _gpus(d)), key=lambda d: _cpus(d) / _gpus(d), reverse=True):
        replicas = min(max_replicas(deployment), left / _gpus(deployment))
        total += _cpus(deployment) * replicas
        left -= replicas * _gpus(deployment)
    return total


def _fit_cpu_tier(cpu_tier: list[dict], deployments: list[dict], cluster_gpus: float, cluster_cpus: float) -> None:
    """Caps the max_replicas of autoscaling deployments that need no GPU (the Ingress) to the CPUs
    the others leave at their most; at least one replica (what does not fit then is shrunk by
    _fit_cpus). Said nowhere: on one machine, more ingress replicas than cores only add processes."""
    for deployment in cpu_tier:
        cpus = _cpus(deployment)
        if not deployment.get("autoscaling_config") or not cpus:
            continue
        others = _cpus_at_once([d for d in deployments if d is not deployment], cluster_gpus)
        fits = max(1, int((cluster_cpus - others) // cpus))
        if fits < max_replicas(deployment):
            set_max_replicas(deployment, fits)


def _fit_cpus(deployments: list[dict], cluster_gpus: float, cluster_cpus: float) -> list[str]:
    """Scales every CPU reservation by one factor when the replicas that can run at once would
    reserve more CPUs than the cluster has, e.g. production's 2 + 2 + 1 on a 2-core machine.
    Serve's controller and proxies reserve no CPU, so no room is kept for them."""
    total = _cpus_at_once(deployments, cluster_gpus)
    if total <= cluster_cpus + 1e-9:
        return []
    scale = cluster_cpus / total
    changes = []
    for deployment in deployments:
        old = _cpus(deployment)
        # Rounded down (Ray counts CPUs in 1/10000ths): the sum stays within the cluster.
        new = max(math.floor(old * scale * 100) / 100, 0.01) if old else 0
        deployment.setdefault("ray_actor_options", {})["num_cpus"] = new
        changes.append(f"{deployment['name']} {old:g} -> {new:g}")
    return [f"This Ray cluster has {cluster_cpus:g} CPUs and the config reserves {total:g}: "
            f"CPU reservations scaled to fit ({', '.join(changes)})."]


def start_replicas(deployment: dict) -> int:
    autoscaling = deployment.get("autoscaling_config")
    if autoscaling:
        start = autoscaling.get("initial_replicas")
        return max(autoscaling.get("min_replicas") or 0, start if start is not None else 0)
    replicas = deployment.get("num_replicas", 1)
    return replicas if isinstance(replicas, int) else 1


def set_start_replicas(deployment: dict, count: int) -> None:
    autoscaling = deployment.get("autoscaling_config")
    if autoscaling:
        for key in ("min_replicas", "initial_replicas"):
            if autoscaling.get(key) is not None:
                autoscaling[key] = min(autoscaling[key], count)
    else:
        deployment["num_replicas"] = count


def set_max_replicas(deployment: dict, count: int) -> None:
    autoscaling = deployment.get("autoscaling_config")
    if autoscaling:
        autoscaling["max_replicas"] = count
        for key in ("min_replicas", "initial_replicas"):
            if autoscaling.get(key) is not None:
                autoscaling[key] = min(autoscaling[key], count)
    elif isinstance(deployment.get("num_replicas", 1), int):
        deployment["num_replicas"] = min(deployment.get("num_replicas", 1), count)


def max_replicas(deployment: dict) -> int:
    autoscaling = deployment.get("autoscaling_config")
    if autoscaling:
        return autoscaling.get("max_replicas", 1)
    replicas = deployment.get("num_replicas", 1)
    return replicas if isinstance(replicas, int) else 1
