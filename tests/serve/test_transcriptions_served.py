"""Speech to text of whole files through the real Serve app: the duo app's tiny speech-to-text model
("ears", tests/conftest.py) heard through the OpenAI SDK (`audio.transcriptions.create`, unchanged)
and through MCP's speech_to_text with the official client, base64 and a saved output's URL. The
model is deterministic (temperature 0), so every surface must give the same words for one clip."""

from __future__ import annotations

import asyncio
import base64

import openai
import pytest

from tests.helpers.mcp_client import mcp_session

CLIP = "clips/mid.wav"  # 2.8 s; the tiny model hears at least 3 words in it (deployments/checkpoint_stt.py)


@pytest.fixture(scope="module")
def oai(duo_url):
    with openai.OpenAI(base_url=f"{duo_url}/v1", api_key="not-needed", max_retries=0, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def verbose(oai, tiny_stt_checkpoint):
    """The clip through the SDK with word times (both tests compare with it)."""
    return oai.audio.transcriptions.create(model="whisper-1", file=("mid.wav", (tiny_stt_checkpoint / CLIP).read_bytes()),
                                           response_format="verbose_json", timestamp_granularities=["word"])


def test_the_openai_sdk_transcribes_a_file_with_word_times_and_streams_it(oai, tiny_stt_checkpoint, verbose):
    data = (tiny_stt_checkpoint / CLIP).read_bytes()
    words = verbose.words
    assert len(words) >= 3 and verbose.text == " ".join(w.word for w in words)
    assert all(0 <= w.start <= w.end <= verbose.duration + 0.5 for w in words)
    assert verbose.duration == pytest.approx(2.8, abs=0.1) and verbose.language == "english"
    plain = oai.audio.transcriptions.create(model="ears", file=("mid.wav", data))
    assert plain.text == verbose.text
    events = list(oai.audio.transcriptions.create(model="whisper-1", file=("mid.wav", data), stream=True))
    assert [e.type for e in events] == ["transcript.text.delta"] * (len(events) - 1) + ["transcript.text.done"]
    assert "".join(e.delta for e in events[:-1]) == events[-1].text == verbose.text
    with pytest.raises(openai.APIStatusError) as refused:  # not audio: a 415 in OpenAI's shape
        oai.audio.transcriptions.create(model="whisper-1", file=("notes.wav", b"not audio at all"))
    assert refused.value.status_code == 415 and refused.value.body["code"] == "clip_not_audio"


def test_mcp_speech_to_text_hears_base64_and_a_saved_output(duo_url, tiny_stt_checkpoint, verbose):
    data = (tiny_stt_checkpoint / CLIP).read_bytes()

    async def run():
        async with mcp_session(f"{duo_url}/mcp") as session:
            inline = await session.call_tool("speech_to_text", {
                "audio_base64": base64.b64encode(data).decode("ascii"), "model": "ears"})
            spoken = await session.call_tool("text_to_speech", {"text": "Hello there.", "format": "wav"})
            saved = await session.call_tool("speech_to_text", {"url": spoken.structuredContent["url"]})
            elsewhere = await session.call_tool("speech_to_text", {"url": "http://example.com/api/outputs/x.wav"})
            return inline, spoken, saved, elsewhere

    inline, spoken, saved, elsewhere = asyncio.run(run())
    assert not inline.isError, inline.content
    result = inline.structuredContent
    assert result["model"] == "ears" and len(result["words"]) >= 3
    assert result["text"] == " ".join(w["word"] for w in result["words"])
    # The same clip, the same model at temperature 0: the same words and times through either API.
    assert [(w["word"], w["start_s"], w["end_s"]) for w in result["words"]] == [
        (w.word, pytest.approx(w.start, abs=1e-3), pytest.approx(w.end, abs=1e-3)) for w in verbose.words]
    assert not saved.isError, saved.content
    assert saved.structuredContent["duration_s"] == pytest.approx(spoken.structuredContent["duration_s"], abs=0.1)
    assert elsewhere.isError and "never fetched" in elsewhere.content[0].text
