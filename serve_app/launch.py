"""Starting the application from a Serve config file on a Ray cluster (local or remote).

`deploy(config)` does what `serve run CONFIG` does (start Serve with the config's http_options,
then deploy its applications through the controller), with adjustments for one machine: relative
paths in `args` become absolute, `PORT` overrides the port, and on a local cluster each deployment's
GPU and CPU reservations are fitted to what the cluster really has (serve_app/fitting.py: no GPU:
one CPU replica per model, with a loud warning; too few cores: smaller CPU reservations, said in one
line; several worker deployments, one per model: the replicas they start with fit the GPUs together).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from pathlib import Path

import yaml

from .fitting import fit_resources

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
        warnings += fit_resources(deployments, cluster)
    return config, warnings


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
