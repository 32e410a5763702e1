"""Starting the application from a Serve config file on a Ray cluster (local or remote).

`deploy(config)` does what `serve run CONFIG` does (start Serve with the config's http_options,
then deploy its applications through the controller), with three adjustments for one machine:
relative paths in `args` become absolute, `PORT` overrides the port, and the TTSWorker's GPU needs
are fitted to the GPUs this cluster really has (none: CPU replicas, with a loud warning).
"""

from __future__ import annotations

import copy
import logging
import os
import time
from pathlib import Path

import yaml

log = logging.getLogger(__name__)
WORKER = "TTSWorker"
PATH_ARGS = ("model_path", "outputs_dir")


def read_config(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _absolute_paths(args: dict, base: Path) -> None:
    for key in PATH_ARGS:
        if args.get(key):
            args[key] = str((base / Path(args[key]).expanduser()).resolve())
    if args.get("voice_dirs"):
        dirs = args["voice_dirs"]
        dirs = dirs.split(",") if isinstance(dirs, str) else dirs
        args["voice_dirs"] = [str((base / Path(d).expanduser()).resolve()) for d in dirs]


def fit_to_cluster(config: dict, cluster_gpus: float, base: Path | None = None) -> tuple[dict, list[str]]:
    """A copy of `config` adjusted to this cluster, and the warnings to show."""
    config = copy.deepcopy(config)
    warnings = []
    if os.environ.get("PORT"):
        config.setdefault("http_options", {})["port"] = int(os.environ["PORT"])
    for app in config.get("applications", []):
        _absolute_paths(app.setdefault("args", {}), base or Path.cwd())
        for deployment in app.get("deployments", []):
            if deployment.get("name") != WORKER:
                continue
            actor = deployment.setdefault("ray_actor_options", {})
            autoscaling = deployment.get("autoscaling_config")
            if actor.get("num_gpus", 0) > 0 and cluster_gpus < 1:
                actor["num_gpus"] = 0
                if autoscaling:
                    autoscaling["max_replicas"] = 1
                    autoscaling["initial_replicas"] = min(autoscaling.get("initial_replicas") or 0, 1)
                warnings.append(
                    "NO GPU in this Ray cluster: running ONE TTSWorker replica on CPU instead of waiting "
                    "for a GPU forever. The real model is far slower than real time on CPU.")
            elif actor.get("num_gpus", 0) > 0 and autoscaling:
                per_gpu = int(cluster_gpus // actor["num_gpus"])
                autoscaling["max_replicas"] = per_gpu  # one replica per GPU
                for key in ("min_replicas", "initial_replicas"):
                    if autoscaling.get(key) is not None:
                        autoscaling[key] = min(autoscaling[key], per_gpu)
    return config, warnings


def deploy(config: dict, wait_s: float = 300.0) -> dict:
    """Starts Serve and deploys the config's applications; waits until they are RUNNING."""
    from ray.serve._private import api as serve_private_api  # what `serve run CONFIG` uses
    from ray.serve.schema import ServeDeploySchema

    from ray import serve

    schema = ServeDeploySchema(**config)
    http_options = {**schema.http_options.dict(), "location": "EveryNode"}
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
        time.sleep(0.5)
