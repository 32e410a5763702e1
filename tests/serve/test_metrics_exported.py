"""On the real app, what the ingress encoded reaches Ray's Prometheus endpoint (serve_app/audio/meter.py)."""

from __future__ import annotations

import re
import time


def exported_audio_s(fmt: str) -> float:
    """ray_tts_ingress_encoded_audio_seconds_total of the main app's ingress for `fmt`, as Ray's
    Prometheus endpoint on this node shows it (0 before the first export)."""
    import httpx
    import ray

    port = ray._private.worker.global_worker.node.metrics_export_port
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    pattern = re.compile(r'^ray_tts_ingress_encoded_audio_seconds_total\{(.*)\} (\S+)$')
    total = 0.0
    for line in text.splitlines():
        match = pattern.match(line)
        if match and f'format="{fmt}"' in match.group(1) and 'application="tts"' in match.group(1):
            total += float(match.group(2))
    return total


def test_the_ingress_exports_what_it_encoded_through_rays_metrics_endpoint(client):
    before = exported_audio_s("flac")
    response = client.post("/api/tts", json={"text": "Counted by the ingress.", "format": "flac"})
    assert response.status_code == 200
    seconds = float(response.headers["X-TTS-Duration"])
    deadline = time.monotonic() + 60  # Ray exports a worker's metrics every few seconds
    while exported_audio_s("flac") < before + 0.99 * seconds:
        assert time.monotonic() < deadline, "the ingress's encoding counters never reached Prometheus"
        time.sleep(1)
