"""The API contract, machine-checked against the running app (the shared test cluster's main app).

Schemathesis reads the app's /openapi.json and sends every operation its examples, the coverage
phase's boundary values, missing and wrong fields and undeclared methods, then fuzzed requests
(valid and invalid), and checks every answer with its default checks: the status and its
headers are documented, the body matches its schema, a request the schema allows is taken and
one it refuses is refused, a method a path lacks is a 405 with `Allow`. On top: no 5xx, but a
503 that says when to retry (`Retry-After`), which the document declares as a temporary refusal.
A failure prints the request that reproduces it (a curl line). The seed is fixed and the
examples bounded: about a minute on a 2-core machine.

What this test decides, and why:
- Voice names are data, not shape (GET /api/voices lists them; an unknown one is a 400 the
  document declares): a case meant to be valid speaks with a voice this service has.
- A text meant to be valid is spoken whole up to SPOKEN_CHARS characters, and cut there beyond
  (still a valid text): the coverage phase's texts of max_text_chars (2000 here) cost a minute of
  CPU each on this machine, for the code path a short one takes; the limit itself is checked
  where it refuses (max_text_chars + 1 is a schema-invalid case, sent as is).
- POST /api/gpu/offload runs for real: offloading is what it documents, and it disturbs no
  other test (the next request reloads the tiny model in a fraction of a second; the tests that
  look at model states make a request of their own first).

Then the text no tokenizer can take (a lone surrogate, valid JSON) on every surface: a 422 naming
the field (REST `text`, OpenAI `input`), an Error message and close code 1008 (the WebSocket), a
tool error (MCP), each refused by the ingress before a worker is involved.
"""

from __future__ import annotations

import asyncio
import re

import httpx
import msgpack
import pytest
import schemathesis
import websockets
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig

from deployments.engine.base import SPEAKABLE_TEXT_PATTERN

SEED = 26
MAX_EXAMPLES = 6  # per operation and phase: 12 cost ~190 s of the suite here, 6 ~140 s
SPOKEN_CHARS = 32  # ~2 s of audio: the cost of a valid case is its audio (80 cost ~2.5x more)
SPEAKABLE = re.compile(SPEAKABLE_TEXT_PATTERN)
LONE_SURROGATE_TEXT = "abc \udcff def"
# The same text as JSON sends it (httpx would refuse to encode the str itself).
LONE_SURROGATE_JSON = '"abc \\udcff def"'
SURROGATE_MESSAGE = "must be Unicode text: it holds a lone surrogate (U+DCFF) at character 4"


@pytest.fixture(scope="module")
def contract(base_url):
    # Schemathesis's defaults, not the repository's schemathesis.toml (which lets a by-hand run take
    # an invented voice's 400): here every valid case speaks with a listed voice, and must succeed.
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=SchemathesisConfig())
    schema.config.seed = SEED
    schema.config.generation.update(max_examples=MAX_EXAMPLES, database="none")
    schema.config.update(request_timeout=120)
    return schema


@pytest.fixture(scope="module")
def voices_by_path(base_url) -> dict[str, list[str]]:
    """The voices each speech operation knows, as its listing says."""
    return {"/api/tts": sorted(v["id"] for v in httpx.get(f"{base_url}/api/voices", timeout=30).json()["voices"]),
            "/v1/audio/speech": sorted(v["id"] for v in
                                       httpx.get(f"{base_url}/v1/audio/voices", timeout=30).json()["voices"])}


def meant_to_be_valid(case) -> bool:
    return isinstance(case.body, dict) and case.meta is not None and case.meta.generation.mode.is_positive


def speak_with_a_known_voice(case, voices_by_path: dict[str, list[str]]) -> None:
    """A case meant to be valid names a voice the service has (the same one for the same name)."""
    known = voices_by_path.get(case.operation.path)
    if not known or not meant_to_be_valid(case):
        return
    body = case.body
    voice = body.get("voice")
    if isinstance(voice, dict) and isinstance(voice.get("id"), str) and voice["id"] not in known:
        voice["id"] = known[len(voice["id"]) % len(known)]
    elif isinstance(voice, str) and voice not in known:
        body["voice"] = known[len(voice) % len(known)]


def speak_at_most_spoken_chars(case) -> None:
    """A valid text longer than SPOKEN_CHARS keeps its first SPOKEN_CHARS characters (valid still:
    a word is added if the cut left nothing to say)."""
    if not meant_to_be_valid(case):
        return
    for field in ("text", "input"):
        text = case.body.get(field)
        if isinstance(text, str) and len(text) > SPOKEN_CHARS:
            cut = text[:SPOKEN_CHARS]
            case.body[field] = cut if SPEAKABLE.search(cut) else "cut " + cut[:SPOKEN_CHARS - 4]


def no_server_error_but_a_retry_after_503(ctx, response, case):
    """5xx is a bug, except a 503 carrying Retry-After: the documented "busy or unavailable, ask
    again then" (a full queue, a model that cannot load yet)."""
    status = response.status_code
    if status >= 500 and not (status == 503 and response.headers.get("retry-after")):
        raise AssertionError(f"{case.method} {case.path} answered {status}: {response.text[:300]}")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request):
    """Schemathesis 4.32 names each operation's subtest through `Node._nodeid`, which pytest 9 no
    longer has: the node id it reads (and restores) is the public one."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("contract")


@pytest.mark.timeout(600)
@schema.parametrize()
def test_every_operation_keeps_its_contract(case, voices_by_path):
    speak_with_a_known_voice(case, voices_by_path)
    speak_at_most_spoken_chars(case)
    case.call_and_validate(excluded_checks=[not_a_server_error],
                           additional_checks=[no_server_error_but_a_retry_after_503])


# ---- text no tokenizer can take, on every surface --------------------------------------------------
def assert_refused_naming(response: httpx.Response, param: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, "invalid_text")
    assert error["message"] == f"{param} {SURROGATE_MESSAGE}"


@pytest.mark.parametrize("options", ["", ', "stream": true', ', "stream": true, "timestamps": true', ', "save": true'])
def test_rest_refuses_a_lone_surrogate_naming_text(base_url, options):
    body = f'{{"text": {LONE_SURROGATE_JSON}{options}}}'.encode()
    assert_refused_naming(httpx.post(f"{base_url}/api/tts", content=body, timeout=60,
                                     headers={"Content-Type": "application/json"}), "text")


@pytest.mark.parametrize("stream_format", ["audio", "sse"])
def test_openai_refuses_a_lone_surrogate_naming_input(base_url, stream_format):
    body = f'{{"model": "tts-1", "voice": "alloy", "input": {LONE_SURROGATE_JSON}, "stream_format": "{stream_format}"}}'
    assert_refused_naming(httpx.post(f"{base_url}/v1/audio/speech", content=body.encode(), timeout=60,
                                     headers={"Content-Type": "application/json"}), "input")


@pytest.mark.parametrize("first_words", [None, "Hello there, my friend."])
def test_the_websocket_ends_with_an_error_and_1008_for_a_lone_surrogate(base_url, first_words):
    """As the first words or later ones (a session already speaking)."""
    async def session():
        url = base_url.replace("http://", "ws://") + "/api/tts_streaming"
        async with websockets.connect(url) as ws:
            assert msgpack.unpackb(await ws.recv()) == {"type": "Ready"}
            if first_words:
                await ws.send(msgpack.packb({"type": "Text", "text": first_words}))
            # What a client's MessagePack carries for such a string (Python's packer needs telling).
            await ws.send(msgpack.packb({"type": "Text", "text": LONE_SURROGATE_TEXT}, unicode_errors="surrogatepass"))
            messages = []
            try:
                while True:
                    messages.append(msgpack.unpackb(await asyncio.wait_for(ws.recv(), 120)))
            except websockets.ConnectionClosed:
                return messages, ws.close_code

    messages, close_code = asyncio.run(session())
    assert messages[-1] == {"type": "Error", "message": f"text {SURROGATE_MESSAGE}"}
    assert close_code == 1008


def test_mcp_answers_a_lone_surrogate_with_a_tool_error(base_url):
    call = ('{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "text_to_speech", '
            f'"arguments": {{"text": {LONE_SURROGATE_JSON}, "save": false}}}}}}')
    response = httpx.post(f"{base_url}/mcp", content=call.encode(), timeout=60,
                          headers={"Accept": "application/json, text/event-stream", "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["isError"] and result["content"][0]["text"] == f"text {SURROGATE_MESSAGE}"
