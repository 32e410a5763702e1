"""Clients that stop reading, through Serve's real HTTP proxy on real TCP sockets (an in-process
client cannot show this: it never blocks a socket). The app (the shared cluster's `fake_url`) runs the scripted
fake engine, which makes audio far faster than real time, with a 1 s lead: its streamed rows are paced to the clock
(deployments/engine/pacing.py), so the steps the worker takes are bounded by the wall time, and
the stalled clients' rows end and free their slots while the clients still hold their sockets."""

from __future__ import annotations

import time

import httpx
import pytest
from conftest import FAKE_LEAD_S as LEAD_S
from helpers.stalled_clients import close_all, stalled_post, stalled_websocket

FRAME_S = 0.08
WORDS = 60  # the fake says a word in 2 frames: 9.6 s of audio, made at once if it were not paced
TEXT = " ".join(["word"] * WORDS)
SHORT = " ".join(["quick"] * 5)  # 0.8 s of audio: shorter than the lead
APP = "fake"


@pytest.fixture
def paced_url(fake_url):
    return fake_url


def replica(url: str) -> dict:
    return httpx.get(f"{url}/api/gpu/status", timeout=30).json()["replicas"][0]


def worker_report() -> dict:
    """The paced app's worker's own last report to its registry (every second), which also says
    how much streamed audio it made ahead of its clients' playback."""
    import ray

    from deployments.serve.registry import NAMESPACE, registry_name

    registry = ray.get_actor(registry_name(APP), namespace=NAMESPACE)
    return ray.get(registry.snapshot.remote(), timeout=30)[0]


def rss_mb(deployment: str) -> float:
    """Resident memory of the paced app's replica of `deployment` (this node's /proc)."""
    import ray

    pid = next(info["Pid"] for info in ray._private.state.actors().values()
               if info.get("State") == "ALIVE" and info.get("ActorClassName") == f"ServeReplica:{APP}:{deployment}")
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def test_stalled_clients_are_paced_and_free_their_slots_while_a_short_text_comes_at_once(paced_url):
    httpx.post(f"{paced_url}/api/tts", json={"text": "warm up"}, timeout=120).raise_for_status()
    memory = {name: rss_mb(name) for name in ("TTSWorker", "Ingress")}
    clients = [stalled_websocket(paced_url, TEXT), stalled_websocket(paced_url, TEXT),
               stalled_post(paced_url, "/v1/audio/speech", {"input": TEXT, "response_format": "pcm"}),
               stalled_post(paced_url, "/api/tts", {"text": TEXT, "stream": True, "format": "wav"})]
    try:
        # A short text, streamed, beside them: shorter than the lead, it is never held back.
        short = httpx.post(f"{paced_url}/api/tts", json={"text": SHORT, "stream": True, "format": "pcm"}, timeout=60)
        assert short.status_code == 200 and len(short.content) == 10 * 1920 * 2  # its 10 frames, whole
        time.sleep(1.5)  # a report made while they all speak
        report = worker_report()
        # The stalled streams still speak (unpaced, the fake would have made all of their 4 x 9.6 s
        # at once), each at most its lead (and a frame) ahead of its clock.
        assert report["active"] == 4, report
        assert 0 < report["buffered_audio_s"] <= 4 * (LEAD_S + FRAME_S), report
        # Their rows end when their audio is made (about 8.6 s from now), slots free, clients still stalled.
        deadline = time.monotonic() + 60
        while (status := replica(paced_url))["active"]:
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        assert status["free_slots"] == status["max_batch_size"]
        growth = {name: rss_mb(name) - before for name, before in memory.items()}
        assert sum(growth.values()) < 64, growth  # flat: what they were sent waits in Serve's proxy
    finally:
        close_all(clients)
