"""One session of Kyutai's TTS WebSocket: the rules between the client's messages and one worker
synthesis (the wire is serve_app/protocols/kyutai.py, the socket routes/websocket.py).

One session is one continuous generation on one worker slot, whatever the pace of the text: the
first Text message starts it (a `Voice` message with a custom speaker embedding may come before,
as Unmute sends it), and later words go straight into that running slot (a TextStream, through the
worker's text inbox). The model speaks a word once it has two more words of look-ahead or the text
is complete (Eos), so audio starts after the first three words, with no seams. Whatever the client
does, one session's text totals at most `max_text_chars` (`Error` beyond), which bounds the work
one socket can ask for, and a session that sends no words for `idle_timeout_s` before Eos ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Callable, Protocol

from deployments.engine.base import unicode_problem
from deployments.protocol import AudioChunk, FailureKind, SynthesisDone, WordSpoken

from ..errors import APIError
from ..protocols.kyutai import ClientMessage, Eos, OutputEncoder, SessionError, Text, Voice
from .worker_client import TextStream, WorkerError

log = logging.getLogger(__name__)


class Connection(Protocol):
    """The client's socket as a session sees it."""

    async def receive(self) -> ClientMessage: ...

    async def send(self, data: bytes) -> None: ...


# Opens the session's synthesis: its first words, and the client's speaker embedding if it sent one.
OpenStream = Callable[[str, list | None], TextStream]


class KyutaiSession:
    def __init__(self, connection: Connection, output: OutputEncoder, open_stream: OpenStream, *,
                 max_text_chars: int, idle_timeout_s: float):
        self.connection, self.output, self.open_stream = connection, output, open_stream
        self.max_text_chars, self.idle_timeout_s = max_text_chars, idle_timeout_s
        self.voice_embedding: list | None = None
        self.inbox: asyncio.Queue[ClientMessage] = asyncio.Queue()
        self.stream: TextStream | None = None  # the synthesis, once the first words came
        self.generation: asyncio.Task | None = None  # sends its events to the client
        self.generation_started = asyncio.Event()
        self.text_chars = 0

    async def _send(self, data: bytes | None) -> None:
        if data:
            await self.connection.send(data)

    # ---- client -> words -----------------------------------------------------------------------
    async def read_messages(self) -> None:
        """Reads every client message into `self.inbox`. It keeps reading after Eos (ignoring what
        comes) so that a client leaving is noticed at once and cancels the generation."""
        eos = False
        while True:
            message = await self.connection.receive()
            if not eos:
                self.inbox.put_nowait(message)
                eos = isinstance(message, Eos)

    async def receive_text(self) -> None:
        """Starts the generation with the first words, then sends it every later word, in order.
        A session that sends nothing but empty Text for `idle_timeout_s` ends."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.idle_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(self.inbox.get(), timeout=max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise SessionError(f"no text for {self.idle_timeout_s:g} s before Eos") from None
            if not isinstance(message, Text) or message.text.strip():
                deadline = loop.time() + self.idle_timeout_s
            if isinstance(message, Voice):
                if self.stream is not None:
                    raise SessionError("a Voice message must come before the first Text")
                self.voice_embedding = message.embedding
                continue
            if isinstance(message, Eos):
                if self.stream is not None:
                    await self.stream.end()
                return
            if not message.text.strip():
                continue  # nothing to say
            problem = unicode_problem(message.text)
            if problem:  # refused here: no worker is asked to speak it
                raise SessionError(f"text {problem}")
            self.text_chars += len(message.text)
            if self.text_chars > self.max_text_chars:
                raise SessionError(f"the text of one session is limited to {self.max_text_chars} characters "
                                   f"(max_text_chars); this one sent {self.text_chars}")
            if self.stream is None:
                self.stream = self.open_stream(message.text, self.voice_embedding)
                self.generation = asyncio.create_task(self.forward(self.stream))
                self.generation_started.set()
            else:
                await self.stream.send(message.text)

    # ---- worker events -> client ---------------------------------------------------------------
    async def forward(self, stream: TextStream) -> None:
        # Closed at once however it ends: that cancels the synthesis if it still runs.
        async with contextlib.aclosing(stream.events()) as events:
            async for event in events:
                if isinstance(event, AudioChunk):
                    for data in self.output.frames(event.pcm):
                        await self._send(data)
                elif isinstance(event, WordSpoken):
                    await self._send(self.output.word(event.word))
                elif isinstance(event, SynthesisDone):
                    break

    async def run(self) -> None:
        """Ready, then the session until its text is spoken (or the first failure, raised)."""
        await self._send(self.output.ready())
        receiving = asyncio.create_task(self.receive_text())
        reader = asyncio.create_task(self.read_messages())
        # Wakes the loop below when the generation starts, so that a worker failure before the
        # client's Eos ends the session at once.
        started = asyncio.create_task(self.generation_started.wait())
        try:
            # Done when the text is complete and its audio sent; stopped by the first failure (a
            # client gone, a bad message, a worker error).
            pending = {receiving, reader, started}
            while not (receiving.done() and (self.generation is None or self.generation.done())):
                if self.generation is not None:
                    pending.add(self.generation)
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is not None:
                        raise task.exception()
            await self._send(self.output.end())
        finally:
            tasks = [receiving, reader, started] + ([self.generation] if self.generation else [])
            for task in tasks:
                task.cancel()  # a cancelled generation closes its worker stream: the slot is freed
            await asyncio.gather(*tasks, return_exceptions=True)


def failure(exc: BaseException) -> tuple[FailureKind, str]:
    """What the client is told about the failure that ended its session: its kind (the close code)
    and the Error message. A failure nobody expected is logged here, and only named to the client."""
    if isinstance(exc, WorkerError):
        return exc.kind, exc.message
    if isinstance(exc, (SessionError, APIError)):
        return FailureKind.INVALID, str(exc)
    log.error("tts_streaming session failed", exc_info=exc)
    return FailureKind.ERROR, "internal error; it is logged on the server"
