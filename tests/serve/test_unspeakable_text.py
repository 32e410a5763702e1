"""Text no tokenizer can take (a lone surrogate, valid JSON), on every surface of the running app
(the shared test cluster's main app, the real tiny model behind it): a 422 naming the field (REST
`text`, OpenAI `input`), an Error message and close code 1008 (the WebSocket), a tool error (MCP),
each refused by the ingress before a worker is involved. Before, such a text reached the tokenizer
and came back as a 500.

The rest of the API contract (every operation against its OpenAPI document, Schemathesis) is
tests/unit/test_contract.py, in process over the fake engine.
"""

from __future__ import annotations

import asyncio

import httpx
import msgpack
import pytest
import websockets

LONE_SURROGATE_TEXT = "abc \udcff def"
# The same text as JSON sends it (httpx would refuse to encode the str itself).
LONE_SURROGATE_JSON = '"abc \\udcff def"'
SURROGATE_MESSAGE = "must be Unicode text: it holds a lone surrogate (U+DCFF) at character 4"


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
