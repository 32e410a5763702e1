"""serve_app/service/worker_client.py against a fake Serve handle (no Ray cluster): every Ray failure
becomes a WorkerError, and a text stream's words wait for its feed to open."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest
from ray.serve.exceptions import BackPressureError

from deployments.protocol import AudioChunk, FailureKind, SynthesisDone, SynthesisRequest, TextFeedOpened
from serve_app.service.speech import api_error_for
from serve_app.service.worker_client import WorkerClient, WorkerError


class FakeResponses:
    """What `handle.synthesize_stream.options(stream=True).remote(request)` returns."""

    def __init__(self, batches, error: Exception | None = None):
        self.batches, self.error = list(batches), error
        self.cancelled = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        if not self.batches:
            raise StopAsyncIteration
        return self.batches.pop(0)

    def cancel(self):
        self.cancelled = True
        if self.error is not None:  # as Serve does for a request it never assigned
            raise self.error


def client_for(responses: FakeResponses, sent: list) -> WorkerClient:
    def remote(request):
        sent.append(request)
        return responses

    handle = SimpleNamespace(synthesize_stream=SimpleNamespace(
        options=lambda stream: SimpleNamespace(remote=remote)))
    return WorkerClient(handle, "test-app", timeout_s=5)


def test_back_pressure_is_an_overloaded_worker_error_and_a_503():
    sent = []
    responses = FakeResponses([], BackPressureError(2, 1))
    client = client_for(responses, sent)
    with pytest.raises(WorkerError) as refused:
        asyncio.run(client.synthesize(SynthesisRequest("Hello.")))
    assert refused.value.kind == FailureKind.OVERLOADED
    assert refused.value.message == "all TTS workers are busy and their queues are full; retry shortly"
    assert isinstance(sent[0], SynthesisRequest)  # the dataclass itself crosses the handle
    assert responses.cancelled  # tried, and its error did not replace the WorkerError
    error = api_error_for(refused.value)
    assert (error.status, error.code, error.message) == (503, "overloaded", refused.value.message)
    assert error.headers["Retry-After"]


class FakeInbox:
    def __init__(self):
        self.put = SimpleNamespace(remote=self._put)
        self.items = []

    async def _put(self, session, text, end):
        self.items.append((session, text, end))


def test_a_text_stream_sends_words_once_its_feed_opened_and_hides_the_feed_event():
    inbox = FakeInbox()
    done = SynthesisDone("r1", "voice", 0.08, [])
    chunk = AudioChunk(np.zeros(1920, np.float32))
    responses = FakeResponses([[TextFeedOpened(inbox=inbox, session="s1")], [chunk], [done]])

    async def main():
        client = client_for(responses, [])
        stream = client.open_text_stream(SynthesisRequest("Hello there", stream_text=True))
        sending = asyncio.create_task(stream.send("my friend"))  # before the feed is open: waits
        await asyncio.sleep(0)
        assert inbox.items == []
        events = [event async for event in stream.events()]
        await sending
        await stream.end()
        return events

    events = asyncio.run(main())
    assert events == [chunk, done]
    assert inbox.items == [("s1", "my friend", False), ("s1", None, True)]


def test_only_stream_text_requests_open_a_text_stream():
    with pytest.raises(ValueError):
        client_for(FakeResponses([]), []).open_text_stream(SynthesisRequest("Hello."))


def test_an_expired_stream_is_a_503_to_retry_not_a_generation_failure():
    """A paced stream that fell stream_lead_s + stream_grace_s behind its playback (the device is
    slower than real time now) tells its SSE client to retry, as an overloaded service does."""
    error = api_error_for(WorkerError("the stream fell behind its playback and was stopped; retry the request",
                                      kind=FailureKind.EXPIRED))
    assert (error.status, error.code) == (503, "stream_expired")
    assert error.headers["Retry-After"]
