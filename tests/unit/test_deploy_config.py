"""deploy/kuberay-rayservice.yaml embeds a Serve config (serveConfigV2) that must say what
serve_config.yaml says: both validate against Serve's own schema, and they differ only where
INTENDED_DIFFERENCES says so (pure file checks, no cluster)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serve_app.launch import read_config

REPO = Path(__file__).resolve().parents[2]
SERVE_CONFIG = REPO / "serve_config.yaml"
RAYSERVICE = REPO / "deploy" / "kuberay-rayservice.yaml"

# The ONLY places where the RayService's Serve config may differ from serve_config.yaml: the
# path (application / deployment names, then keys) -> (the RayService's value, or a function of
# the RayService that gives it; why).
INTENDED_DIFFERENCES: dict[tuple[str, ...], tuple[object, str]] = {
    ("tts", "args", "outputs_dir"): (
        "/tmp/outputs",
        "a container's working directory is not the project's: saved outputs go to an absolute path, "
        "where a shared volume is mounted when ingress replicas span several pods"),
    ("tts", "TTSWorker", "autoscaling_config", "max_replicas"): (
        lambda: gpu_group_max_replicas(),
        "one replica per GPU: the GPU worker group's maxReplicas (one GPU per pod) bounds it, "
        "where serve_config.yaml names the GPUs of a `ray up` cluster"),
}


def rayservice() -> dict:
    return yaml.safe_load(RAYSERVICE.read_text())


def embedded_config() -> dict:
    return yaml.safe_load(rayservice()["spec"]["serveConfigV2"])


def gpu_group_max_replicas() -> int:
    groups = rayservice()["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    gpu_groups = [g for g in groups
                  if any("nvidia.com/gpu" in c.get("resources", {}).get("limits", {})
                         for c in g["template"]["spec"]["containers"])]
    assert len(gpu_groups) == 1, "expected one GPU worker group"
    return gpu_groups[0]["maxReplicas"]


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


def test_the_rayservice_says_what_serve_config_says_but_the_documented_differences():
    production, kuberay = by_name(read_config(SERVE_CONFIG)), by_name(embedded_config())
    for path, (expected, reason) in INTENDED_DIFFERENCES.items():
        assert reason
        expected = expected() if callable(expected) else expected
        node, key = locate(kuberay, path)
        assert node.get(key) == expected, f"{'.'.join(path)}: {reason}"
        node.pop(key)
        node, key = locate(production, path)
        assert key in node, f"{'.'.join(path)} is no longer in serve_config.yaml: drop it from INTENDED_DIFFERENCES"
        node.pop(key)
    drift = differences(production, kuberay)
    assert not drift, "deploy/kuberay-rayservice.yaml drifted from serve_config.yaml:\n" + "\n".join(drift)


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
