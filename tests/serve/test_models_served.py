"""Several models in one app (the `models` table): each has a worker deployment of its own (the
default model's is TTSWorker, the other's TTSWorker_<name>), and status, readiness, /api/info and
/v1/models report each. Both models are the tiny checkpoint under two names; their workers run on
CPU (num_gpus 0) so that the shared cluster's logical GPUs stay with the main app."""

from __future__ import annotations

import copy

import httpx
import pytest
from conftest import wait_for_replicas

CPU_WORKER = {"ray_actor_options": {"num_gpus": 0},
              "autoscaling_config": {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 1}}


@pytest.fixture(scope="module")
def duo_url(serve_cluster, base_url, tiny_checkpoint) -> str:
    path = str(tiny_checkpoint)
    app = serve_cluster.app_config("duo", "/duo", worker=CPU_WORKER,
                                   args={"models": {"first": {"model_path": path}, "second": {"model_path": path}},
                                         "default_model": "first"})
    worker = next(d for d in app["deployments"] if d["name"] == "TTSWorker")
    app["deployments"].append({**copy.deepcopy(worker), "name": "TTSWorker_second"})
    url = serve_cluster.deploy_app(app)
    wait_for_replicas(url, 2)
    return url


def test_each_model_has_its_own_worker_deployment_and_status_lists_both(duo_url):
    status = httpx.get(f"{duo_url}/api/gpu/status", timeout=30).json()
    assert {(r["model_name"], r["deployment"]) for r in status["replicas"]} == {
        ("first", "TTSWorker"), ("second", "TTSWorker_second")}
    deployments = status["worker_deployments"]
    assert {name: (d["deployment"], d["status"]) for name, d in deployments.items()} == {
        "first": ("TTSWorker", "HEALTHY"), "second": ("TTSWorker_second", "HEALTHY")}
    assert status["worker_deployment"]["status"] == "HEALTHY"  # the default model's, as before


def test_ready_and_info_answer_for_every_model(duo_url, tiny_checkpoint):
    ready = httpx.get(f"{duo_url}/ready", timeout=30)
    body = ready.json()
    assert ready.status_code == 200 and set(body["models"]) == {"first", "second"}
    assert all(m["ready"] and m["replicas"] == 1 for m in body["models"].values())
    info = httpx.get(f"{duo_url}/api/info", timeout=30).json()
    assert [(m["name"], m["default"], m["test_model"]) for m in info["models"]] == [
        ("first", True, True), ("second", False, True)]
    ids = [m["id"] for m in httpx.get(f"{duo_url}/v1/models", timeout=30).json()["data"]]
    assert ids[:2] == [f"local/{tiny_checkpoint.name}"] * 2 and {"first", "second"} <= set(ids)


def test_a_request_naming_no_model_is_served_by_the_default_models_deployment(duo_url):
    replicas = httpx.get(f"{duo_url}/api/gpu/status", timeout=30).json()["replicas"]
    default_replica = next(r["replica"] for r in replicas if r["deployment"] == "TTSWorker")
    spoken = httpx.post(f"{duo_url}/api/tts", json={"text": "Good morning."}, timeout=120)
    assert spoken.status_code == 200 and spoken.headers["x-tts-replica"] == default_replica
