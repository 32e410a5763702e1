"""`/api/tts_streaming`, Kyutai's moshi-server TTS WebSocket protocol, end to end with `websockets`
and `msgpack` as Kyutai's clients (Unmute, delayed-streams-modeling) speak it, against the real Serve
app. Also the optional API keys, on an app configured with some."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlencode

import httpx
import msgpack
import numpy as np
import pytest
import websockets
from helpers.speech_checks import (
    LONG_TEXT,
    LONG_TEXT_WORDS,
    SAMPLE_RATE,
    decode,
    total_admissions,
    total_steps,
    wait_idle,
)

FIRST = "Hello there, my friend, how are you doing today?"
SHORT = "Hello there, my friend."  # where some audio is all a test needs (~2-3 ticks a word)
SECOND = "I am fine. Thanks for asking, and goodbye."
# Guards against a hang only: every assertion is about content and order.
RECEIVE_GUARD_S = 120


def ws_url(base_url: str, **query) -> str:
    return base_url.replace("http://", "ws://") + "/api/tts_streaming?" + urlencode(query)


def norm(word: str) -> str:
    return re.sub(r"\W", "", word.lower())


async def receive(ws) -> dict:
    return msgpack.unpackb(await asyncio.wait_for(ws.recv(), RECEIVE_GUARD_S))


async def receive_all(ws, closed_by=websockets.ConnectionClosedOK) -> list:
    """Every message until the server closes; only a close of the `closed_by` kind is expected
    (a normal close by default, any close for error cases)."""
    messages = []
    try:
        while True:
            messages.append(await asyncio.wait_for(ws.recv(), RECEIVE_GUARD_S))
    except closed_by:
        return messages


def test_audio_arrives_while_the_client_is_still_sending_text(base_url):
    async def session():
        async with websockets.connect(ws_url(base_url, voice="vctk/p225_023.wav", format="PcmMessagePack",
                                             cfg_alpha=1.5)) as ws:
            assert await receive(ws) == {"type": "Ready"}
            for word in FIRST.split():  # word by word, as an LLM produces them
                await ws.send(msgpack.packb({"type": "Text", "text": word}))
            before_rest = []
            while not before_rest or before_rest[-1]["type"] != "Audio":
                before_rest.append(await receive(ws))
            # Audio is playing and the rest of the text has not even been sent.
            await ws.send(msgpack.packb({"type": "Text", "text": SECOND}))
            await ws.send(msgpack.packb({"type": "Eos"}))
            after = [msgpack.unpackb(m) for m in await receive_all(ws)]
            return before_rest + after, ws.close_code

    messages, close_code = asyncio.run(session())
    assert close_code == 1000
    assert {m["type"] for m in messages} == {"Audio", "Text"}
    audio = [np.asarray(m["pcm"], np.float32) for m in messages if m["type"] == "Audio"]
    assert all(frame.shape == (1920,) for frame in audio)  # one 80 ms frame per message
    seconds = sum(frame.shape[0] for frame in audio) / SAMPLE_RATE
    words = [m for m in messages if m["type"] == "Text"]
    assert [norm(w["text"]) for w in words] == [norm(w) for w in (FIRST + " " + SECOND).split()]
    for previous, word in zip([None] + words, words):
        assert set(word) == {"type", "text", "start_s", "stop_s"}
        assert 0 <= word["start_s"] <= word["stop_s"] <= seconds + 0.08
        if previous:
            assert previous["stop_s"] <= word["start_s"] + 1e-6
    # Words of the second message are timed after the first message's audio.
    first_count = len(FIRST.split())
    assert words[first_count]["start_s"] >= words[first_count - 1]["stop_s"]


def test_whole_text_then_eos_in_raw_and_ogg_formats(base_url):
    async def session(fmt: str) -> list:
        async with websockets.connect(ws_url(base_url, voice="unmute-prod-website/default_voice.wav",
                                             format=fmt)) as ws:
            await ws.send(msgpack.packb({"type": "Text", "text": SHORT}))
            await ws.send(b"\0")  # moshi-server's other end-of-stream marker
            return await receive_all(ws)

    pcm = asyncio.run(session("Pcm"))  # raw float32 little-endian frames, no control messages
    assert pcm and all(len(m) == 1920 * 4 for m in pcm)
    samples = np.frombuffer(b"".join(pcm), "<f4")
    assert np.isfinite(samples).all() and np.abs(samples).max() <= 1.0
    ogg = asyncio.run(session("OggOpus"))  # raw Ogg pages
    rate, seconds = decode(b"".join(ogg))
    assert ogg[0][:4] == b"OggS" and rate == 48_000 and seconds > 0
    packed = [msgpack.unpackb(m) for m in asyncio.run(session("OggOpusMessagePack"))]
    assert packed[0] == {"type": "Ready"}
    pages = b"".join(m["data"] for m in packed if m["type"] == "OggOpus")
    assert {m["type"] for m in packed} == {"Ready", "OggOpus", "Text"} and decode(pages)[1] > 0


def test_unknown_voice_gets_an_error_message_then_the_socket_closes(base_url):
    async def session():
        async with websockets.connect(ws_url(base_url, voice="nobody/none.wav")) as ws:
            messages = [msgpack.unpackb(m) for m in await receive_all(ws, closed_by=websockets.ConnectionClosed)]
            return messages, ws.close_code

    messages, close_code = asyncio.run(session())
    assert len(messages) == 1 and messages[0]["type"] == "Error"
    assert "nobody/none.wav" in messages[0]["message"]
    assert close_code == 1008


@pytest.mark.parametrize("bad", [msgpack.packb({"type": "Bogus"}), b"\x93not msgpack",
                                 msgpack.packb({"type": "Voice", "embeddings": [0.0], "shape": [1]})])
def test_bad_messages_get_an_error_message(base_url, bad):
    async def session():
        async with websockets.connect(ws_url(base_url)) as ws:
            assert await receive(ws) == {"type": "Ready"}
            await ws.send(bad)
            return [msgpack.unpackb(m) for m in await receive_all(ws, closed_by=websockets.ConnectionClosed)]

    messages = asyncio.run(session())
    assert messages[-1]["type"] == "Error" and messages[-1]["message"]


def test_bad_query_is_refused(base_url):
    async def connect(**query):
        async with websockets.connect(ws_url(base_url, **query)) as ws:
            return await receive_all(ws, closed_by=websockets.ConnectionClosed)

    for query in ({"format": "Mp3"}, {"cfg_alpha": "7"}):
        with pytest.raises((websockets.InvalidStatus, websockets.ConnectionClosedError)):
            asyncio.run(connect(**query))


def test_a_client_that_leaves_stops_its_generation(base_url):
    before = wait_idle()

    async def session():
        async with websockets.connect(ws_url(base_url)) as ws:
            assert await receive(ws) == {"type": "Ready"}
            await ws.send(msgpack.packb({"type": "Text", "text": LONG_TEXT}))
            await ws.send(msgpack.packb({"type": "Eos"}))
            while (await receive(ws))["type"] != "Audio":
                pass
        # leaving the block closed the socket after the first audio

    asyncio.run(session())
    reports = wait_idle()
    # One generation, stopped early: the whole text would take at least a step per word.
    assert total_admissions(reports) - total_admissions(before) == 1, reports
    assert 1 <= total_steps(reports) - total_steps(before) < LONG_TEXT_WORDS, reports


def test_a_session_over_the_text_limit_gets_an_error_and_the_service_goes_on(base_url):
    # Each message is far under the limit; together they pass the test app's max_text_chars (2000).
    message = "Some words that keep coming, one message after another, in a long session."
    count = 2000 // len(message) + 1

    async def over_limit():
        async with websockets.connect(ws_url(base_url)) as ws:
            assert await receive(ws) == {"type": "Ready"}
            for _ in range(count):
                await ws.send(msgpack.packb({"type": "Text", "text": message}))
            await ws.send(msgpack.packb({"type": "Eos"}))
            return [msgpack.unpackb(m) for m in await receive_all(ws, closed_by=websockets.ConnectionClosed)], ws.close_code

    messages, close_code = asyncio.run(over_limit())
    assert messages[-1]["type"] == "Error", messages[-1]
    assert "2000 characters" in messages[-1]["message"] and str(count * len(message)) in messages[-1]["message"]
    assert {m["type"] for m in messages[:-1]} <= {"Audio", "Text"}  # what the first pieces said, if any
    assert close_code == 1008

    async def next_session():
        async with websockets.connect(ws_url(base_url)) as ws:
            await ws.send(msgpack.packb({"type": "Text", "text": SHORT}))
            await ws.send(msgpack.packb({"type": "Eos"}))
            return [msgpack.unpackb(m) for m in await receive_all(ws)], ws.close_code

    messages, close_code = asyncio.run(next_session())
    assert close_code == 1000
    assert [norm(m["text"]) for m in messages if m["type"] == "Text"] == [norm(w) for w in SHORT.split()]


def test_words_sent_one_by_one_are_one_continuous_generation(base_url):
    """As Unmute sends an LLM's words: one Text message per word, the slot speaking meanwhile."""
    words = LONG_TEXT.split()[:20]
    before = wait_idle()

    async def session():
        async with websockets.connect(ws_url(base_url)) as ws:
            assert await receive(ws) == {"type": "Ready"}
            for word in words:
                await ws.send(msgpack.packb({"type": "Text", "text": word}))
            await ws.send(msgpack.packb({"type": "Eos"}))
            return [msgpack.unpackb(m) for m in await receive_all(ws)]

    messages = asyncio.run(session())
    reports = wait_idle()
    assert total_admissions(reports) - total_admissions(before) == 1, reports  # no second generation
    spoken = [m for m in messages if m["type"] == "Text"]
    assert [norm(m["text"]) for m in spoken] == [norm(w) for w in words]
    # One timeline from the first word to the last: no restart at zero, no overlap.
    for previous, word in zip(spoken, spoken[1:]):
        assert previous["stop_s"] <= word["start_s"] + 1e-6
    seconds = sum(len(m["pcm"]) for m in messages if m["type"] == "Audio") / SAMPLE_RATE
    assert spoken[-1]["stop_s"] == pytest.approx(seconds, abs=0.01)


def test_a_voice_message_gives_the_session_its_own_voice(base_url):
    embedding = np.random.default_rng(1).normal(size=512 * 125).astype(np.float32).tolist()

    async def session(voice_message: dict):
        async with websockets.connect(ws_url(base_url)) as ws:
            assert await receive(ws) == {"type": "Ready"}
            await ws.send(msgpack.packb(voice_message, use_single_float=True))
            await ws.send(msgpack.packb({"type": "Text", "text": FIRST}))
            await ws.send(msgpack.packb({"type": "Eos"}))
            return [msgpack.unpackb(m) for m in await receive_all(ws, closed_by=websockets.ConnectionClosed)]

    spoken = asyncio.run(session({"type": "Voice", "embeddings": embedding, "shape": [1, 512, 125]}))
    assert [norm(m["text"]) for m in spoken if m["type"] == "Text"] == [norm(w) for w in FIRST.split()]
    assert any(m["type"] == "Audio" for m in spoken)
    refused = asyncio.run(session({"type": "Voice", "embeddings": embedding[:-1] + [float("inf")],
                                   "shape": [1, 512, 125]}))
    assert refused[-1]["type"] == "Error" and "voice embedding" in refused[-1]["message"]
    assert not any(m["type"] == "Audio" for m in refused)


# ---- API keys -------------------------------------------------------------------------------------
# `keyed_url` (tests/conftest.py): an app with api_keys set, whose worker may scale to zero.


def test_api_keys_guard_the_websocket_and_the_openai_routes(keyed_url, base_url):
    async def session(headers=None, **query):
        async with websockets.connect(ws_url(keyed_url, **query), additional_headers=headers or {}) as ws:
            ready = await receive(ws)
            await ws.send(msgpack.packb({"type": "Eos"}))  # no text: nothing to generate
            await receive_all(ws)
            return ready

    for headers in (None, {"kyutai-api-key": "wrong"}):
        with pytest.raises(websockets.InvalidStatus) as refused:
            asyncio.run(session(headers))
        assert refused.value.response.status_code == 401
    assert asyncio.run(session({"kyutai-api-key": "secret-key"})) == {"type": "Ready"}
    assert asyncio.run(session(auth_id="secret-key")) == {"type": "Ready"}  # browsers: in the query

    assert httpx.get(f"{keyed_url}/v1/models").status_code == 401
    assert httpx.get(f"{keyed_url}/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    allowed = httpx.get(f"{keyed_url}/v1/models", headers={"Authorization": "Bearer secret-key"})
    assert allowed.status_code == 200 and allowed.json()["object"] == "list"
    # Without api_keys (the main app) everything stays open.
    assert httpx.get(f"{base_url}/v1/models").status_code == 200


# ---- hostile clients -------------------------------------------------------------------------------
KEY = {"kyutai-api-key": "secret-key"}


def test_an_oversized_frame_is_refused_before_it_is_decoded(base_url):
    async def session():
        async with websockets.connect(ws_url(base_url), max_size=None) as ws:
            assert await receive(ws) == {"type": "Ready"}
            await ws.send(msgpack.packb([[]] * 1_000_000))  # a million nested arrays, 1 MB
            return [msgpack.unpackb(m) for m in await receive_all(ws, closed_by=websockets.ConnectionClosed)], ws.close_code

    messages, close_code = asyncio.run(session())
    assert messages[-1]["type"] == "Error" and "refused" in messages[-1]["message"]
    assert close_code == 1008


def ingress_pid(app: str) -> int:
    import ray

    (pid,) = [info["Pid"] for info in ray._private.state.actors().values()
              if info.get("State") == "ALIVE" and info.get("ActorClassName") == f"ServeReplica:{app}:Ingress"]
    return pid


def memory_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:"))


def test_container_bombs_in_parallel_leave_the_ingress_memory_flat(base_url):
    """The finding: two 8 MB frames of nested empty arrays grew the ingress by 580 MB. Frames that
    big are refused unread (test above); this one is under the size limit, so it is decoded: nine
    arrays of 64,000 empty arrays, 576 KB that would build ~40 MB of lists. Four at once leave
    the ingress's peak memory where it was: decoding stops at the ninth container."""
    frame = msgpack.packb([[[]] * 64_000] * 9)

    async def hostile() -> tuple[list, int]:
        async with websockets.connect(ws_url(base_url), max_size=None) as ws:
            assert await receive(ws) == {"type": "Ready"}
            await ws.send(frame)
            return [msgpack.unpackb(m) for m in await receive_all(ws, closed_by=websockets.ConnectionClosed)], ws.close_code

    async def attack():
        return await asyncio.gather(*(hostile() for _ in range(4)))

    pid = ingress_pid("tts")
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")  # the peak (VmHWM) restarts from the resident size now
    before = memory_kib(pid, "VmRSS")
    results = asyncio.run(attack())
    peak_growth = (memory_kib(pid, "VmHWM") - before) * 1024
    for messages, close_code in results:
        assert messages[-1]["type"] == "Error" and "invalid message" in messages[-1]["message"]
        assert close_code == 1008
    assert peak_growth < 16 * 2**20, f"the ingress's peak grew by {peak_growth / 2**20:.0f} MiB"
    assert httpx.get(f"{base_url}/health", timeout=30).status_code == 200


def test_sessions_beyond_the_cap_are_told_to_retry(keyed_url):
    async def scenario():
        async with websockets.connect(ws_url(keyed_url), additional_headers=KEY) as first:
            assert await receive(first) == {"type": "Ready"}
            async with websockets.connect(ws_url(keyed_url), additional_headers=KEY) as second:
                refused = [msgpack.unpackb(m) for m in await receive_all(second, closed_by=websockets.ConnectionClosed)]
                refused_code = second.close_code
            await first.send(msgpack.packb({"type": "Eos"}))
            await receive_all(first)
        async with websockets.connect(ws_url(keyed_url), additional_headers=KEY) as third:
            ready = await receive(third)
            await third.send(msgpack.packb({"type": "Eos"}))
            await receive_all(third)
        return refused, refused_code, ready

    refused, refused_code, ready = asyncio.run(scenario())
    assert len(refused) == 1 and refused[0]["type"] == "Error" and "sessions" in refused[0]["message"]
    assert refused_code == 1013
    assert ready == {"type": "Ready"}  # the slot freed with the first session


def test_empty_text_does_not_keep_a_session_alive(keyed_url):
    async def session():
        async with websockets.connect(ws_url(keyed_url), additional_headers=KEY) as ws:
            assert await receive(ws) == {"type": "Ready"}

            async def keep_sending_nothing():
                while True:
                    await ws.send(msgpack.packb({"type": "Text", "text": " "}))
                    await asyncio.sleep(0.2)

            sender = asyncio.create_task(keep_sending_nothing())
            try:
                return [msgpack.unpackb(m) for m in await receive_all(ws, closed_by=websockets.ConnectionClosed)]
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)

    messages = asyncio.run(session())
    assert messages[-1]["type"] == "Error" and "no text for 2 s" in messages[-1]["message"]
