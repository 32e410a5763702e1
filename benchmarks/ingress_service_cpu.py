"""Ingress and HTTP proxy CPU per second of streamed audio, measured on the running service: what
one ingress core carries, Ray's transport included.

    .venv/bin/python benchmarks/ingress_service_cpu.py [--runs 3] [--url URL]

Starts the tiny test app on a local Ray cluster (one TTSWorker replica, 8 slots; or measures the
service at `--url`, run on one of its Ray nodes), then for each format sends 8 concurrent streamed `POST /v1/audio/speech` requests of a long text and
reads the CPU time (user + system, every thread) that the Ingress replica's process and Serve's
HTTP proxy process spent meanwhile, from /proc. Divided by the seconds of audio the clients
received, that is the ingress's cost per real-time stream, everything included: the handle's
transport and deserialization, FastAPI, encoding, and the proxy's HTTP work. (The in-process
route figures of benchmarks/ingress_encoding.py leave Ray out.) The worker's CPU is not counted:
it has cores of its own on a GPU node.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import av
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # conftest's ServeCluster
sys.path.insert(0, str(Path(__file__).resolve().parent))

import local_app  # noqa: E402
from speech_checks import LONG_TEXT  # noqa: E402

FORMATS = ["pcm", "wav", "mp3", "opus", "pcm", "mp3"]  # pcm and mp3 twice: early and late in the run
APP = "bench"
STREAMS = 8
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def actor_pids() -> dict[str, list[int]]:
    """The Ingress replicas' and HTTP proxies' processes on this node (what /proc can read)."""
    import ray

    here = ray.get_runtime_context().get_node_id()
    alive = [info for info in ray._private.state.actors().values()
             if info.get("State") == "ALIVE" and info["Address"]["NodeID"] == here]
    pids = {"ingress": [i["Pid"] for i in alive if i.get("ActorClassName", "").endswith(":Ingress")],
            "proxy": [i["Pid"] for i in alive if i.get("ActorClassName") == "ProxyActor"]}
    assert all(pids.values()), f"no Ingress replica or proxy on this node: {pids}"
    return pids


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


def measure(url: str, fmt: str, streams: int, pids: dict[str, list[int]]) -> dict[str, float]:
    bodies: list[bytes] = []
    started = time.monotonic()
    before = {name: sum(map(process_cpu_s, group)) for name, group in pids.items()}
    threads = [threading.Thread(target=one_stream, args=(url, fmt, bodies)) for _ in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spent = {name: sum(map(process_cpu_s, group)) - before[name] for name, group in pids.items()}
    assert len(bodies) == streams, "a stream failed"
    audio_s = sum(audio_seconds(body, fmt) for body in bodies)
    return {name: spent[name] / audio_s * 1000 for name in pids} | {"audio_s": audio_s,
                                                                  "wall_s": time.monotonic() - started}


def report(url: str, runs: int) -> None:
    import ray

    if not ray.is_initialized():  # --url: run this on a node of that service's Ray cluster
        ray.init(address="auto", log_to_driver=False)
    pids = actor_pids()
    measure(url, "mp3", 2, pids)  # warm-up: imports, encoders, the model
    print(f"{STREAMS} concurrent streams, {runs} runs each; CPU ms per second of audio "
          "(median), and the real-time streams one core carries at that cost")
    print(f"{'format':>6} {'ingress':>9} {'proxy':>7} {'both':>7} {'streams/core ingress':>21} {'with proxy':>11}")
    for fmt in FORMATS:
        results = [measure(url, fmt, STREAMS, pids) for _ in range(runs)]
        ingress = statistics.median(r["ingress"] for r in results)
        proxy = statistics.median(r["proxy"] for r in results)
        print(f"{fmt:>6} {ingress:9.2f} {proxy:7.2f} {ingress + proxy:7.2f} {1000 / ingress:21.0f} "
              f"{1000 / (ingress + proxy):11.0f}   ({results[0]['audio_s']:.0f} s of audio in {results[0]['wall_s']:.1f} s)")


if __name__ == "__main__":
    local_app.run(report, __doc__.split("\n")[0], default_runs=3, app_args={"max_text_chars": 5000}, app_name=APP)
