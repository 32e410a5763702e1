"""First audio through the service: a preset 1.6B voice, a cached cloned voice and a first-use
cloned voice, side by side in one run.

    .venv/bin/python benchmarks/clone_service_first_audio.py     # both tiny models on a local Ray cluster, CPU
    .venv/bin/python benchmarks/clone_service_first_audio.py --url http://127.0.0.1:8000 \\
        --clone-model clone --clips unmute-prod-website/default_voice.wav a.wav b.wav ...   # a running service

The clock starts when `POST /api/tts` (`stream: true`, raw PCM) is sent and stops at the first
audio byte: HTTP, the ingress, the worker's queue, the engine and the encoder together. Cases, at
cfg 1 and at each model's default (2.0):
- a preset 1.6B voice (the default model and its default voice);
- a cached cloned voice (the first clip, spoken once before it is timed);
- a first-use cloned voice: each run a clip the replica has not heard yet (so give `--clips` at
  least 1 + 2 x `--runs` clips), whose prompt is encoded and then heard in its row.
While they run, `--busy` streams per model speak a long text (paced to real time, as a listener's
stream is), so every case meets the same load. Started locally, the app is the demo's two-model
configuration (configs/demo.yaml, 4 rows per worker, one worker per model) on the tiny
random-weight checkpoints, whose audio is noise and whose words are stretched to moshi's maximum
padding: compare the cases with each other, not with a real model's durations.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # conftest's ServeCluster

TEXT = "Good morning, how are you?"
LONG = " ".join(["The quick brown fox jumps over the lazy dog."] * 20)


def first_audio_s(client: httpx.Client, body: dict) -> float:
    """Seconds from sending the request to its first audio byte (the rest is read and dropped)."""
    started = time.perf_counter()
    first = None
    with client.stream("POST", "/api/tts", json={"text": TEXT, "format": "pcm", "stream": True, **body}) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            if chunk and first is None:
                first = time.perf_counter() - started
    return first if first is not None else time.perf_counter() - started


def busy_streams(url: str, bodies: list[dict], stop: threading.Event) -> list[threading.Thread]:
    """One thread per body, each keeping a long paced stream open (a new one when it ends)."""
    def speak(body: dict) -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            while not stop.is_set():
                with client.stream("POST", "/api/tts", json={"text": LONG, "format": "pcm", "stream": True,
                                                             **body}) as response:
                    for _ in response.iter_raw():
                        if stop.is_set():
                            break

    threads = [threading.Thread(target=speak, args=(body,), daemon=True) for body in bodies]
    for thread in threads:
        thread.start()
    return threads


def measure(url: str, runs: int, busy: int, clone_model: str, preset_model: str | None, clips: list[str]) -> None:
    if len(clips) < 1 + 2 * runs:
        raise SystemExit(f"{runs} runs at 2 cfgs need {1 + 2 * runs} clips (one cached, the others heard once)")
    preset = {"model": preset_model} if preset_model else {}
    cached, fresh = clips[0], iter(clips[1:])
    with httpx.Client(base_url=url, timeout=600) as client:
        for cfg in (1.0, 2.0):  # warm: each model's path at each cfg, the cached clip heard
            first_audio_s(client, {**preset, "cfg_coef": cfg})
            first_audio_s(client, {"model": clone_model, "voice": cached, "cfg_coef": cfg})
        stop = threading.Event()
        threads = busy_streams(url, [preset, {"model": clone_model, "voice": cached}] * busy, stop)
        time.sleep(2.0)  # the busy rows are speaking
        print(f"{url}: {busy} busy streams per model; median of {runs} runs; first audio byte of POST /api/tts")
        print(f"{'case':<24} {'cfg':>4} {'first audio ms':>15} {'x preset':>9}")
        try:
            for cfg in (1.0, 2.0):
                cases = {
                    "preset 1.6B voice": lambda: {**preset, "cfg_coef": cfg},
                    "cached cloned voice": lambda: {"model": clone_model, "voice": cached, "cfg_coef": cfg},
                    "first-use cloned voice": lambda: {"model": clone_model, "voice": next(fresh), "cfg_coef": cfg},
                }
                base = None
                for name, body in cases.items():
                    seconds = statistics.median(first_audio_s(client, body()) for _ in range(runs))
                    base = base or seconds
                    print(f"{name:<24} {cfg:>4g} {seconds * 1e3:>15.0f} {seconds / base:>9.2f}")
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)


def local_app():
    """(url, cluster): the demo's two-model app on the tiny checkpoints, one replica per model
    with 4 rows."""
    os.environ.setdefault("NO_TORCH_COMPILE", "1")
    os.environ.setdefault("NO_CUDA_GRAPH", "1")
    from conftest import DUO_WORKER, ServeCluster, wait_for_replicas
    from deployments.checkpoint import build_checkpoint

    folder = Path(tempfile.mkdtemp())
    checkpoint = build_checkpoint(folder / "tiny", size="tiny")
    clone = build_checkpoint(folder / "tiny-clone", size="tiny-clone")
    cluster = ServeCluster(checkpoint, Path(tempfile.mkdtemp()))
    models = {"default": {}, "clone": {"model_path": str(clone), "default_voice": "clips/low_hum.wav"}}
    # 4 rows per model (not `auto`: a measured request must never wait behind the busy streams).
    worker = {**DUO_WORKER, "user_config": {"max_batch_size": 4}}
    app = cluster.app_config("bench", "/", worker=worker, args={"models": models})
    worker = next(d for d in app["deployments"] if d["name"] == "TTSWorker")
    app["deployments"].append({**copy.deepcopy(worker), "name": "TTSWorker_clone"})
    url = cluster.deploy_app(app)
    wait_for_replicas(url, 2)
    return url, cluster


def main() -> None:
    from deployments.checkpoint import CLIP_NAMES

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running service with a cloning model; default: start the tiny app locally")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--busy", type=int, default=1, help="busy streams per model while measuring")
    parser.add_argument("--clone-model", default="clone")
    parser.add_argument("--preset-model", help="the 1.6B model's name (default: the default model)")
    parser.add_argument("--clips", nargs="+", default=[name for name, _, _ in CLIP_NAMES],
                        help="clip voices of the cloning model: the first is the cached one")
    options = parser.parse_args()
    cluster = None
    url = options.url.rstrip("/") if options.url else None
    if url is None:
        url, cluster = local_app()
    try:
        measure(url, options.runs, options.busy, options.clone_model, options.preset_model, options.clips)
    finally:
        if cluster is not None:
            cluster.shutdown()


if __name__ == "__main__":
    main()
