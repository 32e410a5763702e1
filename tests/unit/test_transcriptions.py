"""`POST /v1/audio/transcriptions` and MCP's speech_to_text in process (tests/helpers/inprocess_app.py):
the real routes, guards and error handlers over the fake speech-to-text engine (its script's words,
one every 3 frames, 2 frames late), so every response format, the SSE events and every refusal are
seen as a client sees them. The real model through Serve is tests/serve/test_transcriptions_served.py."""

from __future__ import annotations

import json
import types

import pytest
from fastapi.testclient import TestClient

from deployments.protocol import FRAME_SAMPLES, SAMPLE_RATE
from helpers.clips import audio_file, count_decoding, silence_bomb, tone
from helpers.inprocess_app import build_app
from serve_app.audio.clips import ClipRefused, decode_audio
from serve_app.errors import APIError
from serve_app.routes.mcp import _output_name

LIMIT = 1_000_000  # max_transcription_bytes here: the silence bomb (656 KB) fits, 24 s of 24 kHz WAV does not
MAX_S = 60.0
FRAMES_PER_WORD = 3  # the fake engine's
SCRIPT = ("fake", "words", "heard")
URL = "/v1/audio/transcriptions"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = build_app(tmp_path_factory.mktemp("stt"), models={"default": {}, "ears": {"model_repo": "kyutai/stt-1b-en_fr"}},
                    max_transcription_bytes=LIMIT, transcription_max_s=MAX_S)
    with TestClient(app) as test_client:
        yield test_client


def clip(seconds: float = 2.0, rate: int = 16000, container: str = "wav", codec: str = "pcm_s16le") -> bytes:
    return audio_file(tone(seconds, rate), rate=rate, container=container, codec=codec)


def transcribe(client, data: bytes, **fields):
    return client.post(URL, files={"file": ("speech.bin", data, "application/octet-stream")}, data=fields)


def expected_words(seconds: float) -> list[dict]:
    """What the fake engine hears in `seconds` of audio (resampled to 24 kHz, frame by frame)."""
    frames = -(-round(seconds * SAMPLE_RATE) // FRAME_SAMPLES)
    step_s = FRAMES_PER_WORD * FRAME_SAMPLES / SAMPLE_RATE
    starts = range(0, frames, FRAMES_PER_WORD)
    return [{"word": SCRIPT[i % 3], "start": round(i * step_s, 3),
             "end": round(min((i + 1) * step_s, frames * FRAME_SAMPLES / SAMPLE_RATE), 3)}
            for i, _ in enumerate(starts)]


def test_every_response_format_of_a_16_khz_flac(client):
    data = clip(2.0, container="flac", codec="flac")  # resampled to 24 kHz: 25 frames, 9 words
    words = expected_words(2.0)
    text = " ".join(w["word"] for w in words)
    answer = transcribe(client, data, model="whisper-1").json()
    assert answer == {"text": text, "usage": {"type": "duration", "seconds": 2.0}}
    plain = transcribe(client, data, response_format="text", prompt="Kyutai")
    assert plain.text == text + "\n" and plain.headers["x-stt-prompt"] == "ignored"
    assert plain.headers["content-type"].startswith("text/plain")
    verbose = transcribe(client, data, model="ears", language="en", response_format="verbose_json",
                         **{"timestamp_granularities[]": ["word", "segment"]}).json()
    assert verbose["words"] == [{**w, "end": pytest.approx(w["end"], abs=0.01)} for w in words]
    assert (verbose["task"], verbose["language"], verbose["duration"], verbose["text"]) == ("transcribe", "english",
                                                                                           2.0, text)
    assert " ".join(s["text"] for s in verbose["segments"]) == text and verbose["segments"][0]["start"] == 0.0
    only_words = transcribe(client, data, response_format="verbose_json", **{"timestamp_granularities[]": "word"})
    assert "segments" not in only_words.json() and len(only_words.json()["words"]) == len(words)
    assert "words" not in transcribe(client, data, response_format="verbose_json").json()
    srt = transcribe(client, data, response_format="srt").text
    assert srt.startswith("1\n00:00:00,000 --> ") and words[-1]["word"] in srt
    vtt = transcribe(client, data, response_format="vtt")
    assert vtt.text.startswith("WEBVTT\n\n00:00:00.000 --> ") and vtt.headers["content-type"].startswith("text/vtt")


def test_stream_true_sends_a_delta_per_word_then_done(client):
    response = transcribe(client, clip(1.0, rate=48000, container="ogg", codec="libopus"), stream="true")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[len("data: "):]) for line in response.text.splitlines() if line.startswith("data: ")]
    deltas = [e["delta"] for e in events[:-1]]
    assert {e["type"] for e in events[:-1]} == {"transcript.text.delta"} and len(deltas) >= 3
    assert events[-1] == {"type": "transcript.text.done", "text": "".join(deltas),
                          "usage": {"type": "duration", "seconds": pytest.approx(1.0, abs=0.1)}}  # Opus pads


def test_models_lists_the_speech_to_text_model_and_openai_names(client):
    kinds = {m["id"]: m["kind"] for m in client.get("/v1/models").json()["data"]}
    assert kinds["ears"] == kinds["whisper-1"] == kinds["gpt-4o-transcribe"] == "stt"


@pytest.mark.parametrize("data, fields, status, code", [
    (b"", {}, 415, "clip_not_audio"),
    (b"RIFF\x00\x00\x00\x00WAVEnot really", {}, 415, "clip_not_audio"),
    (json.dumps({"text": "hi"}).encode(), {}, 415, "clip_not_audio"),
    (clip(), {"response_format": "docx"}, 422, "validation_error"),
    (clip(), {"timestamp_granularities[]": "sentence"}, 422, "validation_error"),
    (clip(), {"language": "ja"}, 400, "unsupported_language"),
    (clip(), {"model": "default"}, 400, "wrong_model_kind"),
    (audio_file(tone(24)), {}, 413, "body_too_large"),  # 1.15 MB of WAV
    (audio_file(tone(MAX_S + 1, rate=8000), rate=8000), {}, 422, "clip_too_long"),
])
def test_bad_input_is_a_4xx_in_openais_shape_and_the_service_stays_well(client, data, fields, status, code):
    response = transcribe(client, data, **fields)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["type"] == "invalid_request_error"
    assert transcribe(client, clip(0.5)).status_code == 200


def test_a_decompression_bomb_stops_decoding_at_the_limit(client, monkeypatch):
    bomb = silence_bomb()  # an hour of FLAC in 656 KB: fits the byte limit
    response = transcribe(client, bomb)
    assert response.status_code == 422 and response.json()["error"]["code"] == "clip_too_long"
    decoded = count_decoding(monkeypatch)
    with pytest.raises(ClipRefused):
        decode_audio(bomb, MAX_S, 30.0, max_setting="transcription_max_s")
    assert decoded[0] <= MAX_S + 1.0  # of the 3600 s it holds


def test_speech_to_text_reads_only_this_services_saved_files():
    request = types.SimpleNamespace(url_for=lambda _, name: f"http://127.0.0.1:8000/duo/api/outputs/{name}")
    name = "0" * 32 + ".wav"
    assert _output_name(request, f"http://127.0.0.1:8000/duo/api/outputs/{name}") == name
    assert _output_name(request, f"/duo/api/outputs/{name}") == name
    for url in (f"http://example.com/duo/api/outputs/{name}", "http://127.0.0.1:8000/duo/api/voices",
                f"file:///duo/api/outputs/{name}", f"http://127.0.0.1:9999/duo/api/outputs/{name}"):
        with pytest.raises(APIError) as refused:
            _output_name(request, url)
        assert refused.value.code == "url_not_served_here"
