"""serve_app/service/asr_session.py's idle bound against a fake socket and a fake worker stream
(no Ray, no model): a client that sent a burst and waits for it to be heard is not idle."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from deployments.protocol import FRAME_SAMPLES, Listening, PauseHeard
from serve_app.protocols.kyutai_asr import Audio, ProtocolError
from serve_app.service.asr_session import AsrSession
from helpers.fake_connection import FakeConnection

GUARD_S = 20  # against a hang only


class SlowRow:
    """A worker row that hears the buffered frames one step every `step_s` (a busy replica), a
    Step for each, then waits for more audio."""

    def __init__(self, step_s: float):
        self.step_s, self.frames = step_s, 0

    async def send(self, pcm) -> None:
        self.frames += len(pcm) // FRAME_SAMPLES

    async def events(self):
        yield Listening()
        heard = 0
        while True:
            await asyncio.sleep(self.step_s)
            if heard < self.frames:
                heard += 1
                yield PauseHeard(heard, [0.5] * 4, (self.frames - heard) * FRAME_SAMPLES)


async def _warm() -> bool:
    return True


def test_a_client_whose_burst_is_still_being_heard_is_not_idle():
    # 20 frames heard over ~1 s against a 0.4 s idle bound: the session used to end after ~8 Steps.
    client, row = FakeConnection(Audio(np.zeros(20 * FRAME_SAMPLES, np.float32))), SlowRow(step_s=0.05)
    session = AsrSession(client, row, _warm, free_row_wait_s=1.0, idle_timeout_s=0.4, max_session_s=60)
    with pytest.raises(ProtocolError, match="no message for 0.4 s"):
        asyncio.run(asyncio.wait_for(session.run(), GUARD_S))
    assert client.sent[0] == {"type": "Ready"}
    # Every step of the burst reached the client; only then did its silence count.
    assert [m["step_idx"] for m in client.sent if m["type"] == "Step"] == list(range(1, 21))
