"""Per-request overhead of the Serve path, and cold start from zero replicas, measured side by side.

    .venv/bin/python benchmarks/serve_overhead.py [--requests 10]

1. The same short text synthesized by the engine in this process (no Ray) and through the service
   (HTTP -> proxy -> Ingress -> TTSWorker handle stream -> WAV), alternating, N times each.
2. The TTSWorker deployment left to scale to zero, then one cold request, then one warm request.
Uses the tiny random-weight checkpoint on CPU: the overhead figures hold for any model, the
synthesis figures do not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
TEXT = "Hello there, this is a short benchmark sentence."


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10)
    options = parser.parse_args()
    os.environ.setdefault("NO_TORCH_COMPILE", "1")
    os.environ.setdefault("NO_CUDA_GRAPH", "1")

    from conftest import ServeCluster, wait_for_replicas
    from deployments.checkpoint import build_checkpoint
    from deployments.engine.tts import TTSEngine
    from deployments.settings import EngineSettings
    from deployments.protocol import SynthesisRequest

    checkpoint = build_checkpoint(Path(tempfile.mkdtemp()) / "tiny", size="tiny")
    engine = TTSEngine(EngineSettings(model_path=str(checkpoint), n_q=8, cpu_threads=1), "cpu")
    cluster = ServeCluster(checkpoint, Path(tempfile.mkdtemp()))
    url = cluster.deploy("bench", "/", worker={
        "autoscaling_config": {"min_replicas": 0, "initial_replicas": 1, "max_replicas": 1,
                               "downscale_delay_s": 3, "downscale_to_zero_delay_s": 3}})
    wait_for_replicas(url, 1)
    try:
        with httpx.Client(base_url=url, timeout=300) as client:
            client.post("/api/tts", json={"text": "warm up"}).raise_for_status()
            engine.synthesize([SynthesisRequest(text="warm up")])
            direct, served = [], []
            for _ in range(options.requests):
                started = time.perf_counter()
                engine.synthesize([SynthesisRequest(text=TEXT)])
                direct.append(time.perf_counter() - started)
                started = time.perf_counter()
                client.post("/api/tts", json={"text": TEXT}).raise_for_status()
                served.append(time.perf_counter() - started)
            d, s = statistics.median(direct), statistics.median(served)
            print(f"engine in-process   median {d * 1000:7.1f} ms  (n={len(direct)})")
            print(f"through the service median {s * 1000:7.1f} ms  (n={len(served)})")
            print(f"per-request overhead       {(s - d) * 1000:7.1f} ms  (service/engine ratio {s / d:.2f})")

            deadline = time.monotonic() + 180
            while client.get("/api/gpu/status").json()["worker_deployment"]["replicas"].get("RUNNING", 0):
                if time.monotonic() > deadline:
                    raise SystemExit("did not scale to zero")
                time.sleep(0.5)
            time.sleep(5)  # let the old replica finish stopping: measure a settled zero
            started = time.perf_counter()
            client.post("/api/tts", json={"text": TEXT}).raise_for_status()
            cold = time.perf_counter() - started
            started = time.perf_counter()
            client.post("/api/tts", json={"text": TEXT}).raise_for_status()
            warm = time.perf_counter() - started
            print(f"cold request from zero replicas {cold * 1000:7.1f} ms, next warm request {warm * 1000:7.1f} ms "
                  f"(cold start cost {(cold - warm) * 1000:.0f} ms)")
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
