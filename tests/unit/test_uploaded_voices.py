"""Voices from uploaded clips (issue 20), in process: the real ingress app over the fake engine
(tests/helpers/inprocess_app.py), an app of two models (`first` 1.6B-style, `clone` the 0.75B).
Upload -> speak -> delete through REST, the OpenAI SDK, the WebSocket and MCP; the clip's prompt
reaches the worker with the request; per-key privacy; quotas; uploads off without keys; bad clips
refused; the store read back by a new ingress (a restart). That the clip really speaks through the
cloning engine is tests/serve/test_clone_served.py's."""

from __future__ import annotations

import base64
import json

import msgpack
import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from deployments.protocol import SAMPLE_RATE
from helpers.clips import audio_file, tone
from helpers.inprocess_app import build_app, cloning_models, mcp_tool
from serve_app.service.voice_store import VoiceStore, owner_of

KEYS = ["key-a", "key-b"]
A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}
CLIP = audio_file(tone(4.0, rate=16000), rate=16000)  # 4 s of sound, any rate: resampled to 24 kHz


def make_client(root, **settings):
    app = build_app(root, models=cloning_models(root), default_model="first", **settings)
    return TestClient(app, base_url="http://localhost:8000")


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path, api_keys=KEYS, voice_store_max_voices_per_key=2) as test_client:
        yield test_client


def upload(client, headers=A, data=CLIP, name="Reader", **fields):
    return client.post("/api/voices", headers=headers, files={"file": ("reader.wav", data, "audio/wav")},
                       data={"name": name, "consent": "the reader agreed in writing", **fields})


def mcp_call(client, name, arguments, headers=A) -> dict:
    """An MCP tool's result, called with an API key (A) unless told otherwise."""
    return mcp_tool(client, name, arguments, headers)


def clone_requests(client):
    return client.app.state.ctx.models["clone"].workers.handle.requests


def test_upload_speak_delete_over_rest(client):
    created = upload(client)
    assert created.status_code == 201, created.text
    voice = created.json()
    assert voice["id"].startswith("clip:") and len(voice["id"]) == 5 + 16
    assert voice["model"] == "clone" and voice["name"] == "Reader" and voice["duration_s"] == pytest.approx(4.0, abs=0.05)
    listing = client.get("/api/voices?model=clone", headers=A).json()
    assert [v["id"] for v in listing["uploaded"]] == [voice["id"]]
    assert "CC-BY 4.0" in listing["attribution"] and "kyutai/tts-0.75b-en-public" in listing["attribution"]
    assert client.get("/api/voices?model=first", headers=A).json()["uploaded"] == []
    # No model named: an uploaded voice speaks with its own model; its prompt travels with the request.
    spoken = client.post("/api/tts", headers=A, json={"text": "Hello there.", "voice": voice["id"], "format": "pcm"})
    assert spoken.status_code == 200, spoken.text
    sent = clone_requests(client)[-1]
    assert sent.voice == voice["id"] and sent.voice_clip.dtype == np.float32
    assert sent.voice_clip.shape == (int(4.0 * SAMPLE_RATE),) and 0.25 < np.abs(sent.voice_clip).max() < 0.35
    # Asked of the other model, it is not one of its voices.
    other = client.post("/api/tts", headers=A, json={"text": "Hi.", "voice": voice["id"], "model": "first"})
    assert other.status_code == 400 and other.json()["error"]["code"] == "unknown_voice"
    assert client.delete(f"/api/voices/{voice['id']}", headers=A).json() == {"id": voice["id"], "deleted": True}
    gone = client.post("/api/tts", headers=A, json={"text": "Hi.", "voice": voice["id"]})
    assert gone.status_code == 400 and gone.json()["error"]["code"] == "unknown_voice"
    assert client.delete(f"/api/voices/{voice['id']}", headers=A).status_code == 404
    assert client.get("/api/voices?model=clone", headers=A).json()["uploaded"] == []


def test_another_key_neither_sees_speaks_nor_deletes_it(client):
    voice = upload(client).json()
    assert client.get("/api/voices?model=clone", headers=B).json()["uploaded"] == []
    spoken = client.post("/api/tts", headers=B, json={"text": "Hi.", "voice": voice["id"]})
    assert spoken.status_code == 400 and spoken.json()["error"]["code"] == "unknown_voice"
    refused = client.delete(f"/api/voices/{voice['id']}", headers=B)
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "voice_not_found"
    # The same clip uploaded by B is B's own voice, another id; A's is still there.
    theirs = upload(client, headers=B).json()
    assert theirs["id"] != voice["id"]
    assert [v["id"] for v in client.get("/api/voices?model=clone", headers=A).json()["uploaded"]] == [voice["id"]]
    # The owner is the key's hash, never the key.
    stored = (client.app.state.ctx.voice_store.store.voices / f"{voice['id'][5:]}.json").read_text()
    assert "key-a" not in stored and json.loads(stored)["owner"] == owner_of("key-a")


def test_quotas_voices_per_key_and_bytes_in_all(client, tmp_path):
    assert upload(client).status_code == 201
    assert upload(client).status_code == 201  # the same clip again: the voice it already has
    assert upload(client, data=audio_file(tone(4.0, hz=330.0))).status_code == 201
    third = upload(client, data=audio_file(tone(4.0, hz=440.0)))
    assert third.status_code == 403 and third.json()["error"]["code"] == "voice_quota"
    assert upload(client, headers=B, data=audio_file(tone(4.0, hz=440.0))).status_code == 201  # B's own quota
    full = VoiceStore(tmp_path / "small", max_voices_per_key=10, max_bytes=5 * SAMPLE_RATE * 4)
    full.add("o", "one", "clone", "yes", tone(4.0))
    with pytest.raises(Exception) as refused:
        full.add("o", "two", "clone", "yes", tone(4.0, hz=330.0))
    assert getattr(refused.value, "code", None) == "voice_store_full"


def test_bad_clips_and_fields_are_refused_in_the_error_shape(client):
    cases = [(b"not audio at all" * 100, 415, "clip_not_audio"),
             (audio_file(tone(1.0)), 422, "clip_too_short"),
             (audio_file(np.zeros(4 * 24000, np.float32)), 422, "clip_silent")]
    for data, status, code in cases:
        answer = upload(client, data=data)
        assert answer.status_code == status and answer.json()["error"]["code"] == code, answer.text
    no_consent = client.post("/api/voices", headers=A, files={"file": ("a.wav", CLIP)}, data={"name": "x"})
    assert no_consent.status_code == 422
    wrong_model = upload(client, model="first")
    assert wrong_model.status_code == 400 and wrong_model.json()["error"]["code"] == "wrong_model_kind"
    as_json = client.post("/api/voices", headers=A, json={"name": "x"})
    assert as_json.status_code == 415
    assert client.get("/api/voices?model=clone", headers=A).json()["uploaded"] == []


def test_uploads_are_off_without_keys_unless_allowed(tmp_path, client):
    # The listing says so up front (the page's panel reads it), as MCP's list_voices does.
    with make_client(tmp_path / "closed") as closed:
        assert closed.get("/api/voices?model=clone").json()["uploads_allowed"] is False
        listed = mcp_call(closed, "list_voices", {"model": "clone"}, headers={})["structuredContent"]
        assert listed["uploads_allowed"] is False
        refused = upload(closed, headers={})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "uploads_disabled"
    with make_client(tmp_path / "open", allow_anonymous_uploads=True) as open_:
        assert open_.get("/api/voices?model=clone").json()["uploads_allowed"] is True
        assert upload(open_, headers={}).status_code == 201
    assert client.get("/api/voices?model=clone", headers=A).json()["uploads_allowed"] is True  # API keys


def test_voices_survive_a_restart_of_the_ingress(tmp_path):
    with make_client(tmp_path, api_keys=KEYS) as first:
        voice = upload(first).json()
    with make_client(tmp_path, api_keys=KEYS) as again:  # a new ingress over the same store folder
        assert [v["id"] for v in again.get("/api/voices?model=clone", headers=A).json()["uploaded"]] == [voice["id"]]
        assert again.post("/api/tts", headers=A, json={"text": "Hi.", "voice": voice["id"]}).status_code == 200


def test_openai_sdk_creates_speaks_with_and_deletes_a_voice(client):
    openai = pytest.importorskip("openai")
    http = pytest.importorskip("httpx2")  # the SDK's HTTP client

    class ToTheApp(http.BaseTransport):
        """The SDK's requests handed to the app in process (through the test client)."""

        def handle_request(self, request):
            answer = client.request(request.method, str(request.url), headers=dict(request.headers),
                                    content=request.read())
            headers = [(k, v) for k, v in answer.headers.multi_items() if k.lower() != "content-encoding"]
            return http.Response(answer.status_code, headers=headers, content=answer.content)

    sdk = openai.OpenAI(api_key="key-a", base_url="http://localhost:8000/v1", max_retries=0,
                        http_client=http.Client(transport=ToTheApp()))
    voice = sdk.audio.voices.create(audio_sample=("reader.wav", CLIP, "audio/wav"),
                                    consent="cons_1234", name="Reader")
    assert voice.id.startswith("clip:") and voice.name == "Reader" and voice.type == "audio_sample"
    audio = sdk.audio.speech.create(model="tts-1", voice=voice.id, input="Hello there.", response_format="pcm")
    assert len(audio.content) > 0 and clone_requests(client)[-1].voice == voice.id
    deleted = sdk.audio.voices.delete(voice.id)
    assert deleted.deleted and deleted.id == voice.id
    with pytest.raises(openai.NotFoundError):
        sdk.audio.voices.delete(voice.id)


def test_websocket_and_mcp_speak_with_it_and_mcp_clones(client):
    voice = upload(client).json()
    with client.websocket_connect(f"/api/tts_streaming?voice={voice['id']}&format=PcmMessagePack",
                                  headers={"kyutai-api-key": "key-a"}) as ws:
        ws.send_bytes(msgpack.packb({"type": "Text", "text": "Hello there."}))
        ws.send_bytes(msgpack.packb({"type": "Eos"}))
        kinds = []
        with pytest.raises(WebSocketDisconnect) as closed:  # the session ends after its last audio
            while True:
                kinds.append(msgpack.unpackb(ws.receive_bytes())["type"])
    assert closed.value.code == 1000
    assert "Audio" in kinds and "Error" not in kinds, kinds
    assert clone_requests(client)[-1].voice == voice["id"]

    def mcp(name, arguments, headers=A):
        return mcp_call(client, name, arguments, headers)

    made = mcp("clone_voice", {"audio_base64": base64.b64encode(audio_file(tone(4.0, hz=550.0))).decode(),
                               "name": "Agent's", "consent": "recorded consent"})
    assert not made["isError"], made
    clone_id = made["structuredContent"]["id"]
    listed = mcp("list_voices", {"model": "clone"})["structuredContent"]
    assert {v["id"] for v in listed["uploaded"]} == {voice["id"], clone_id} and "CC-BY 4.0" in listed["attribution"]
    assert mcp("list_voices", {"model": "clone"}, headers=B)["structuredContent"]["uploaded"] == []
    assert not mcp("text_to_speech", {"text": "Hi.", "voice": clone_id, "save": False})["isError"]
    assert mcp("text_to_speech", {"text": "Hi.", "voice": clone_id, "save": False}, headers=B)["isError"]
    bad = mcp("clone_voice", {"audio_base64": base64.b64encode(b"noise" * 50).decode(), "name": "x", "consent": "y"})
    assert bad["isError"] and "not audio" in bad["content"][0]["text"]
