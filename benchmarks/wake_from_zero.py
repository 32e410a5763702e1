"""Waking the TTSWorker deployment from zero replicas: where the seconds go, two configs side by side.

    .venv/bin/python benchmarks/wake_from_zero.py [--runs 3]

Two copies of the demo app run on one local Ray cluster (tiny model, CPU): "serve default" pushes
the ingress handle's autoscaling metrics every 10 s (Serve's default `metrics_interval_s`), "ours"
every 0.5 s (the configs' setting). Each is left to settle at zero replicas, then gets one request;
a thread polls Serve's status every 50 ms to date the controller's decision (a replica STARTING)
and the replica's start (RUNNING); the new replica's model-load time comes from its own report,
and `beyond_load` is what the request waited on top of it. Runs alternate between the two apps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from deployments.protocol import WORKER_DEPLOYMENT  # noqa: E402
TEXT = "Hello there, this is a short benchmark sentence."
ZERO_AFTER_S = 3


def replica_states(app: str) -> dict:
    from ray import serve

    deployment = serve.status().applications[app].deployments[WORKER_DEPLOYMENT]  # the default model's
    return {str(getattr(k, "value", k)): v for k, v in deployment.replica_states.items() if v}


def settle_at_zero(app: str, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while replica_states(app):
        if time.monotonic() > deadline:
            raise SystemExit(f"{app} did not scale to zero")
        time.sleep(0.5)
    time.sleep(3)  # the old replica's process is gone: a settled zero


def cold_request(url: str, app: str) -> dict:
    """Seconds from sending the request to: a replica asked for, running, the whole answer."""
    marks: dict[str, float] = {}
    done = threading.Event()

    def watch(started: float) -> None:
        while not done.is_set():
            states = replica_states(app)
            if states and "decided" not in marks:
                marks["decided"] = time.perf_counter() - started
            if states.get("RUNNING") and "running" not in marks:
                marks["running"] = time.perf_counter() - started
            time.sleep(0.05)

    started = time.perf_counter()
    watcher = threading.Thread(target=watch, args=(started,), daemon=True)
    watcher.start()
    httpx.post(f"{url}/api/tts", json={"text": TEXT}, timeout=300).raise_for_status()
    marks["answered"] = time.perf_counter() - started
    done.set()
    watcher.join()
    marks["model_load"] = model_load_s(url)
    marks["beyond_load"] = marks["answered"] - marks["model_load"]
    return marks


def model_load_s(url: str, timeout_s: float = 10) -> float:
    """The new replica's own model-load time, from its report (it reports once a second)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        replicas = httpx.get(f"{url}/api/gpu/status", timeout=30).json()["replicas"]
        loaded = [r["load_seconds"] for r in replicas if r.get("load_seconds") is not None]
        if loaded:
            return loaded[0]
        time.sleep(0.2)
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    os.environ.setdefault("NO_TORCH_COMPILE", "1")
    os.environ.setdefault("NO_CUDA_GRAPH", "1")

    from conftest import ServeCluster
    from deployments.checkpoint import build_checkpoint

    checkpoint = build_checkpoint(Path(tempfile.mkdtemp()) / "tiny", size="tiny")
    cluster = ServeCluster(checkpoint, Path(tempfile.mkdtemp()))
    scaling = {"min_replicas": 0, "initial_replicas": 1, "max_replicas": 1,
               "downscale_delay_s": ZERO_AFTER_S, "downscale_to_zero_delay_s": ZERO_AFTER_S}
    configs = {"serve default": {**scaling, "metrics_interval_s": 10.0}, "ours": scaling}
    urls = {}
    for index, (name, autoscaling) in enumerate(configs.items()):
        app = f"wake{index}"
        urls[name] = (cluster.deploy(app, f"/{app}", worker={"autoscaling_config": autoscaling}), app)
    interval = cluster.apps["wake1"]["deployments"][0]["autoscaling_config"].get("metrics_interval_s")
    print(f"metrics_interval_s: serve default 10, ours {interval} (from configs/demo.yaml)")
    results: dict[str, list[dict]] = {name: [] for name in configs}
    try:
        for url, _ in urls.values():  # first load of each (imports, checkpoint): not measured
            httpx.post(f"{url}/api/tts", json={"text": "warm up"}, timeout=300).raise_for_status()
        for run in range(options.runs):
            for name, (url, app) in urls.items():
                settle_at_zero(app)
                marks = cold_request(url, app)
                results[name].append(marks)
                print(f"run {run + 1} {name:>13}: " + "  ".join(f"{k} {v:5.2f}s" for k, v in marks.items()))
        warm = []
        for _ in range(3):
            started = time.perf_counter()
            httpx.post(f"{urls['ours'][0]}/api/tts", json={"text": TEXT}, timeout=300).raise_for_status()
            warm.append(time.perf_counter() - started)
    finally:
        cluster.shutdown()
    warm_s = statistics.median(warm)
    print(f"\nmedians of {options.runs} (seconds after the request was sent); a warm request takes {warm_s:.2f}s")
    for name, runs in results.items():
        for r in runs:
            r["wake_overhead"] = r["beyond_load"] - warm_s
        print(f"{name:>13}: " + "  ".join(
            f"{key} {statistics.median(r[key] for r in runs if key in r):5.2f}s"
            for key in ("decided", "running", "answered", "model_load", "wake_overhead")))
    print("wake_overhead: answered - the replica's model load - a warm request's own time "
          "(the decision and the replica's start; issue target: 3 s at most)")


if __name__ == "__main__":
    main()
