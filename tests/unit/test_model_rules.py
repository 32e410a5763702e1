"""Each model's own rules, on every surface, in an app of two models (the real ingress over the fake
engine, tests/helpers/inprocess_app.py): `first` is a 1.6B-style model (the distilled cfg set, the
shared voices), `clone` Kyutai's 0.75B (real cfg, any number in its range; voices of its own). A
cfg_coef or a voice of one model asked of the other is a clear refusal naming the field: 422 / 400
over HTTP, a tool error over MCP, a refused handshake or an Error message over the WebSocket. The
two-model app on the real cluster is tests/serve/test_models_served.py."""

from __future__ import annotations

import json

import jsonschema

import msgpack
import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from deployments.protocol import CFG_COEFS, DISTILLED_CFG, REAL_CFG, CfgRule
from helpers.inprocess_app import VOICES, build_app, cloning_models, mcp_tool

CLIP = "clips/reader.wav"  # a voice of `clone` only
SHARED = VOICES[1]          # a voice of `first` only


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("two-models")
    # base_url: MCP's Host check takes localhost:<port> only.
    app = build_app(root, models=cloning_models(root), default_model="first")
    with TestClient(app, base_url="http://localhost:8000") as test_client:
        yield test_client


def tts(client, **body):
    return client.post("/api/tts", json={"text": "Hello there.", "format": "pcm", **body})


def test_the_rules_say_their_values():
    assert DISTILLED_CFG.allows(2.5) and not DISTILLED_CFG.allows(2.2) and DISTILLED_CFG.values == CFG_COEFS
    assert DISTILLED_CFG.json_schema() == {"minimum": 1.0, "maximum": 4.0, "multipleOf": 0.5}
    assert DISTILLED_CFG.describe() == "one of 1, 1.5, 2, 2.5, 3, 3.5, 4"
    assert REAL_CFG.allows(3.3) and REAL_CFG.allows(5.0) and not REAL_CFG.allows(0.9) and not REAL_CFG.allows(5.01)
    assert REAL_CFG.json_schema() == {"minimum": 1.0, "maximum": 5.0} and REAL_CFG.describe() == "a number from 1 to 5"
    uneven = CfgRule.one_of((1.0, 1.5, 3.0))
    assert uneven.json_schema() == {"enum": [1.0, 1.5, 3.0]} and not uneven.allows(2.0)


@pytest.mark.parametrize("model, cfg, status", [
    ("first", 2.5, 200), ("clone", 2.5, 200),
    ("first", 3.3, 422), ("clone", 3.3, 200),   # real guidance takes any number in its range
    ("first", 4.5, 422), ("clone", 4.5, 200),   # past the 1.6B's 4
    ("clone", 5.5, 422), ("clone", 0.5, 422),   # past every model's bounds: the request model refuses it
])
def test_rest_checks_cfg_against_the_chosen_models_rule(client, model, cfg, status):
    answer = tts(client, model=model, cfg_coef=cfg)
    assert answer.status_code == status, answer.text
    if status == 422:
        error = answer.json()["error"]
        assert error["param"] == "cfg_coef"
        if 1.0 <= cfg <= 5.0:  # the model's own rule, named with its values
            assert error["code"] == "invalid_cfg" and "model 'first'" in error["message"]
            assert "one of 1, 1.5, 2, 2.5, 3, 3.5, 4" in error["message"]


def test_the_document_states_each_models_cfg_rule_and_info_says_whose(client):
    tts_request = client.get("/openapi.json").json()["components"]["schemas"]["TTSRequest"]
    number = next(choice for choice in tts_request["properties"]["cfg_coef"]["anyOf"] if choice.get("type") == "number")
    assert number["anyOf"] == [DISTILLED_CFG.json_schema(), REAL_CFG.json_schema()]
    assert not {"minimum", "maximum", "multipleOf"} & set(number) and "x-cfg-rules" not in json.dumps(tts_request)
    models = {m["name"]: m["cfg_coef"] for m in client.get("/api/info").json()["models"]}
    assert models == {"first": DISTILLED_CFG.json_schema(), "clone": REAL_CFG.json_schema()}


def test_the_document_ties_each_cfg_rule_to_its_models_so_a_valid_request_is_taken(client):
    """The request schema's alternatives (one per rule) decide exactly what the route takes: 5.0 is
    the cloning model's only, so a request naming no model (the default 1.6B) may not ask for it."""
    tts_request = client.get("/openapi.json").json()["components"]["schemas"]["TTSRequest"]
    validator = jsonschema.Draft202012Validator(tts_request)
    cases = [({}, True), ({"cfg_coef": 2.5}, True), ({"model": None, "cfg_coef": 5.0}, False),
             ({"cfg_coef": 5.0}, False), ({"model": "first", "cfg_coef": 3.3}, False),
             ({"model": "clone", "cfg_coef": 5.0}, True), ({"model": "clone", "cfg_coef": 3.3}, True),
             ({"model": "kyutai/tts-0.75b-en-public", "cfg_coef": 4.5}, True), ({"model": "clone"}, True)]
    for extra, valid in cases:
        body = {"text": "Hello there.", **extra}
        assert validator.is_valid(body) == valid, body
        assert (tts(client, **extra).status_code == 200) == valid, body


def test_a_voice_of_one_model_is_a_400_naming_the_model_on_rest_and_openai(client):
    assert tts(client, model="clone", voice=CLIP).status_code == 200
    for model, voice in (("first", CLIP), ("clone", SHARED)):
        rest = tts(client, model=model, voice=voice)
        openai = client.post("/v1/audio/speech", json={"input": "Hi.", "model": model, "voice": voice})
        for answer in (rest, openai):
            error = answer.json()["error"]
            assert answer.status_code == 400 and (error["code"], error["param"]) == ("unknown_voice", "voice")
            assert f"unknown voice '{voice}' of model '{model}'" in error["message"]
    # An OpenAI name maps to a voice of the default model's collection: not one `clone` has.
    mapped = client.post("/v1/audio/speech", json={"input": "Hi.", "model": "clone", "voice": "alloy"})
    assert mapped.status_code == 400 and "maps to" in mapped.json()["error"]["message"]


def mcp_call(client, arguments: dict) -> dict:
    """One text_to_speech call over MCP."""
    return mcp_tool(client, "text_to_speech", {"text": "Hi.", "save": False, **arguments})


def test_mcp_refuses_another_models_cfg_or_voice_as_a_tool_error(client):
    assert not mcp_call(client, {"model": "clone", "cfg_coef": 3.3, "voice": CLIP})["isError"]
    wrong_cfg = mcp_call(client, {"model": "first", "cfg_coef": 3.3})
    wrong_voice = mcp_call(client, {"model": "first", "voice": CLIP})
    assert wrong_cfg["isError"] and "cfg_coef 3.3" in wrong_cfg["content"][0]["text"]
    assert "one of 1, 1.5" in wrong_cfg["content"][0]["text"]
    assert wrong_voice["isError"] and f"unknown voice '{CLIP}' of model 'first'" in wrong_voice["content"][0]["text"]
    listed = client.post("/mcp/", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                         headers={"Accept": "application/json, text/event-stream"}).json()["result"]["tools"]
    cfg = next(t for t in listed if t["name"] == "text_to_speech")["inputSchema"]["properties"]["cfg_coef"]
    number = next(s for s in cfg["anyOf"] if s.get("type") == "number")
    assert (number["minimum"], number["maximum"], "multipleOf" in number) == (1.0, 5.0, False)  # the union
    assert "first: one of 1, 1.5" in cfg["description"] and "clone: a number from 1 to 5" in cfg["description"]


def test_the_websocket_refuses_another_models_cfg_at_the_handshake_and_its_voice_with_an_error(client):
    with pytest.raises(WebSocketDenialResponse) as refused:
        with client.websocket_connect("/api/tts_streaming?model=first&cfg_alpha=3.3"):
            pass
    error = refused.value.json()["error"]
    assert refused.value.status_code == 400 and (error["code"], error["param"]) == ("invalid_cfg", "cfg_alpha")
    with client.websocket_connect("/api/tts_streaming?model=clone&cfg_alpha=3.3") as ws:
        assert msgpack.unpackb(ws.receive_bytes()) == {"type": "Ready"}
        ws.send_bytes(msgpack.packb({"type": "Text", "text": "Hello there."}))
        ws.send_bytes(msgpack.packb({"type": "Eos"}))
        spoken = []
        with pytest.raises(WebSocketDisconnect) as ended:
            while True:
                spoken.append(msgpack.unpackb(ws.receive_bytes())["type"])
    assert ended.value.code == 1000 and "Audio" in spoken and "Error" not in spoken
    with client.websocket_connect(f"/api/tts_streaming?model=first&voice={CLIP}") as ws:
        error = msgpack.unpackb(ws.receive_bytes())
        assert error["type"] == "Error" and f"unknown voice '{CLIP}' of model 'first'" in error["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_bytes()
    assert closed.value.code == 1008
