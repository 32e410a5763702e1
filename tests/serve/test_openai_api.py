"""The OpenAI-compatible API, driven by the official `openai` SDK against the real Serve app. Every
format is decoded by FFmpeg (PyAV), independently of the service's encoders."""

from __future__ import annotations

import base64

import httpx
import openai
import pytest
from helpers.speech_checks import (
    CODEC_SLACK_S,
    DECODED_RATES,
    FRAME_S,
    SAMPLE_RATE,
    decode,
    pcm_seconds,
    sse_events,
)

TEXT = "Hello from the cluster, through the OpenAI client."
SHORT_TEXT = "Hello from the cluster."  # some audio in every format: fewer ticks than TEXT
OPENAI_FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]
# Voices of the tiny test checkpoint that the default openai_voices table maps to.
MAPPED = {"alloy": "unmute-prod-website/default_voice.wav", "echo": "expresso/ex03-ex01_happy_001_channel1_334s.wav",
          "nova": "vctk/p225_023.wav"}


@pytest.fixture
def oai(base_url):
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="not-needed", max_retries=0, timeout=120) as client:
        yield client


def audio_seconds(data: bytes, fmt: str) -> float:
    if fmt == "pcm":
        assert not data.startswith(b"RIFF")
        return pcm_seconds(data)
    rate, seconds = decode(data)
    assert rate == DECODED_RATES[fmt]
    return seconds


def speech_sse(oai, fmt: str, speed: float = 1.0, text: str = TEXT) -> tuple[list[dict], bytes]:
    with oai.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=text, response_format=fmt, speed=speed,
            stream_format="sse") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.iter_lines())
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    return events, audio


@pytest.mark.parametrize("fmt", OPENAI_FORMATS)
def test_each_response_format_decodes_to_the_audio_the_worker_made(oai, fmt):
    """The SSE answer of each format: its audio, decoded, is as long as the frames the worker made
    (80 ms each). The plain answer of each format (a whole file of its media type and rate) is
    the ingress's encoders alone: tests/unit/test_openai_formats.py, over the fake engine."""
    events, audio = speech_sse(oai, fmt, text=SHORT_TEXT)
    frames = events[-1]["usage"]["output_tokens"]
    assert frames > 0
    assert audio_seconds(audio, fmt) == pytest.approx(frames * FRAME_S, abs=CODEC_SLACK_S)
    if fmt == "pcm":
        assert len(audio) == frames * FRAME_S * SAMPLE_RATE * 2


def test_with_streaming_response_delivers_the_audio_in_pieces(oai):
    with oai.audio.speech.with_streaming_response.create(model="gpt-4o-mini-tts", voice="echo", input=TEXT,
                                                         response_format="mp3") as response:
        assert response.status_code == 200
        assert response.headers["x-tts-voice"] == MAPPED["echo"]
        chunks = [chunk for chunk in response.iter_bytes() if chunk]
    assert len(chunks) > 1
    rate, seconds = decode(b"".join(chunks))
    assert rate == 24_000 and seconds > 0


def test_sse_events_have_openai_shapes(oai):
    events, audio = speech_sse(oai, "wav")
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "speech.audio.done" and kinds.count("speech.audio.done") == 1
    assert kinds.count("speech.audio.delta") > 1 and set(kinds) == {"speech.audio.delta", "speech.audio.done"}
    assert all(set(e) == {"type", "audio"} for e in events[:-1])
    usage = events[-1]["usage"]
    assert set(usage) == {"input_tokens", "output_tokens", "total_tokens"}
    assert usage["input_tokens"] == len(TEXT.split()) and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert audio[:4] == b"RIFF" and decode(audio)[0] == 24_000


@pytest.mark.parametrize("speed", [0.5, 2.0])
def test_speed_time_stretches_what_the_worker_made(oai, speed):
    events, audio = speech_sse(oai, "pcm", speed=speed, text=SHORT_TEXT)
    generated_s = events[-1]["usage"]["output_tokens"] * FRAME_S
    assert pcm_seconds(audio) == pytest.approx(generated_s / speed, abs=0.05)


def test_openai_voice_names_map_to_real_voices_and_real_ids_work(oai):
    for name, voice_id in MAPPED.items():
        response = oai.audio.speech.with_raw_response.create(model="tts-1", voice=name, input="Hi.",
                                                             response_format="wav")
        assert response.headers["x-tts-voice"] == voice_id
        assert decode(response.content)[1] > 0
    french = "cml-tts/fr/2154_2576_000020.wav"
    response = oai.audio.speech.with_raw_response.create(model="any-name", voice=french, input="Bonjour.",
                                                         response_format="flac")
    assert response.headers["x-tts-voice"] == french
    # The newest SDKs also send voices as {"id": ...}.
    response = oai.audio.speech.with_raw_response.create(model="tts-1", voice={"id": "nova"}, input="Hi.",
                                                         response_format="wav")
    assert response.headers["x-tts-voice"] == MAPPED["nova"]


def test_voice_mapped_to_a_missing_voice_and_unknown_voices_are_clear_400s(oai):
    with pytest.raises(openai.BadRequestError) as caught:
        oai.audio.speech.create(model="tts-1", voice="coral", input=TEXT)
    error = caught.value.body
    assert "coral" in error["message"] and "alba-mackenna/casual.wav" in error["message"]
    assert error["param"] == "voice" and error["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as caught:
        oai.audio.speech.create(model="tts-1", voice="no-such-voice", input=TEXT)
    assert "no-such-voice" in caught.value.body["message"]


def test_bad_requests_get_openai_shaped_errors(base_url, oai):
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        oai.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, speed=5.0)
    assert caught.value.body["param"] == "speed"
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        oai.audio.speech.create(model="tts-1", voice="alloy", input="   ")
    assert caught.value.body["param"] == "input"
    response = httpx.post(f"{base_url}/v1/audio/speech", json={"input": TEXT, "response_format": "ogg"})
    body = response.json()
    assert response.status_code == 422 and set(body["error"]) == {"message", "type", "param", "code", "request_id"}
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    assert body["error"]["param"] == "response_format"


@pytest.mark.parametrize("stream_format", ["audio", "sse"])
def test_a_text_the_worker_refuses_names_input(base_url, stream_format):
    """Only control characters pass the ingress and are refused by the worker: its error still
    names OpenAI's field, `input`, not the worker's `text`."""
    response = httpx.post(f"{base_url}/v1/audio/speech", timeout=120,
                          json={"input": "\x01\x02\x03", "voice": "alloy", "stream_format": stream_format})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("input", "invalid_request")


def test_instructions_are_accepted_and_reported_as_ignored(oai):
    response = oai.audio.speech.with_raw_response.create(model="gpt-4o-mini-tts", voice="alloy", input="Hi.",
                                                         instructions="Speak like a pirate.", response_format="wav")
    assert response.headers["x-tts-instructions"] == "ignored"
    assert decode(response.content)[1] > 0


def test_voices_and_models_are_listed(base_url, oai):
    voices = httpx.get(f"{base_url}/v1/audio/voices").json()["voices"]
    assert all({"id", "name"} <= set(v) for v in voices)
    by_id = {v["id"]: v for v in voices}
    for name, voice_id in MAPPED.items():
        assert by_id[name]["voice"] == voice_id
    assert "coral" not in by_id  # its voice is not on this server
    real = {v["id"] for v in httpx.get(f"{base_url}/api/voices").json()["voices"]}
    assert real <= set(by_id)
    models = [m.id for m in oai.models.list()]
    assert "tts-1" in models and "gpt-4o-mini-tts" in models
    assert oai.models.retrieve("whatever-model").id == "whatever-model"
