"""deploy/kuberay-rayservice.yaml embeds a Serve config (serveConfigV2) that must say what
serve_config.yaml says: both validate against Serve's own schema, and they differ only where
INTENDED_DIFFERENCES says so (pure file checks, no cluster)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from deployments.protocol import WORKER_DEPLOYMENT, worker_deployment
from serve_app.launch import read_config

REPO = Path(__file__).resolve().parents[2]
SERVE_CONFIG = REPO / "serve_config.yaml"
RAYSERVICE = REPO / "deploy" / "kuberay-rayservice.yaml"

# The ONLY places where the RayService's Serve config may differ from serve_config.yaml: the
# path (application / deployment names, then keys) -> (the RayService's value, or a function of
# the RayService that gives it; why). Every worker deployment (one per model) adds its own entry:
# see intended_differences().
INTENDED_DIFFERENCES: dict[tuple[str, ...], tuple[object, str]] = {
    ("tts", "args", "outputs_dir"): (
        "/tmp/outputs",
        "a container's working directory is not the project's: saved outputs go to an absolute path, "
        "where a shared volume is mounted when ingress replicas span several pods"),
    ("tts", "args", "voice_store_dir"): (
        "/tmp/voices-store",
        "uploaded voices, like saved outputs: an absolute path in the container, a shared volume there "
        "when ingress replicas span several pods (and a persistent one to keep voices across pods)"),
}
MAX_REPLICAS_REASON = ("one replica per GPU: the GPU worker groups' maxReplicas (GPUs per pod each) bound it, "
                       "where serve_config.yaml names the GPUs of a `ray up` cluster")


def rayservice() -> dict:
    return yaml.safe_load(RAYSERVICE.read_text())


def embedded_config(manifest: dict | None = None) -> dict:
    return yaml.safe_load((manifest or rayservice())["spec"]["serveConfigV2"])


def gpu_capacity(manifest: dict | None = None) -> int:
    """The GPUs the RayService's GPU worker groups may bring up, all groups together."""
    groups = (manifest or rayservice())["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    total = 0
    for group in groups:
        gpus = sum(int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))
                   for c in group["template"]["spec"]["containers"])
        total += gpus * group["maxReplicas"]
    assert total, "expected a GPU worker group"
    return total


def worker_deployments(config: dict) -> list[tuple[str, str, float]]:
    """(application, deployment, GPUs per replica) of every deployment that asks for a GPU."""
    return [(app["name"], d["name"], d["ray_actor_options"]["num_gpus"]) for app in config["applications"]
            for d in app.get("deployments", []) if d.get("ray_actor_options", {}).get("num_gpus", 0) > 0]


def intended_differences(manifest: dict) -> dict[tuple[str, ...], tuple[object, str]]:
    """INTENDED_DIFFERENCES, plus each worker deployment's max_replicas: as many replicas as the
    GPU groups hold GPUs (a fractional replica shares a GPU with other models, not its own)."""
    workers = {(app, name, "autoscaling_config", "max_replicas"): (int(gpu_capacity(manifest) // max(gpus, 1.0)),
                                                                    MAX_REPLICAS_REASON)
               for app, name, gpus in worker_deployments(embedded_config(manifest))}
    return {**INTENDED_DIFFERENCES, **workers}


def by_name(config: dict) -> dict:
    """The config with applications and deployments keyed by name (their order does not matter)."""
    config = copy.deepcopy(config)
    apps = {}
    for app in config.pop("applications"):
        app["deployments"] = {d["name"]: d for d in app.get("deployments", [])}
        for deployment in app["deployments"].values():
            deployment.pop("name")
        apps[app.pop("name")] = app
    return {**config, "applications": apps}


def locate(config: dict, path: tuple[str, ...]) -> tuple[dict, str]:
    """The dict holding `path`'s last key, in a by_name() config (a deployment name stands for
    the application's `deployments` entry)."""
    app = config["applications"][path[0]]
    node = app["deployments"][path[1]] if path[1] in app["deployments"] else app[path[1]]
    for key in path[2:-1]:
        node = node[key]
    return node, path[-1]


def differences(a, b, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b), key=str):
            here = f"{where}.{key}" if where else str(key)
            if key not in a:
                found.append(f"{here}: only in the RayService ({b[key]!r})")
            elif key not in b:
                found.append(f"{here}: missing from the RayService (serve_config.yaml: {a[key]!r})")
            else:
                found += differences(a[key], b[key], here)
        return found
    return [] if a == b else [f"{where}: serve_config.yaml {a!r} != RayService {b!r}"]


@pytest.mark.parametrize("config", [read_config(SERVE_CONFIG), embedded_config()],
                         ids=["serve_config.yaml", "kuberay serveConfigV2"])
def test_both_configs_are_valid_serve_deploy_configs(config):
    schema = ServeDeploySchema(**config)
    assert [app.name for app in schema.applications] == ["tts"]


def drift(production: dict, manifest: dict) -> list[str]:
    """What the manifest's Serve config says differently from `production`, beyond the intended."""
    production, kuberay = by_name(production), by_name(embedded_config(manifest))
    for path, (expected, reason) in intended_differences(manifest).items():
        assert reason
        expected = expected() if callable(expected) else expected
        node, key = locate(kuberay, path)
        if node.get(key) != expected:
            return [f"{'.'.join(path)}: {node.get(key)!r}, expected {expected!r}: {reason}"]
        node.pop(key)
        node, key = locate(production, path)
        assert key in node, f"{'.'.join(path)} is no longer in serve_config.yaml: drop it from INTENDED_DIFFERENCES"
        node.pop(key)
    return differences(production, kuberay)


def test_the_rayservice_says_what_serve_config_says_but_the_documented_differences():
    found = drift(read_config(SERVE_CONFIG), rayservice())
    assert not found, "deploy/kuberay-rayservice.yaml drifted from serve_config.yaml:\n" + "\n".join(found)


def with_second_model(config: dict, max_replicas: int | None = None) -> dict:
    """`config` with a second model (`hd`) and its worker deployment, copied from TTSWorker."""
    config = copy.deepcopy(config)
    [app] = config["applications"]
    app["args"]["models"] = {"main": {}, "hd": {"n_q": 32}}
    app["args"]["default_model"] = "main"
    worker = copy.deepcopy(next(d for d in app["deployments"] if d["name"] == WORKER_DEPLOYMENT))
    worker["name"] = worker_deployment("hd", "main")
    worker["ray_actor_options"]["num_gpus"] = 0.5
    if max_replicas is not None:
        worker["autoscaling_config"]["max_replicas"] = max_replicas
    app["deployments"].append(worker)
    return config


def test_the_checks_of_the_rayservice_hold_for_any_number_of_worker_deployments():
    manifest = rayservice()
    capacity = gpu_capacity(manifest)
    two = copy.deepcopy(manifest)
    two["spec"]["serveConfigV2"] = yaml.safe_dump(with_second_model(embedded_config(manifest), capacity))
    assert [name for _, name, _ in worker_deployments(embedded_config(two))] == ["TTSWorker", "TTSWorker_stt",
                                                                                 "TTSWorker_hd"]
    assert drift(with_second_model(read_config(SERVE_CONFIG)), two) == []
    # The second deployment's bound is checked as the first's: one more than the GPUs is drift.
    two["spec"]["serveConfigV2"] = yaml.safe_dump(with_second_model(embedded_config(manifest), capacity + 1))
    [found] = drift(with_second_model(read_config(SERVE_CONFIG)), two)
    assert found.startswith("tts.TTSWorker_hd.autoscaling_config.max_replicas")


def test_nothing_in_the_manifest_but_its_serve_config_names_a_worker_deployment():
    manifest = rayservice()
    manifest["spec"].pop("serveConfigV2")
    assert WORKER_DEPLOYMENT not in yaml.safe_dump(manifest)
    assert WORKER_DEPLOYMENT not in "\n".join(line for line in RAYSERVICE.read_text().splitlines()
                                              if line.lstrip().startswith("#"))


def test_the_rayservice_image_runs_the_ray_version_the_project_pins():
    pinned = next(line for line in (REPO / "pyproject.toml").read_text().splitlines() if "ray[serve]==" in line)
    version = pinned.split("==")[1].split('"')[0]
    assert rayservice()["spec"]["rayClusterConfig"]["rayVersion"] == version


# Settings that make a worker something other than the real model: tests and the demo only.
TEST_ONLY_SETTINGS = ("test_engine", "test_faults", "build_test_checkpoint", "model_path")


@pytest.mark.parametrize("loader", [lambda: read_config(SERVE_CONFIG), embedded_config],
                         ids=["serve_config", "rayservice"])
def test_production_configs_never_select_a_fake_engine_or_a_test_model(loader):
    for app in loader()["applications"]:
        staged = [name for name in TEST_ONLY_SETTINGS if app.get("args", {}).get(name)]
        assert not staged, f"{app['name']} sets {staged}"
