"""MCP over streamable HTTP at /mcp, driven by the official MCP Python client against the real Serve
app (tiny model, local Ray with logical GPUs)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import wave
from pathlib import Path

import av
import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import AudioContent, CallToolResult, TextContent

from tests.helpers.mcp_client import mcp_session

REPO = Path(__file__).resolve().parents[2]
TOOLS = {"text_to_speech", "list_voices", "get_gpu_status", "offload_gpu", "clone_voice", "speech_to_text"}
DEFAULT_VOICE = "unmute-prod-website/default_voice.wav"
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "raw-http", "version": "0"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def run(coro_fn, *args):
    return asyncio.run(coro_fn(*args))


def decode_wav(data: bytes) -> tuple[int, int, int]:
    with wave.open(io.BytesIO(data)) as clip:
        return clip.getframerate(), clip.getnchannels(), clip.getnframes()


def audio_of(result: CallToolResult) -> tuple[AudioContent, bytes]:
    assert not result.isError, result.content
    audio = [c for c in result.content if isinstance(c, AudioContent)]
    assert len(audio) == 1
    return audio[0], base64.b64decode(audio[0].data)


def error_text(result: CallToolResult) -> str:
    assert result.isError, result
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def test_initialize_and_tool_schemas(base_url):
    # The shipped client config, pointed at this test's port.
    server = json.loads((REPO / "mcp_config.json").read_text())["mcpServers"]["kyutai-tts"]
    assert server["type"] == "http"
    shipped = httpx.URL(server["url"])
    assert (shipped.host, shipped.port) == ("127.0.0.1", 8000)

    async def scenario():
        async with httpx.AsyncClient(timeout=60) as http:
            url = str(httpx.URL(base_url).copy_with(path=shipped.path))
            async with streamable_http_client(url, http_client=http) as (read, write, _):
                async with ClientSession(read, write) as session:
                    init = await session.initialize()
                    return init, (await session.list_tools()).tools

    init, tools = run(scenario)
    assert init.serverInfo.name == "kyutai-tts" and init.capabilities.tools is not None
    by_name = {t.name: t for t in tools}
    assert set(by_name) == TOOLS
    for tool in tools:
        assert tool.description and tool.inputSchema["type"] == "object"
        for name, prop in tool.inputSchema.get("properties", {}).items():
            assert prop.get("description"), f"{tool.name}.{name} has no description"

    tts = by_name["text_to_speech"].inputSchema
    assert tts["required"] == ["text"]
    props = tts["properties"]
    assert props["text"]["type"] == "string" and "2000" in props["text"]["description"]  # the configured limit
    assert {"type": "string"} in props["voice"]["anyOf"]
    assert set(props["format"]["enum"]) == {"wav", "mp3", "opus", "aac", "flac", "pcm"}
    assert props["format"]["default"] == "wav"
    cfg = next(s for s in props["cfg_coef"]["anyOf"] if s.get("type") == "number")
    assert (cfg["minimum"], cfg["maximum"], cfg["multipleOf"]) == (1.0, 4.0, 0.5)
    output = by_name["text_to_speech"].outputSchema
    assert {"url", "duration_s", "voice", "words", "mime_type"} <= set(output["properties"])

    assert "required" not in by_name["list_voices"].inputSchema
    assert {"type": "string", "maxLength": 100} in by_name["list_voices"].inputSchema["properties"]["filter"]["anyOf"]
    assert by_name["get_gpu_status"].inputSchema["properties"] == {}
    gpu = by_name["offload_gpu"].inputSchema["properties"]["gpu"]
    assert {"type": "integer", "minimum": 0} in gpu["anyOf"]
    assert by_name["get_gpu_status"].annotations.readOnlyHint is True


def test_text_to_speech_returns_the_audio_and_a_url_serving_the_same_bytes(base_url):
    async def scenario():
        async with mcp_session(f"{base_url}/mcp") as session:
            plain = await session.call_tool("text_to_speech", {"text": "Hello from the MCP endpoint."})
            chosen = await session.call_tool("text_to_speech", {"text": "Bonjour tout le monde.",
                                                                 "voice": "vctk/p225_023.wav",
                                                                 "format": "flac", "cfg_coef": 3.0})
            return plain, chosen

    plain, chosen = run(scenario)
    content, data = audio_of(plain)
    facts = plain.structuredContent
    assert content.mimeType == "audio/wav" == facts["mime_type"]
    rate, channels, frames = decode_wav(data)
    assert (rate, channels) == (24000, 1) and frames > 0
    assert facts["duration_s"] == pytest.approx(frames / 24000, abs=0.01)
    assert facts["voice"] == DEFAULT_VOICE and facts["format"] == "wav"
    assert [w["word"] for w in facts["words"]] and all(w["start_s"] <= w["end_s"] for w in facts["words"])
    assert facts["gpu"] in (0, 1)
    assert facts["url"].startswith(f"{base_url}/api/outputs/") and facts["url"].endswith(".wav")
    download = httpx.get(facts["url"], timeout=30)
    assert download.status_code == 200 and download.content == data
    assert download.headers["content-type"] == "audio/wav"

    content, data = audio_of(chosen)
    facts = chosen.structuredContent
    assert content.mimeType == "audio/flac" and facts["voice"] == "vctk/p225_023.wav"
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        assert (stream.codec_context.name, stream.rate, stream.channels) == ("flac", 24000, 1)
        samples = sum(frame.samples for frame in container.decode(stream))
    assert samples > 0 and facts["duration_s"] == pytest.approx(samples / 24000, abs=0.01)
    assert httpx.get(facts["url"], timeout=30).content == data


def test_list_voices_matches_the_rest_route(base_url, client):
    async def scenario():
        async with mcp_session(f"{base_url}/mcp") as session:
            return (await session.call_tool("list_voices", {}),
                    await session.call_tool("list_voices", {"filter": "VCTK"}),
                    await session.call_tool("list_voices", {"filter": "fr"}))

    everything, vctk, french = run(scenario)
    assert everything.structuredContent == client.get("/api/voices").json()
    assert everything.structuredContent["default"] == DEFAULT_VOICE
    ids = [v["id"] for v in everything.structuredContent["voices"]]
    assert DEFAULT_VOICE in ids and "vctk/p225_023.wav" in ids
    assert [v["id"] for v in vctk.structuredContent["voices"]] == ["vctk/p225_023.wav"]
    assert french.structuredContent == client.get("/api/voices", params={"filter": "fr"}).json()
    assert "cml-tts/fr/2154_2576_000020.wav" in [v["id"] for v in french.structuredContent["voices"]]


def test_gpu_status_and_offload(base_url, client):
    async def scenario():
        async with mcp_session(f"{base_url}/mcp") as session:
            # A synthesis first: the replica that served it has the model loaded.
            warm = await session.call_tool("text_to_speech", {"text": "Warm up the model."})
            audio_of(warm)
            loaded_gpu = warm.structuredContent["gpu"]
            before = await session.call_tool("get_gpu_status", {})
            offload = await session.call_tool("offload_gpu", {"gpu": loaded_gpu})
            after = await session.call_tool("get_gpu_status", {})
            nothing = await session.call_tool("offload_gpu", {"gpu": 7})
            everywhere = await session.call_tool("offload_gpu", {})
            again = await session.call_tool("text_to_speech", {"text": "Back again."})
            return loaded_gpu, before, offload, after, nothing, everywhere, again

    loaded_gpu, before, offload, after, nothing, everywhere, again = run(scenario)
    rest = client.get("/api/gpu/status").json()
    status = before.structuredContent
    assert not before.isError and sorted(r["gpu"] for r in status["replicas"]) == [0, 1]
    assert {r["replica"] for r in status["replicas"]} == {r["replica"] for r in rest["replicas"]}
    assert status["total_ray_gpus"] == rest["total_ray_gpus"] and len(status["nodes"]) == len(rest["nodes"])
    assert next(r for r in status["replicas"] if r["gpu"] == loaded_gpu)["state"] == "ready"

    assert not offload.isError and offload.structuredContent["requested"] == 1
    assert [(r["gpu"], r["result"]) for r in offload.structuredContent["results"]] == [(loaded_gpu, "offloaded")]
    assert next(r for r in after.structuredContent["replicas"] if r["gpu"] == loaded_gpu)["state"] == "offloaded"
    assert nothing.structuredContent["requested"] == 0
    assert everywhere.structuredContent["requested"] == 2
    audio_of(again)  # the model comes back by itself


def test_errors_are_tool_errors_and_the_session_keeps_working(base_url):
    cases = [
        ({"text": ""}, "empty"),
        ({"text": "   \n "}, "empty"),
        ({"text": "x" * 2001}, "limit is 2000"),
        ({"text": "Hi.", "voice": "nobody/nothing.wav"}, "unknown voice"),
        ({"text": "Hi.", "voice": "../../etc/passwd"}, "must not contain '..'"),
        ({"text": "Hi.", "voice": "/etc/passwd"}, "not an absolute path"),
        ({"text": "Hi.", "cfg_coef": 3.3}, "cfg_coef: Input should be a multiple of 0.5"),
        ({"text": "Hi.", "format": "ogg"}, "format: Input should be 'wav'"),
        ({"voice": DEFAULT_VOICE}, "text: Field required"),
    ]

    async def scenario():
        async with mcp_session(f"{base_url}/mcp") as session:
            results = [await session.call_tool("text_to_speech", arguments) for arguments, _ in cases]
            unknown_tool = await session.call_tool("no_such_tool", {})
            bad_gpu = await session.call_tool("offload_gpu", {"gpu": -1})
            return results, unknown_tool, bad_gpu, await session.call_tool("text_to_speech", {"text": "Still here."})

    results, unknown_tool, bad_gpu, after = run(scenario)
    for (arguments, expected), result in zip(cases, results):
        message = error_text(result)
        assert expected in message, (arguments, message)
        assert "x" * 100 not in message and "pydantic.dev" not in message  # short, no echo of the text
    assert "no_such_tool" in error_text(unknown_tool)
    assert "gpu: Input should be greater than or equal to 0" in error_text(bad_gpu)
    _, data = audio_of(after)
    assert decode_wav(data)[2] > 0


def test_unavailable_model_is_a_tool_error(broken_url):
    async def scenario():
        async with mcp_session(f"{broken_url}/mcp") as session:
            failed = await session.call_tool("text_to_speech", {"text": "Anyone there?"})
            # Replicas report once a second; on a busy machine a report may come late, and the
            # registry then lists none for a moment. A bound against hangs, not a timing check.
            for _ in range(60):
                status = await session.call_tool("get_gpu_status", {})
                if status.isError or status.structuredContent["replicas"]:
                    break
                await asyncio.sleep(0.5)
            return failed, status

    failed, status = run(scenario)
    message = error_text(failed)
    assert "unavailable" in message and "retry after" in message
    assert not status.isError and status.structuredContent["replicas"]


def test_two_clients_at_once_get_their_own_results(base_url):
    short, long = "Short one.", "This second request is much longer, with many more words to speak than the first."

    async def speak(text: str):
        async with mcp_session(f"{base_url}/mcp") as session:
            return await session.call_tool("text_to_speech", {"text": text})

    async def scenario():
        return await asyncio.gather(speak(short), speak(long))

    first, second = run(scenario)
    audio_of(first), audio_of(second)
    words_first = [w["word"] for w in first.structuredContent["words"]]
    words_second = [w["word"] for w in second.structuredContent["words"]]
    assert "".join(words_first) in short.replace(" ", "") and "".join(words_second) in long.replace(" ", "")
    assert len(words_second) > len(words_first)
    assert second.structuredContent["duration_s"] > first.structuredContent["duration_s"]
    assert first.structuredContent["url"] != second.structuredContent["url"]


@pytest.mark.parametrize("path", ["/mcp", "/mcp/"])
def test_host_and_origin_checks(base_url, path):
    url = f"{base_url}{path}"
    accepted = httpx.post(url, json=INITIALIZE, headers=MCP_HEADERS, timeout=30)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["result"]["serverInfo"]["name"] == "kyutai-tts"
    rebound = httpx.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "Host": "evil.example"}, timeout=30)
    assert rebound.status_code == 421
    foreign = httpx.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "Origin": "http://evil.example"}, timeout=30)
    assert foreign.status_code == 403
    local_page = httpx.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "Origin": "http://localhost:3000"},
                            timeout=30)
    assert local_page.status_code == 200


def test_stateless_any_request_stands_alone(base_url):
    """No session id is handed out, and a tools/call needs no earlier request: any ingress replica
    can answer any request."""
    init = httpx.post(f"{base_url}/mcp", json=INITIALIZE, headers=MCP_HEADERS, timeout=30)
    assert init.status_code == 200 and "mcp-session-id" not in init.headers
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "list_voices", "arguments": {"filter": "expresso"}}}
    response = httpx.post(f"{base_url}/mcp", json=call, headers=MCP_HEADERS, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    result = response.json()["result"]
    assert not result["isError"]
    voices = [v["id"] for v in result["structuredContent"]["voices"]]
    assert voices == ["expresso/ex03-ex01_happy_001_channel1_334s.wav"]


def test_save_false_returns_the_audio_and_writes_no_file(base_url, serve_cluster):
    async def scenario():
        async with mcp_session(f"{base_url}/mcp") as session:
            tools = {t.name: t for t in (await session.list_tools()).tools}
            before = sorted(p.name for p in serve_cluster.outputs.iterdir())
            result = await session.call_tool("text_to_speech", {"text": "Nothing saved.", "save": False})
            return tools["text_to_speech"], before, result

    tool, before, result = run(scenario)
    save = tool.inputSchema["properties"]["save"]
    assert save["type"] == "boolean" and save["default"] is True and "url" in save["description"]
    _, data = audio_of(result)
    assert decode_wav(data)[2] > 0
    assert result.structuredContent["url"] is None and result.structuredContent["duration_s"] > 0
    assert sorted(p.name for p in serve_cluster.outputs.iterdir()) == before
