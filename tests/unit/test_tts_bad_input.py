"""Bad input to POST /api/tts that the ingress refuses, in process (the real app over the fake
engine, tests/helpers/inprocess_app.py): a 4xx in the one error shape, naming the field. The
refusals only the real worker makes (control characters, more than max_audio_s of audio) stay on
the cluster (tests/serve/test_serve_app.py), where the field must survive the trip back."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from helpers.inprocess_app import build_app


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with TestClient(build_app(tmp_path_factory.mktemp("app"))) as test_client:
        yield test_client


@pytest.mark.parametrize("body, status, param", [
    ({"text": ""}, 422, "text"),
    ({"text": "   \n\t "}, 422, "text"),
    ({"text": "x" * 2001}, 422, "text"),  # the app's max_text_chars: 2000
    ({"text": 42}, 422, "text"),
    ({"text": ["a", "b"]}, 422, "text"),
    ({}, 422, "text"),
    ({"text": 'hi <break voice="1"/> there'}, 422, "text"),
    ({"text": "hi", "voice": "no/such/voice.wav"}, 400, "voice"),
    ({"text": "hi", "voice": "../../etc/passwd"}, 400, "voice"),
    ({"text": "hi", "voice": "/etc/passwd"}, 400, "voice"),
    ({"text": "hi", "voice": "..\\..\\windows"}, 400, "voice"),
    ({"text": "hi", "format": "exe"}, 422, "format"),
    ({"text": "hi", "cfg_coef": 2.2}, 422, "cfg_coef"),
    ({"text": "hi", "cfg_coef": "lots"}, 422, "cfg_coef"),
    ({"text": "hi", "unexpected": 1}, 422, "unexpected"),
])
def test_bad_input_gets_a_4xx_json_error_naming_the_field(client, body, status, param):
    response = client.post("/api/tts", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"]
