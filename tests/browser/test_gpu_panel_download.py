"""The GPU panel while a replica downloads the model: a progress bar with what, how far, how fast
and how long, in each language, beside the GPU's VRAM meter. The page's own files with canned API answers (no cluster: what
is checked is how the page draws a status, tests/engine/test_hub_downloads.py checks the status)."""

from __future__ import annotations

import json

import pytest

from helpers.browser import browser  # noqa: F401 (a fixture)
from serve_app.routes.ui import STATIC_DIR

pytestmark = [pytest.mark.browser]

ORIGIN = "http://ui.test"
DOWNLOAD = {"repo": "kyutai/tts-1.6b-en_fr", "file": "dsm_tts_1e68beda@240.safetensors", "files_done": 1,
            "files_total": 3, "bytes_done": 1_554_000_000, "bytes_total": 3_700_000_000,
            "rate_bps": 35_000_000, "eta_s": 61.3}
GPU_STATUS = {
    "nodes": [{"hostname": "gpu-node", "node_ip": "10.0.0.2", "ray_gpus": 1,
               "gpus": [{"index": 0, "name": "NVIDIA H100", "memory_total_mib": 81_559, "memory_used_mib": 70_000}]}],
    "total_gpus": 1, "total_ray_gpus": 1, "worker_deployment": {"status": "UPDATING", "message": ""},
    "replicas": [{"replica": "TTSWorker#first", "node": "gpu-node", "gpu": 0, "state": "loading", "error": None,
                  "device": None, "idle_seconds": 0.0, "active": 0, "queued": 1, "max_batch_size": 64,
                  "free_slots": 64, "download": DOWNLOAD}],
}
ANSWERS = {"/api/gpu/status": GPU_STATUS, "/api/voices": {"voices": [], "default": None},
           "/api/info": {"model": "kyutai/tts-1.6b-en_fr", "version": "test", "test_model": False}}


def serve(route) -> None:
    path = route.request.url.removeprefix(ORIGIN)
    if path in ANSWERS:
        route.fulfill(status=200, content_type="application/json", body=json.dumps(ANSWERS[path]))
    elif path == "/":
        route.fulfill(status=200, content_type="text/html", body=(STATIC_DIR / "index.html").read_text())
    elif path.startswith("/static/") and (STATIC_DIR / path.removeprefix("/static/")).is_file():
        file = STATIC_DIR / path.removeprefix("/static/")
        types = {".js": "text/javascript", ".css": "text/css"}
        route.fulfill(status=200, content_type=types.get(file.suffix, "text/plain"), body=file.read_text())
    else:
        route.fulfill(status=404, body="")


@pytest.mark.parametrize("locale, words", [("en-US", ["Downloading", "42%", "35.0 MB/s", "about 1 min 1 s left"]),
                                           ("zh-CN", ["正在下载", "42%", "35.0 MB/秒", "约剩 1 min 1 s"]),
                                           ("ja-JP", ["ダウンロード中", "42%", "35.0 MB/秒", "残り約 1 min 1 s"])])
def test_a_downloading_replica_shows_a_progress_bar_with_its_figures(browser, locale, words):
    context = browser.new_context(locale=locale)
    try:
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.route(f"{ORIGIN}/**", serve)
        page.goto(f"{ORIGIN}/")
        box = page.wait_for_selector("#gpu-list .download")
        bar = box.query_selector("[role=progressbar]")
        assert (bar.get_attribute("aria-valuenow"), bar.get_attribute("aria-valuemax")) == ("1554000000", "3700000000")
        assert box.query_selector(".fill").evaluate("e => e.style.width") == "42%"
        text = box.inner_text()
        assert DOWNLOAD["file"] in text and "1.6 GB" in text and "3.7 GB" in text
        assert all(word in text for word in words), text
        # The VRAM meter beside it (the same bar drawing): 86% used, past the 85% warning line.
        vram = page.query_selector("#gpu-list .vram [role=meter]")
        assert (vram.get_attribute("aria-valuenow"), vram.get_attribute("aria-valuemax")) == ("70000", "81559")
        assert vram.query_selector(".fill.high") is not None
        assert errors == []
    finally:
        context.close()
