"""`/api/asr-streaming`, Kyutai's ASR WebSocket, end to end: the duo app's tiny speech-to-text
model ("ears", 2 rows, tests/conftest.py) heard through the real Serve app with the project's own
client (tests/helpers/asr_client.py)."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
import websockets

from deployments.protocol import FRAME_RATE, FRAME_SAMPLES, SAMPLE_RATE
from conftest import EARS_ROWS
from helpers.asr_client import AsrClient
from helpers.clips import checkpoint_clip

DELAY_FRAMES = math.ceil(0.5 * FRAME_RATE)  # the tiny model's delay, as stt-1b-en_fr's


def test_a_clip_sent_faster_than_real_time_is_heard_with_every_message_type(duo_url, tiny_stt_checkpoint):
    audio = checkpoint_clip(tiny_stt_checkpoint, "clips/mid.wav")
    frames = math.ceil(len(audio) / FRAME_SAMPLES)

    async def run():
        client = await AsrClient.connect(duo_url, model="ears")
        assert (await client.next())["type"] == "Ready"
        # The whole clip at once, then a marker, then silence (as Kyutai's client does).
        await client.send_audio(audio)
        await client.marker(7)
        await client.send_audio(np.zeros(SAMPLE_RATE, np.float32), chunk=SAMPLE_RATE)
        marker = await client.until("Marker")
        steps_at_marker = [m for m in client.received if m["type"] == "Step"]
        await client.end()
        return marker, steps_at_marker, await client.rest(), client.ws.close_code

    marker, steps_at_marker, messages, close_code = asyncio.run(run())
    assert marker == {"type": "Marker", "id": 7}
    # The marker comes back once the model has heard the clip through its delay: not before.
    assert len(steps_at_marker) >= frames + DELAY_FRAMES
    assert close_code == 1000
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "Ready" and {"Word", "EndWord", "Step", "Marker"} <= set(kinds) and "Error" not in kinds
    steps = [m for m in messages if m["type"] == "Step"]
    assert [s["step_idx"] for s in steps] == list(range(1, len(steps) + 1))
    assert all(len(s["prs"]) == 4 and all(0 <= p <= 1 for p in s["prs"]) for s in steps)
    # Not clocked: audio sent ahead waits in the row and is heard a frame a step, without waiting.
    buffered = [s["buffered_pcm"] for s in steps]
    assert max(buffered) > FRAME_SAMPLES and buffered[-1] == 0
    assert any(a - b == FRAME_SAMPLES for a, b in zip(buffered, buffered[1:]))
    # Each Word, then its EndWord, in order; times in the clip.
    words = [m for m in messages if m["type"] in ("Word", "EndWord")]
    assert [m["type"] for m in words] == ["Word", "EndWord"] * (len(words) // 2) and words
    for begun, ended in zip(words[::2], words[1::2]):
        assert 0 <= begun["start_time"] <= ended["stop_time"] <= len(audio) / SAMPLE_RATE + 1.5


def test_full_rows_say_no_free_channels_a_gone_client_frees_its_row_and_frames_are_bounded(duo_url):
    async def run():
        holders = [await AsrClient.connect(duo_url, model="ears") for _ in range(EARS_ROWS)]
        assert [(await h.next())["type"] for h in holders] == ["Ready"] * EARS_ROWS
        refused = await AsrClient.connect(duo_url, model="ears")
        error = await refused.next()
        await refused.rest()
        full = (error, refused.ws.close_code)
        holders[0].ws.transport.abort()  # gone without a close handshake
        # The gone client's row is freed (once the proxy and the ingress have seen it go, and the
        # worker has stepped): a new stream gets it. Refusals meanwhile are the same full house.
        for _ in range(30):  # each refusal waits asr_free_row_wait_s (1 s): a bound against a hang
            again = await AsrClient.connect(duo_url, model="ears")
            ready = await again.next()
            if ready["type"] == "Ready":
                break
            assert ready == {"type": "Error", "message": "no free channels"}
            await again.rest()
        # A frame larger than any valid message is refused before it is decoded.
        await again.ws.send(b"\x91" * (240_000 * 9 + 257))
        bound = await again.next()
        await again.rest()
        for holder in holders[1:]:
            await holder.close()
        return full, ready, bound, again.ws.close_code

    (error, code), ready, bound, bound_code = asyncio.run(run())
    assert error == {"type": "Error", "message": "no free channels"} and code == 1013
    assert ready["type"] == "Ready"
    assert bound["type"] == "Error" and "no valid message is larger than" in bound["message"] and bound_code == 1008


@pytest.mark.parametrize("query, status", [({"model": "first"}, 400), ({"model": "nope"}, 400)])
def test_a_model_that_does_not_listen_is_refused_at_the_handshake(duo_url, query, status):
    async def run():
        with pytest.raises(websockets.InvalidStatus) as refused:
            await AsrClient.connect(duo_url, **query)
        return refused.value.response.status_code

    assert asyncio.run(run()) == status
