"""Upload routes through the guards in process (the real app, API keys and the Host check on): a
route declared with `@upload(setting)` takes multipart with its own body limit, keeps the Origin,
Host and key checks, and its OpenAPI operation says so; /mcp has its own limit; DELETE needs no
body. The routes here are added to the app by the test (the mechanism is what is tested: any route,
any limit setting), one of them decoding the clip as a voice upload does, so that every bad clip's
refusal is seen as a client sees it."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import File, UploadFile
from fastapi.testclient import TestClient

from helpers.clips import audio_file, silence_bomb, tone
from helpers.inprocess_app import build_app
from serve_app.audio.clips import ClipLimits, decode_clip
from serve_app.security import upload

KEY = "the-key"
LIMIT = 1_000_000  # max_voice_clip_bytes here: the silence bomb (656 KB) fits, 24 s of 24 kHz WAV does not
OK = {"Host": "127.0.0.1:8000", "Authorization": f"Bearer {KEY}"}


@upload("max_voice_clip_bytes")
async def take_clip(file: UploadFile = File(...)) -> dict:
    clip = await asyncio.to_thread(decode_clip, await file.read(), ClipLimits())
    return {"duration_s": clip.duration_s, "source": clip.source}


async def drop_clip(clip_id: str) -> dict:
    return {"deleted": clip_id}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = build_app(tmp_path_factory.mktemp("app"), api_keys=[KEY], check_host_everywhere=True,
                    max_voice_clip_bytes=LIMIT)
    app.router.add_api_route("/test/clips", take_clip, methods=["POST"])
    app.router.add_api_route("/test/clips/{clip_id}", drop_clip, methods=["DELETE"])
    with TestClient(app) as test_client:
        yield test_client


def send(client, data: bytes, content_type: str = "audio/wav", headers: dict | None = None):
    return client.post("/test/clips", files={"file": ("clip.wav", data, content_type)}, headers={**OK, **(headers or {})})


def test_an_upload_route_takes_a_multipart_file_past_the_json_limit(client):
    clip = audio_file(tone(5))  # 240 KB of WAV
    assert 72 * 1024 < len(clip) < LIMIT  # more than any JSON body may be (max_text_chars 2000)
    response = send(client, clip)
    assert response.status_code == 200, response.text
    assert response.json() == {"duration_s": 5.0, "source": "wav/pcm_s16le"}


def test_an_upload_route_refuses_json_and_forms_but_not_by_the_json_rule(client):
    for content_type in ("application/json", "application/x-www-form-urlencoded", "text/plain", None):
        headers = {**OK, **({"Content-Type": content_type} if content_type else {})}
        response = client.post("/test/clips", content=b"{}", headers=headers)
        assert response.status_code == 415 and response.json()["error"]["code"] == "multipart_required"


def test_an_upload_keeps_the_origin_host_and_key_checks(client):
    clip = audio_file(tone(4), container="flac", codec="flac")
    assert send(client, clip, headers={"Origin": "https://evil.example"}).status_code == 403
    assert send(client, clip, headers={"Origin": "http://127.0.0.1:8000"}).status_code == 200  # its own page
    assert send(client, clip, headers={"Host": "evil.example"}).status_code == 421
    refused = send(client, clip, headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"


def test_an_upload_over_its_own_limit_is_413_declared_or_streamed(client):
    big = audio_file(tone(24))  # 24 kHz 16-bit WAV: 1.15 MB
    response = send(client, big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"
    assert str(LIMIT) in response.json()["error"]["message"]
    body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n" + big + b"\r\n--b--\r\n"
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))  # no Content-Length: chunked
    response = client.post("/test/clips", content=chunks,
                           headers={**OK, "Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


def test_other_routes_keep_the_json_limit_and_mcp_has_its_own(client):
    body = b'{"text": "' + b"a" * 100_000 + b'"}'  # under LIMIT, over the JSON limit
    response = client.post("/api/tts", content=body, headers={**OK, "Content-Type": "application/json"})
    assert response.status_code == 413
    mcp = {**OK, "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    # A tool call carrying a clip as base64: past the JSON limit, under mcp_max_body_bytes.
    response = client.post("/mcp", content=body, headers=mcp)
    assert response.status_code != 413 and response.status_code < 500, response.text[:200]
    response = client.post("/mcp", content=b"x" * (14 * 1024 * 1024 + 1), headers=mcp)
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


def test_delete_needs_no_body_and_a_missing_method_is_405(client):
    response = client.delete("/test/clips/abc", headers=OK)  # no body, no Content-Type
    assert response.status_code == 200 and response.json() == {"deleted": "abc"}
    assert client.delete("/test/clips/abc", headers={**OK, "Origin": "https://evil.example"}).status_code == 403
    for method, path, allowed in (("PUT", "/test/clips", "POST"), ("GET", "/test/clips", "POST"),
                                  ("POST", "/test/clips/abc", "DELETE")):
        response = client.request(method, path, headers=OK)
        assert response.status_code == 405 and response.headers["allow"] == allowed, (method, path)


@pytest.mark.parametrize("data, content_type, status, code", [
    (b"this is text, not audio\n" * 20, "audio/wav", 415, "clip_not_audio"),  # a lying part type
    (b"\x89PNG\r\n\x1a\n" + bytes(300), "image/png", 415, "clip_not_audio"),
    (audio_file(tone(2)), "audio/wav", 422, "clip_too_short"),
    (audio_file(tone(31, rate=8000), rate=8000), "audio/wav", 422, "clip_too_long"),
    (audio_file(tone(5) * 0), "audio/wav", 422, "clip_silent"),
    (silence_bomb(), "audio/flac", 422, "clip_too_long"),
])
def test_bad_clips_are_4xx_in_the_error_shape(client, data, content_type, status, code):
    response = send(client, data, content_type)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["param"] == "file" and error["request_id"]
    assert set(error) == {"message", "type", "param", "code", "request_id"}


def test_a_real_clip_sent_as_text_is_taken_for_what_it_is(client):
    response = send(client, audio_file(tone(4), container="mp3", codec="libmp3lame"), "text/plain")
    assert response.status_code == 200 and response.json()["source"] == "mp3/mp3float"


def test_the_openapi_document_states_the_upload_rules(client):
    document = client.get("/openapi.json", headers=OK).json()
    operation = document["paths"]["/test/clips"]["post"]
    assert "multipart/form-data" in operation["requestBody"]["content"]
    responses = operation["responses"]
    assert set(responses["415"]["content"]["application/json"]["examples"]) == {"multipart_required"}
    assert f"larger than {LIMIT} bytes" in responses["413"]["description"]
    assert {"401", "403", "421"} <= set(responses)  # the checks it keeps
    delete = document["paths"]["/test/clips/{clip_id}"]["delete"]["responses"]
    assert "415" not in delete and "403" in delete  # no body, the Origin rule
    json_post = document["paths"]["/api/tts"]["post"]["responses"]
    assert set(json_post["415"]["content"]["application/json"]["examples"]) == {"json_required"}
