"""What clients that stop reading cost: resident memory of the TTSWorker replica, the Ingress
replica and Serve's HTTP proxy while stalled clients hold long streams open (issue 25).

    .venv/bin/python benchmarks/stalled_clients.py [--runs 1] [--url URL] [--clients 8] [--hold-s 60]
                                                   [--engine fake-tts]

Starts the demo app with the tiny test model on a local Ray cluster (one TTSWorker replica; or
measures the service at `--url`, run on one of its Ray nodes), warms it up with one short request,
then opens `--clients` clients that each ask for a 4,300-character text (half over Kyutai's
WebSocket, half `POST /v1/audio/speech` with `pcm`) and read nothing while keeping their
connections open (tests/helpers/stalled_clients.py). It samples each process's RSS every second
for `--hold-s`, closes the clients, and samples again `--after-s` later. Printed per process:
before, peak, after (MB), and the worker's model steps during the hold (paced rows cost none).

On this 2-core machine the tiny model speaks 8 rows at only ~1.4x real time, so a row barely gets
ahead of its clock; `--engine fake-tts` (the scripted fake, thousands of times faster than real
time) stands in for a GPU that outruns its clients, which is where the audio piles up.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers.stalled_clients import close_all, stalled_post, stalled_websocket  # noqa: E402

SENTENCE = "The quick brown fox jumps over the lazy dog while the river runs on to the distant sea. "
TEXT = (SENTENCE * 60)[:4300].rsplit(" ", 1)[0] + "."
APP_ARGS = {"max_text_chars": 5000, "max_audio_s": 1800}


def rss_mb(pid: int, kind: str = "VmRSS") -> float:
    """Resident memory of a process, MB: all of it (VmRSS), or its anonymous pages (RssAnon: heaps),
    or its shared memory (RssShmem: Ray's object store, mapped into every worker)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{kind}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def actors() -> dict[str, dict]:
    """The worker replica, the ingress replica and the HTTP proxy on this node (Ray's actor info)."""
    import ray

    here = ray.get_runtime_context().get_node_id()
    alive = [info for info in ray._private.state.actors().values()
             if info.get("State") == "ALIVE" and info["Address"]["NodeID"] == here]
    found = {}
    for name, match in (("worker", lambda c: c.endswith(":TTSWorker")), ("ingress", lambda c: c.endswith(":Ingress")),
                        ("proxy", lambda c: c == "ProxyActor")):
        infos = [info for info in alive if match(info.get("ActorClassName", ""))]
        assert infos, f"no {name} process on this node"
        found[name] = infos[0]
    return found


def _python_heap(_actor, start: bool) -> float:
    """Runs inside the actor's process: MB that Python objects hold there after a full collection
    (tracemalloc, started by the first call)."""
    import gc
    import tracemalloc

    if start:
        tracemalloc.start()
    gc.collect()
    return tracemalloc.get_traced_memory()[0] / 2**20


def _trim(_actor) -> bool:
    """Runs inside the actor's process: glibc gives its free pages back to the kernel, as the worker
    does by itself once idle (the project is installed in the venv every Ray process runs)."""
    from deployments.engine.heap import release_free_heap

    return release_free_heap()


def probe(infos: dict[str, dict], fn, *args) -> dict:
    """`fn(actor, *args)` in each process (Ray's `__ray_call__`), keyed like `infos`."""
    import ray
    from ray.serve._private.constants import SERVE_NAMESPACE

    handles = {name: ray.get_actor(info["Name"], namespace=SERVE_NAMESPACE) for name, info in infos.items()}
    return {name: ray.get(handle.__ray_call__.remote(fn, *args), timeout=60) for name, handle in handles.items()}


def worker_steps(url: str) -> int:
    replicas = httpx.get(f"{url}/api/gpu/status", timeout=30).json()["replicas"]
    return sum(r.get("steps") or 0 for r in replicas)


def one_run(url: str, clients: int, hold_s: float, after_s: float, diagnose: bool) -> None:
    infos = actors()
    pids = {name: info["Pid"] for name, info in infos.items()}
    httpx.post(f"{url}/v1/audio/speech", json={"input": "Warming up.", "response_format": "pcm"}, timeout=300)
    time.sleep(3)
    heap = {"before": probe(infos, _python_heap, True)} if diagnose else {}
    kinds = {kind: {name: rss_mb(pid, kind) for name, pid in pids.items()} for kind in ("RssAnon", "RssShmem")}
    before = {name: rss_mb(pid) for name, pid in pids.items()}
    steps_before = worker_steps(url)
    sockets = [stalled_websocket(url, TEXT) if i % 2 == 0 else
               stalled_post(url, "/v1/audio/speech", {"input": TEXT, "response_format": "pcm"})
               for i in range(clients)]
    peak = dict(before)
    started = time.monotonic()
    while time.monotonic() - started < hold_s:
        time.sleep(1)
        for name, pid in pids.items():
            peak[name] = max(peak[name], rss_mb(pid))
    steps_held = worker_steps(url) - steps_before
    if diagnose:
        heap["held"] = probe(infos, _python_heap, False)
    close_all(sockets)
    time.sleep(after_s)
    after = {name: rss_mb(pid) for name, pid in pids.items()}
    print(f"{clients} stalled clients ({clients - clients // 2} WebSocket, {clients // 2} /v1/audio/speech pcm), "
          f"{len(TEXT)} characters each, held {hold_s:g} s, measured {after_s:g} s after they left:")
    print(f"{'process':<10}{'before MB':>11}{'peak MB':>10}{'growth':>9}{'after MB':>10}{'held':>8}")
    for name in pids:
        print(f"{name:<10}{before[name]:>11.0f}{peak[name]:>10.0f}{peak[name] - before[name]:>+9.0f}"
              f"{after[name]:>10.0f}{after[name] - before[name]:>+8.0f}")
    together = sum(peak[n] - before[n] for n in ("worker", "ingress"))
    print(f"worker + ingress peak growth: {together:+.0f} MB; model steps during the hold: {steps_held} "
          f"({steps_held / hold_s:.1f}/s; real time is 12.5/s)")
    if diagnose:
        heap["after"] = probe(infos, _python_heap, False)
        probe(infos, _trim)
        trimmed = {name: rss_mb(pid) for name, pid in pids.items()}
        kinds_after = {kind: {name: rss_mb(pid, kind) for name, pid in pids.items()} for kind in kinds}
        print("Python objects (tracemalloc after gc.collect, MB) before / end of hold / after; RSS after malloc_trim(0):")
        for name in pids:
            print(f"{name:<10}{heap['before'][name]:>8.1f}{heap['held'][name]:>8.1f}{heap['after'][name]:>8.1f}"
                  f"   RSS {after[name]:.0f} -> {trimmed[name]:.0f} MB ({trimmed[name] - before[name]:+.0f} vs before; "
                  + ", ".join(f"{kind} {kinds_after[kind][name] - kinds[kind][name]:+.0f}" for kind in kinds) + ")")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--hold-s", type=float, default=60.0)
    parser.add_argument("--after-s", type=float, default=15.0)
    parser.add_argument("--engine", choices=["fake-tts"], help="a scripted fake instead of the tiny model")
    parser.add_argument("--diagnose", action="store_true",
                        help="also trace Python objects in each process (tracemalloc) and trim glibc's heap after")
    options, rest = parser.parse_known_args()
    sys.argv = [sys.argv[0], *rest]
    import local_app

    local_app.run(lambda url, runs: [one_run(url, options.clients, options.hold_s, options.after_s, options.diagnose)
                                     for _ in range(runs)],
                  __doc__.split("\n\n")[0], default_runs=1,
                  app_args={**APP_ARGS, **({"test_engine": options.engine} if options.engine else {})})


if __name__ == "__main__":
    main()
