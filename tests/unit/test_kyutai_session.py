"""serve_app/service/kyutai_session.py, one Kyutai WebSocket session's rules, against a fake socket
and a fake text stream (no Ray, no worker)."""

from __future__ import annotations

import asyncio

import msgpack
import numpy as np
import pytest

from deployments.protocol import FRAME_SAMPLES, AudioChunk, FailureKind, SynthesisDone, Word, WordSpoken
from serve_app.protocols.kyutai import Eos, OutputEncoder, SessionError, Text, Voice
from serve_app.service.kyutai_session import KyutaiSession, failure
from serve_app.service.worker_client import WorkerError
from helpers.fake_connection import FakeConnection

GUARD_S = 10  # against a hang only


class FakeTextStream:
    """Speaks one frame and a word per batch of words it gets; done once the text is complete."""

    def __init__(self, first_words: str, voice_embedding, fail_with: Exception | None = None):
        self.words, self.voice_embedding = [first_words], voice_embedding
        self.fail_with = fail_with
        self.arrived = asyncio.Queue()
        self.arrived.put_nowait(first_words)
        self.closed = False

    async def events(self):
        try:
            if self.fail_with is not None:
                raise self.fail_with
            while (words := await self.arrived.get()) is not None:
                yield AudioChunk(np.zeros(FRAME_SAMPLES, np.float32))
                yield WordSpoken(Word(words.split()[0], 0.0, 0.08))
            yield SynthesisDone("r1", "voice", 0.08, [])
        finally:
            self.closed = True

    async def send(self, text: str) -> None:
        self.words.append(text)
        self.arrived.put_nowait(text)

    async def end(self) -> None:
        self.arrived.put_nowait(None)


def run_session(connection: FakeConnection, max_text_chars: int = 100, idle_timeout_s: float = 5.0,
                fail_with: Exception | None = None, opened: list | None = None) -> list[FakeTextStream]:
    """The streams the session opened (also in `opened`, when given, if the session fails)."""
    opened = [] if opened is None else opened

    def open_stream(first_words, voice_embedding):
        opened.append(FakeTextStream(first_words, voice_embedding, fail_with))
        return opened[-1]

    session = KyutaiSession(connection, OutputEncoder("PcmMessagePack"), open_stream,
                            max_text_chars=max_text_chars, idle_timeout_s=idle_timeout_s)

    async def main():
        await asyncio.wait_for(session.run(), GUARD_S)

    asyncio.run(main())
    return opened


def test_first_words_open_one_stream_later_words_feed_it_and_eos_ends_it():
    connection = FakeConnection(Text("Hello there"), Text("   "), Text("my friend"), Eos(), Text("ignored"))
    (stream,) = run_session(connection)
    assert stream.words == ["Hello there", "my friend"]  # blank Text says nothing
    assert stream.closed
    kinds = [m["type"] for m in connection.sent]
    assert kinds == ["Ready", "Audio", "Text", "Audio", "Text"]
    assert [m["text"] for m in connection.sent if m["type"] == "Text"] == ["Hello", "my"]


def test_eos_before_any_text_ends_the_session_without_a_stream():
    connection = FakeConnection(Eos())
    assert run_session(connection) == []
    assert connection.sent == [{"type": "Ready"}]


def test_a_voice_message_before_the_first_text_is_the_streams_speaker():
    embedding = [0.5] * 4
    (stream,) = run_session(FakeConnection(Voice(embedding), Text("Hello"), Eos()))
    assert stream.voice_embedding == embedding


def test_a_voice_message_after_the_first_text_ends_the_session():
    with pytest.raises(SessionError, match="before the first Text"):
        run_session(FakeConnection(Text("Hello"), Voice([0.5])))


def test_one_sessions_text_is_limited_in_total():
    with pytest.raises(SessionError, match="limited to 10 characters"):
        run_session(FakeConnection(Text("Hello"), Text("there my friend")), max_text_chars=10)


def test_a_session_without_words_ends_after_the_idle_timeout():
    with pytest.raises(SessionError, match="no text for 0.05 s"):
        run_session(FakeConnection(Text(" ")), idle_timeout_s=0.05)


def test_a_worker_failure_ends_the_session_before_the_clients_eos():
    with pytest.raises(WorkerError) as failed:
        run_session(FakeConnection(Text("Hello")), fail_with=WorkerError("busy", FailureKind.OVERLOADED))
    assert failure(failed.value) == (FailureKind.OVERLOADED, "busy")


def test_failures_are_told_by_kind_and_unexpected_ones_only_named():
    assert failure(SessionError("bad message")) == (FailureKind.INVALID, "bad message")
    assert failure(RuntimeError("/secret/path")) == (FailureKind.ERROR, "internal error; it is logged on the server")


@pytest.mark.parametrize("messages", [(Text("abc \udcff def"),), (Text("Hello there"), Text("abc \udcff def"))])
def test_text_that_is_not_unicode_ends_the_session_before_a_worker_gets_it(messages):
    """A lone surrogate (no UTF-8 text holds one: no tokenizer takes it), first or later words."""
    opened = []
    with pytest.raises(SessionError, match=r"text must be Unicode text: it holds a lone surrogate \(U\+DCFF\)") as refused:
        run_session(FakeConnection(*messages, Eos()), opened=opened)
    assert failure(refused.value)[0] == FailureKind.INVALID  # an Error message and close code 1008
    # Only the good first words ever opened a stream; the bad ones reached none.
    assert [stream.words for stream in opened] == ([["Hello there"]] if len(messages) > 1 else [])
