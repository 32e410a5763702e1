"""The OpenAI speech route's plain answers (stream_format "audio", the SDK's default), in process: the
real ingress and encoders over the scripted fake engine (tests/helpers/inprocess_app.py). Each
response_format is a whole file FFmpeg (PyAV) decodes at its documented rate, with its media type.

What the real model adds (its audio, streamed as SSE, as long as the frames the worker made) is
tests/serve/test_openai_api.py's, one generation per format there."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from helpers.inprocess_app import build_app
from helpers.speech_checks import DECODED_RATES, decode, pcm_seconds

MEDIA_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
               "wav": "audio/wav", "pcm": "audio/pcm"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with TestClient(build_app(tmp_path_factory.mktemp("app"))) as test_client:
        yield test_client


@pytest.mark.parametrize("fmt", sorted(MEDIA_TYPES))
def test_each_response_format_is_a_whole_decodable_file_of_its_type(client, fmt):
    response = client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "response_format": fmt,
                                                      "input": "Hello from the OpenAI route, in every format."})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == MEDIA_TYPES[fmt]
    if fmt == "pcm":
        assert not response.content.startswith(b"RIFF") and pcm_seconds(response.content) > 0
    else:
        rate, seconds = decode(response.content)
        assert rate == DECODED_RATES[fmt] and seconds > 0
