"""Ingress and HTTP proxy CPU per second of streamed audio, measured on the running service: what
one ingress core carries, Ray's transport included.

    .venv/bin/python benchmarks/ingress_service_cpu.py [--runs 3] [--streams 8]

Starts the tiny test app on a local Ray cluster (one TTSWorker replica, 8 slots), then for each
format sends `--streams` concurrent streamed `POST /v1/audio/speech` requests of a long text and
reads the CPU time (user + system, every thread) that the Ingress replica's process and Serve's
HTTP proxy process spent meanwhile, from /proc. Divided by the seconds of audio the clients
received, that is the ingress's cost per real-time stream, everything included: the handle's
transport and deserialization, FastAPI, encoding, and the proxy's HTTP work. (The in-process
route figures of benchmarks/ingress_encoding.py leave Ray out.) The worker's CPU is not counted:
it has cores of its own on a GPU node.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # conftest's ServeCluster

from speech_checks import LONG_TEXT  # noqa: E402

FORMATS = ["pcm", "wav", "mp3", "opus", "pcm", "mp3"]  # pcm and mp3 twice: early and late in the run
APP = "bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def actor_pids() -> dict[str, int]:
    import ray

    alive = [info for info in ray._private.state.actors().values() if info.get("State") == "ALIVE"]
    (ingress,) = [i["Pid"] for i in alive if i.get("ActorClassName") == f"ServeReplica:{APP}:Ingress"]
    (proxy,) = [i["Pid"] for i in alive if i.get("ActorClassName") == "ProxyActor"]
    return {"ingress": ingress, "proxy": proxy}


def audio_seconds(data: bytes, fmt: str) -> float:
    if fmt == "pcm":
        return len(data) / 2 / 24000
    with av.open(io.BytesIO(data)) as container:
        return sum(frame.samples / frame.sample_rate for frame in container.decode(audio=0))  # opus: 48 kHz


def one_stream(url: str, fmt: str, out: list) -> None:
    with httpx.stream("POST", f"{url}/v1/audio/speech", timeout=300,
                      json={"model": "tts-1", "input": LONG_TEXT, "voice": "alloy", "response_format": fmt}) as response:
        response.raise_for_status()
        out.append(b"".join(response.iter_bytes()))


def measure(url: str, fmt: str, streams: int, pids: dict[str, int]) -> dict[str, float]:
    bodies: list[bytes] = []
    started = time.monotonic()
    before = {name: process_cpu_s(pid) for name, pid in pids.items()}
    threads = [threading.Thread(target=one_stream, args=(url, fmt, bodies)) for _ in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spent = {name: process_cpu_s(pid) - before[name] for name, pid in pids.items()}
    assert len(bodies) == streams, "a stream failed"
    audio_s = sum(audio_seconds(body, fmt) for body in bodies)
    return {name: spent[name] / audio_s * 1000 for name in pids} | {"audio_s": audio_s,
                                                                  "wall_s": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--streams", type=int, default=8)
    options = parser.parse_args()
    os.environ.setdefault("NO_TORCH_COMPILE", "1")
    os.environ.setdefault("NO_CUDA_GRAPH", "1")
    from conftest import ServeCluster, wait_for_replicas
    from deployments.checkpoint import build_checkpoint

    checkpoint = build_checkpoint(Path(tempfile.mkdtemp()) / "tiny", size="tiny")
    cluster = ServeCluster(checkpoint, Path(tempfile.mkdtemp()))
    url = cluster.deploy(APP, "/", args={"max_text_chars": 5000},
                         worker={"autoscaling_config": {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 1}})
    wait_for_replicas(url, 1)
    try:
        pids = actor_pids()
        measure(url, "mp3", 2, pids)  # warm-up: imports, encoders, the model
        print(f"{options.streams} concurrent streams, {options.runs} runs each; CPU ms per second of audio "
              "(median), and the real-time streams one core carries at that cost")
        print(f"{'format':>6} {'ingress':>9} {'proxy':>7} {'both':>7} {'streams/core ingress':>21} {'with proxy':>11}")
        for fmt in FORMATS:
            runs = [measure(url, fmt, options.streams, pids) for _ in range(options.runs)]
            ingress = statistics.median(r["ingress"] for r in runs)
            proxy = statistics.median(r["proxy"] for r in runs)
            print(f"{fmt:>6} {ingress:9.2f} {proxy:7.2f} {ingress + proxy:7.2f} {1000 / ingress:21.0f} "
                  f"{1000 / (ingress + proxy):11.0f}   ({runs[0]['audio_s']:.0f} s of audio in {runs[0]['wall_s']:.1f} s)")
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
