"""Nothing internal reaches clients of the running app: no server paths, no exception text, no Ray
internals. Real requests against the real Serve app (tiny model, local Ray with logical GPUs)."""

from __future__ import annotations

import json
import re
import time

import httpx
from helpers.leaks import assert_client_safe
from test_mcp import error_text, mcp_session, run



def test_info_names_the_model_without_its_path(client, tiny_checkpoint):
    info = client.get("/api/info")
    assert info.json()["model"] == f"local/{tiny_checkpoint.name}"
    assert str(tiny_checkpoint.parent) not in info.text
    assert f"local/{tiny_checkpoint.name}" in [m["id"] for m in client.get("/v1/models").json()["data"]]


def test_voice_listings_show_ids_not_paths(client, tiny_checkpoint):
    for path in ("/api/voices", "/v1/audio/voices"):
        listing = client.get(path)
        assert listing.status_code == 200 and not re.search(r'"/|\\\\|/tmp/|/root/|/home/', listing.text), path


def status_texts(status: dict) -> str:
    """The free texts of a GPU status (it names nodes and replicas by their ids on purpose)."""
    texts = [r["error"] or "" for r in status["replicas"]] + [n.get("error") or "" for n in status["nodes"]]
    return json.dumps(texts + [status["worker_deployment"]["message"]])


def test_a_model_that_cannot_load_is_explained_without_internals(broken_url):
    """The broken app's hub is a closed port: the worker's error (with its exception class and the
    endpoint) is in its log; clients read what is wrong and what to do, on every surface."""
    tts = httpx.post(f"{broken_url}/api/tts", json={"text": "Anyone there?"}, timeout=120)
    assert tts.status_code == 503 and tts.json()["error"]["code"] == "model_unavailable"
    message = tts.json()["error"]["message"]
    assert "unavailable" in message and "retry later" in message and "model_path" in message
    assert_client_safe(message)
    ready = httpx.get(f"{broken_url}/ready", timeout=30)
    assert ready.status_code == 503 and "nonexistent-org/nonexistent-model" in ready.json()["reason"]
    assert_client_safe(ready.text)
    deadline = time.monotonic() + 60  # a bound against hangs: replicas report every second
    while not (failed := [r for r in httpx.get(f"{broken_url}/api/gpu/status", timeout=30).json()["replicas"]
                          if r["state"] == "failed"]):
        assert time.monotonic() < deadline, "the replica never reported the failed load"
        time.sleep(0.5)
    assert "model_path" in failed[0]["error"]
    assert_client_safe(status_texts(httpx.get(f"{broken_url}/api/gpu/status", timeout=30).json()))

    async def scenario():
        async with mcp_session(f"{broken_url}/mcp") as session:
            return (await session.call_tool("text_to_speech", {"text": "Anyone there?"}),
                    await session.call_tool("get_gpu_status", {}))

    spoken, status = run(scenario)
    assert "unavailable" in error_text(spoken)
    assert_client_safe(error_text(spoken))
    assert not status.isError and status.structuredContent["replicas"][0]["state"] == "failed"
    assert_client_safe(status_texts(status.structuredContent))
