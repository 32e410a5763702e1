"""The voice-cloning model served beside the 1.6B-style one (as configs/demo.yaml does): a request
chooses it with `model=`, names a clip as its voice, and speaks through /v1/audio/speech and the
Kyutai WebSocket; a clip uploaded as multipart speaks through /api/tts on whichever ingress replica
and is gone after DELETE, its cached prompt dropped on every replica. The app is conftest's
`clone_url` (workers on CPU, two ingress
replicas, two replicas of the cloning model). What the audio is (moshi's reference) is
tests/engine/test_clone_engine.py's."""

from __future__ import annotations

import asyncio

from urllib.parse import unquote

import httpx
import pytest
from helpers.clips import audio_file, tone

CLIP = "clips/noise.wav"


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


def _uploaded_pcm(voice_id: str):
    """The voice's prompt as the application's store actor holds it (asked from this process)."""
    from serve_app.service.shared_voices import VoiceStoreClient
    from serve_app.service.voice_store import ANONYMOUS

    async def read():
        store = VoiceStoreClient.shared("clone", "", 20, 10**9)  # quotas as the app's settings say
        record = await store.fetch(ANONYMOUS, voice_id)
        return None if record is None else store.pcm(record)

    return asyncio.run(read())


def test_an_uploaded_clip_speaks_on_every_ingress_and_is_gone_everywhere_after_delete(clone_url):
    from deployments.protocol import clip_prompt_key
    from serve_app.service.cluster import ClusterView

    upload = {"files": {"file": ("me.wav", audio_file(tone(4.0, rate=16000), rate=16000), "audio/wav")},
              "data": {"name": "Me", "consent": "I am the speaker"}}
    created = httpx.post(f"{clone_url}/api/voices", **upload, timeout=60)
    assert created.status_code == 201, created.text
    voice = created.json()["id"]
    assert created.json()["model"] == "clone"
    # Two ingress replicas, one store (the app's actor): each of these requests may reach either.
    for _ in range(4):
        listing = httpx.get(f"{clone_url}/api/voices", params={"model": "clone"}, timeout=30).json()
        assert [v["id"] for v in listing["uploaded"]] == [voice]
    pcm = _uploaded_pcm(voice)
    assert pcm is not None and pcm.shape == (4 * 24000,)
    spoken = httpx.post(f"{clone_url}/api/tts", json={"text": "Hello there.", "voice": voice, "format": "pcm"},
                        timeout=120)
    assert spoken.status_code == 200 and len(spoken.content) > 0 and unquote(spoken.headers["X-TTS-Voice"]) == voice
    # The delete's broadcast: every replica of the cloning model answers, the one that spoke had the prompt.
    dropped = asyncio.run(ClusterView("clone", ["TTSWorker", "TTSWorker_clone"]).forget_clip(
        "TTSWorker_clone", clip_prompt_key(pcm)))
    assert dropped["requested"] == 2 and not dropped["pending"]
    assert sorted(r["result"] for r in dropped["results"]) == ["dropped", "not cached"]
    assert httpx.delete(f"{clone_url}/api/voices/{voice}", timeout=30).json() == {"id": voice, "deleted": True}
    for _ in range(2):  # whichever ingress replica answers
        again = httpx.delete(f"{clone_url}/api/voices/{voice}", timeout=30)
        assert again.status_code == 404 and again.json()["error"]["code"] == "voice_not_found"
        gone = httpx.post(f"{clone_url}/api/tts", json={"text": "Hi.", "voice": voice}, timeout=60)
        assert gone.status_code == 400 and gone.json()["error"]["code"] == "unknown_voice"
    assert _uploaded_pcm(voice) is None


def test_the_store_actor_refuses_past_a_quota_in_the_error_shape(serve_cluster, tmp_path):
    """A refusal inside the store actor reaches the ingress as its APIError (plain data across Ray)."""
    import ray

    from serve_app.errors import APIError
    from serve_app.service.shared_voices import VoiceStoreClient, get_store_actor

    store = VoiceStoreClient.shared("quota-test", str(tmp_path), 1, 10**9)

    async def add_two():
        first, created = await store.add("owner", "one", "clone", "yes", tone(3.0))
        with pytest.raises(APIError) as refused:
            await store.add("owner", "two", "clone", "yes", tone(3.0, hz=330.0))
        return first, created, refused.value

    try:
        first, created, refused = asyncio.run(add_two())
    finally:
        ray.kill(get_store_actor("quota-test", str(tmp_path), 1, 10**9))
    assert created and first.name == "one" and (tmp_path / "voices" / f"{first.id[5:]}.json").exists()
    assert (refused.status, refused.code) == (403, "voice_quota")
