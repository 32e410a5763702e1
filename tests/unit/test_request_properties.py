"""Any text through the REST request path in process (the real app over the fake engine,
tests/helpers/inprocess_app.py): POST /api/tts and POST /v1/audio/speech answer every text of
tests/helpers/text_strategies.py (every Unicode category, lone surrogates, control characters,
very long words, break tags) with a success or a 4xx in the one error shape, whose status and
code the operation's OpenAPI document lists; never a 5xx. Text that is not Unicode is a 422
naming the field, answered by the ingress."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings

from deployments.engine.base import unicode_problem
from helpers.inprocess_app import build_app
from helpers.text_strategies import TEXTS

SPEECH_OPERATIONS = {"/api/tts": "text", "/v1/audio/speech": "input"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with TestClient(build_app(tmp_path_factory.mktemp("app"))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def documented(client) -> dict[str, dict[str, set[str]]]:
    """Path -> status -> the error codes its document lists (empty for a success)."""
    document = client.get("/openapi.json").json()
    return {path: {status: set(response.get("content", {}).get("application/json", {}).get("examples", {}))
                   for status, response in document["paths"][path]["post"]["responses"].items()}
            for path in SPEECH_OPERATIONS}


def post_text(client, path: str, text: str, **fields):
    # ensure_ascii: a lone surrogate travels as JSON's "\udcff" escape, as any client would send it.
    body = json.dumps({SPEECH_OPERATIONS[path]: text, **fields}, ensure_ascii=True)
    return client.post(path, content=body.encode(), headers={"Content-Type": "application/json"})


def assert_documented_answer(response, documented_statuses: dict[str, set[str]], param: str) -> None:
    status = str(response.status_code)
    assert status in documented_statuses, (status, response.text[:300])
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code", "request_id"} and error["message"]
        assert error["code"] in documented_statuses[status], error
        assert error["param"] == param, error  # every refusal of a text names its field


@pytest.mark.parametrize("path", sorted(SPEECH_OPERATIONS))
@settings(max_examples=60)
@given(text=TEXTS)
def test_any_text_gets_a_success_or_a_documented_refusal_naming_the_field(client, documented, path, text):
    response = post_text(client, path, text, format="wav") if path == "/api/tts" else \
        post_text(client, path, text, response_format="wav")
    assert_documented_answer(response, documented[path], SPEECH_OPERATIONS[path])
    if unicode_problem(text):
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_text"


@pytest.mark.parametrize("path", sorted(SPEECH_OPERATIONS))
@pytest.mark.parametrize("fields", [{}, {"stream": True}, {"stream": True, "timestamps": True}, {"save": True},
                                    {"stream_format": "sse"}])
def test_the_issue_example_is_a_422_naming_the_field_on_every_variant(client, path, fields):
    fields = {k: v for k, v in fields.items() if (k == "stream_format") == (path == "/v1/audio/speech")}
    response = post_text(client, path, "abc \udcff def", **fields)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (SPEECH_OPERATIONS[path], "invalid_text")
    assert "lone surrogate (U+DCFF)" in error["message"]
