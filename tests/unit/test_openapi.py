"""The OpenAPI document in process (serve_app/openapi.py over the real app): every status each
operation may answer, in the one error shape; constraint values from their one home (deployments'
cfg values, the tempo bounds, the max_text_chars setting); the guards' refusals as the settings
install them; examples that are what they claim; OpenAI's published shapes where we claim them.
tests/unit/test_contract.py runs Schemathesis against the app with this document."""

from __future__ import annotations

import jsonschema
import pytest
from fastapi.testclient import TestClient

from deployments.protocol import CFG_MAX, CFG_MIN, CFG_STEP
from helpers.inprocess_app import build_app
from serve_app.audio.tempo import MAX_SPEED, MIN_SPEED
from serve_app.errors import error_body

STATUSES_EVERYWHERE = {"400", "413", "500"}  # X-Request-ID, body size, the catch-all handler


def document_of(tmp_path, **settings) -> dict:
    with TestClient(build_app(tmp_path, **settings)) as client:
        return client.get("/openapi.json", headers={"Host": "127.0.0.1:8000"}).json()  # an allowed host


@pytest.fixture(scope="module")
def document(tmp_path_factory) -> dict:
    return document_of(tmp_path_factory.mktemp("app"), max_text_chars=1234)


def operations(document: dict):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def validator(document: dict, schema: dict) -> jsonschema.Draft202012Validator:
    """Validates against `schema`, its references read in the document's components."""
    return jsonschema.Draft202012Validator({**schema, "components": document["components"]})


def component(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def test_every_operation_lists_what_the_handlers_and_guards_may_answer(document):
    for method, path, operation in operations(document):
        statuses = set(operation["responses"])
        assert STATUSES_EVERYWHERE <= statuses, (method, path)
        if method == "POST":
            assert {"403", "415", "422"} <= statuses, path  # Origin, JSON, validation
        assert "401" not in statuses and "421" not in statuses, path  # not installed by these settings
        assert any(p["name"] == "X-Request-ID" for p in operation["parameters"]), path


def test_every_refusal_is_the_error_shape_and_every_503_says_when_to_retry(document):
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                continue
            if status == "503":
                assert response["headers"]["Retry-After"]["required"], path
            if path == "/ready":  # its 503 is the readiness report itself
                continue
            content = response["content"]["application/json"]
            assert content["schema"] == component("ErrorResponse"), (method, path, status)
            check = validator(document, component("ErrorResponse"))
            for example in content["examples"].values():
                check.validate(example["value"])


def test_the_error_shape_is_what_the_handlers_send(document):
    check = validator(document, component("ErrorResponse"))
    for status, param, code in [(422, "text", "empty_text"), (503, None, "overloaded"), (500, None, None)]:
        check.validate(error_body(status, "why", param, code))
    with pytest.raises(jsonschema.ValidationError):
        check.validate({"error": {"message": "no type, param, code or request_id"}})


def test_speech_routes_name_their_codes(document):
    def codes(path, status):
        return set(document["paths"][path]["post"]["responses"][status]["content"]["application/json"]["examples"])

    for path in ("/api/tts", "/v1/audio/speech"):
        assert {"empty_text", "text_too_long", "invalid_text", "invalid_request", "validation_error"} <= codes(path, "422")
        assert {"unknown_voice", "invalid_voice", "invalid_request_id"} <= codes(path, "400")
        assert {"model_unavailable", "overloaded", "worker_failed", "worker_timeout"} == codes(path, "503")
    assert {"insufficient_storage", "output_too_large"} == codes("/api/tts", "507")
    outputs = document["paths"]["/api/outputs/{name}"]["get"]["responses"]["404"]
    assert "not_found" in outputs["content"]["application/json"]["examples"]


def test_constraints_come_from_their_one_home(document):
    schemas = document["components"]["schemas"]
    tts, speech = schemas["TTSRequest"]["properties"], schemas["SpeechRequest"]["properties"]
    for text in (tts["text"], speech["input"]):
        assert text["maxLength"] == 1234 and text["minLength"] == 1 and text["pattern"]  # the setting, when built
    cfg = next(choice for choice in tts["cfg_coef"]["anyOf"] if choice.get("type") == "number")
    assert (cfg["minimum"], cfg["maximum"], cfg["multipleOf"]) == (CFG_MIN, CFG_MAX, CFG_STEP)
    for speed in (tts["speed"], speech["speed"]):
        assert (speed["minimum"], speed["maximum"]) == (MIN_SPEED, MAX_SPEED)
    assert schemas["TTSRequest"]["not"]["required"] == ["stream", "save"]
    assert "x-max-length-setting" not in str(document)


def test_request_examples_are_valid_requests(document):
    for method, path, operation in operations(document):
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is None:
            continue
        assert body.get("examples"), path  # what Swagger UI offers to try
        for example in body["examples"].values():
            validator(document, body["schema"]).validate(example["value"])


def test_the_openai_operations_have_openais_published_shapes(document):
    schemas = document["components"]["schemas"]
    speech = schemas["SpeechRequest"]["properties"]
    # OpenAI's CreateSpeechRequest: these fields, enums and bounds.
    assert set(speech) == {"model", "input", "voice", "response_format", "speed", "instructions", "stream_format"}
    assert set(speech["response_format"]["enum"]) == {"mp3", "opus", "aac", "flac", "wav", "pcm"}
    assert speech["response_format"]["default"] == "mp3"
    assert set(speech["stream_format"]["enum"]) == {"sse", "audio"} and speech["stream_format"]["default"] == "audio"
    instructions = next(c for c in speech["instructions"]["anyOf"] if c.get("type") == "string")
    assert instructions["maxLength"] == 4096
    assert {"alloy", "ash", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer"} <= set(
        next(c for c in speech["voice"]["anyOf"] if "enum" in c)["enum"])
    models = validator(document, component("ModelList"))
    models.validate({"object": "list", "data": [{"id": "tts-1", "object": "model", "created": 0, "owned_by": "kyutai"}]})
    events = validator(document, component("SpeechEvent"))
    events.validate({"type": "speech.audio.delta", "audio": "AAAA"})
    events.validate({"type": "speech.audio.done", "usage": {"input_tokens": 2, "output_tokens": 9, "total_tokens": 11}})


def test_every_reference_resolves(document):
    refs = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    names = set(document["components"]["schemas"])
    assert {ref.rsplit("/", 1)[-1] for ref in refs} <= names
    assert not names & {"HTTPValidationError", "ValidationError"}  # FastAPI's 422 shape is not ours


def test_api_keys_and_the_host_check_appear_when_configured(tmp_path):
    document = document_of(tmp_path, api_keys=["k"], check_host_everywhere=True)
    assert set(document["components"]["securitySchemes"]) == {"bearer", "kyutai_api_key", "auth_id"}
    for method, path, operation in operations(document):
        open_path = path in ("/health", "/ready")
        assert ("401" in operation["responses"]) != open_path, path
        assert ("421" in operation["responses"]) != open_path, path
        assert bool(operation.get("security")) != open_path, path
        if not open_path:
            assert operation["responses"]["401"]["headers"]["WWW-Authenticate"]["required"]
