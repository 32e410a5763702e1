"""The voice-cloning model served beside the 1.6B-style one (as configs/demo.yaml does): a request
chooses it with `model=`, names a clip as its voice, and speaks through /v1/audio/speech and the
Kyutai WebSocket. Its worker runs on CPU (num_gpus 0), so the shared cluster's logical GPUs stay
with the main app. What the audio is (moshi's reference) is tests/engine/test_clone_engine.py's."""

from __future__ import annotations

import asyncio
import copy

import httpx
import pytest
from conftest import DUO_WORKER, wait_for_replicas

CLIP = "clips/noise.wav"


@pytest.fixture(scope="module")
def clone_url(serve_cluster, base_url, tiny_checkpoint, tiny_clone_checkpoint):
    models = {"default": {}, "clone": {"model_path": str(tiny_clone_checkpoint), "default_voice": "clips/low_hum.wav"}}
    app = serve_cluster.app_config("clone", "/clone", worker=DUO_WORKER, args={"models": models})
    worker = next(d for d in app["deployments"] if d["name"] == "TTSWorker")
    app["deployments"].append({**copy.deepcopy(worker), "name": "TTSWorker_clone"})
    url = serve_cluster.deploy_app(app)
    wait_for_replicas(url, 2)
    yield url
    serve_cluster.remove("clone")


def test_a_clip_voice_speaks_through_openai_speech_and_the_websocket(clone_url):
    import msgpack
    import websockets
    from test_websocket import receive_all, ws_url

    listing = httpx.get(f"{clone_url}/api/voices", params={"model": "clone"}, timeout=30).json()
    assert CLIP in [v["id"] for v in listing["voices"]] and listing["model"] == "clone"
    info = httpx.get(f"{clone_url}/api/info", timeout=30).json()
    assert {m["name"]: m["kind"] for m in info["models"]} == {"default": "tts-embedding-voices",
                                                              "clone": "tts-audio-prompt"}
    spoken = httpx.post(f"{clone_url}/v1/audio/speech", json={"input": "Good morning.", "model": "clone", "voice": CLIP,
                                                               "response_format": "pcm"}, timeout=120)
    assert spoken.status_code == 200 and len(spoken.content) > 0
    # A clip is the cloning model's voice: the 1.6B-style model does not have it.
    refused = httpx.post(f"{clone_url}/api/tts", json={"text": "Hi.", "voice": CLIP}, timeout=60)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unknown_voice"

    async def speak() -> list:
        async with websockets.connect(ws_url(clone_url, model="clone", voice=CLIP)) as ws:
            await ws.send(msgpack.packb({"type": "Text", "text": "Hello there, my friend."}))
            await ws.send(msgpack.packb({"type": "Eos"}))
            return await receive_all(ws)

    messages = [msgpack.unpackb(m) for m in asyncio.run(speak())]
    assert messages[0] == {"type": "Ready"} and any(m["type"] == "Audio" for m in messages)
    assert [m["text"] for m in messages if m["type"] == "Text"] == ["Hello", "there,", "my", "friend."]
