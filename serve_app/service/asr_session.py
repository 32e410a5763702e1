"""One session of Kyutai's ASR WebSocket: the rules between the client's messages and one worker
transcription (the wire is serve_app/protocols/kyutai_asr.py, the socket routes/asr.py).

One session is one stream on one worker row. It opens at once; `Ready` is sent when the stream
holds a row (the worker's `Listening`). When every row of every warm replica is busy the request
waits in Serve's queue: after `free_row_wait_s` the session ends with `Error "no free channels"`,
as moshi-server answers (it has no queue); a replica still starting or loading its model is waited
for (the worker client's timeout). Audio and markers go to the row in order (an AudioStream, through
the replica's inbox); the loop there is not clocked, so audio sent faster than real time is heard
faster. A session ends after `idle_timeout_s` without a message while its row has nothing left to
hear (a client may send a burst and wait: DSM's file client sends 35 s of silence at once, then
waits for its Marker), and at `max_session_s` of audio or of wall time; a client that goes away
closes the stream, which frees its row at the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Awaitable, Callable, Protocol

from deployments.protocol import (SAMPLE_RATE, FailureKind, Listening, PauseHeard, StreamMarker, TranscriptionDone,
                                  WordBegun, WordHeard)

from ..protocols import kyutai_asr
from ..protocols.kyutai_asr import Audio, ClientMessage, End, Marker, ProtocolError
from .worker_client import AudioStream, WorkerError

log = logging.getLogger(__name__)

NO_FREE_CHANNELS = "no free channels"


class NoFreeChannels(Exception):
    """Every row of every warm replica stayed busy for the session's short wait."""


class Connection(Protocol):
    async def receive(self) -> ClientMessage: ...

    async def send(self, data: bytes) -> None: ...


class AsrSession:
    def __init__(self, connection: Connection, stream: AudioStream, warm: Callable[[], Awaitable[bool]], *,
                 free_row_wait_s: float, idle_timeout_s: float, max_session_s: float):
        self.connection, self.stream, self.warm = connection, stream, warm
        self.free_row_wait_s, self.idle_timeout_s, self.max_session_s = free_row_wait_s, idle_timeout_s, max_session_s
        self.listening = asyncio.Event()
        self.samples = 0
        self.last_event = 0.0  # loop time of the worker's last event: its row was still hearing then

    # ---- client -> worker ----------------------------------------------------------------------
    async def read_messages(self) -> None:
        """Sends the client's audio and markers on, in order; keeps reading after the end of the
        audio (ignoring it) so that a client leaving is noticed at once. Idle: no message and no event
        for `idle_timeout_s` (a row steps only while it holds the client's audio, and a model with
        voice-activity heads sends a Step at each step)."""
        loop = asyncio.get_running_loop()
        ended, last_message = False, loop.time()
        while True:
            quiet_until = max(last_message, self.last_event) + self.idle_timeout_s
            try:
                message = await asyncio.wait_for(self.connection.receive(), max(0.0, quiet_until - loop.time()))
            except asyncio.TimeoutError:
                if not self.listening.is_set() or ended:
                    last_message = loop.time()
                    continue  # waiting for its row, or for the last words: not the client's silence
                if loop.time() - self.last_event < self.idle_timeout_s:
                    continue  # still hearing audio the client sent before
                raise ProtocolError(f"no message for {self.idle_timeout_s:g} s") from None
            last_message = loop.time()
            if ended:
                continue
            if isinstance(message, Audio):
                self.samples += len(message.pcm)
                if self.samples > self.max_session_s * SAMPLE_RATE:
                    raise ProtocolError(f"a session holds at most {self.max_session_s:g} s of audio")
                await self.stream.send(message.pcm)
            elif isinstance(message, Marker):
                await self.stream.mark(message.id)
            elif isinstance(message, End):
                ended = True
                await self.stream.end()

    # ---- worker -> client ----------------------------------------------------------------------
    async def forward(self) -> None:
        """The worker's events as Kyutai's messages, until the stream is done."""
        async with contextlib.aclosing(self.stream.events()) as events:
            async for event in events:
                self.last_event = asyncio.get_running_loop().time()
                if isinstance(event, Listening):
                    self.listening.set()
                    await self.connection.send(kyutai_asr.ready())
                elif isinstance(event, WordBegun):
                    await self.connection.send(kyutai_asr.word(event.text, event.start_s))
                elif isinstance(event, WordHeard):
                    await self.connection.send(kyutai_asr.end_word(event.word.end_s))
                elif isinstance(event, PauseHeard):
                    await self.connection.send(kyutai_asr.step(event.step, event.pause_prs, event.buffered_samples))
                elif isinstance(event, StreamMarker):
                    await self.connection.send(kyutai_asr.marker(event.marker_id))
                elif isinstance(event, TranscriptionDone):
                    return

    async def _wait_for_row(self, tasks: set[asyncio.Task]) -> None:
        """Until the stream holds a row: at most `free_row_wait_s` while the model's replicas are
        warm and full (then NoFreeChannels); as long as the worker client allows while one starts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.free_row_wait_s
        listening = asyncio.ensure_future(self.listening.wait())
        try:
            while not self.listening.is_set():
                done, _ = await asyncio.wait(tasks | {listening}, timeout=max(0.0, deadline - loop.time()),
                                             return_when=asyncio.FIRST_COMPLETED)
                _raise_failures(done - {listening})
                if not done and await self.warm():
                    raise NoFreeChannels()
                deadline = loop.time() + self.free_row_wait_s
        finally:
            listening.cancel()

    async def run(self) -> None:
        """The session until the stream is done (or the first failure, raised)."""
        forward = asyncio.create_task(self.forward())
        reader = asyncio.create_task(self.read_messages())
        try:
            async with asyncio.timeout(self.max_session_s):
                await self._wait_for_row({forward, reader})
                done, _ = await asyncio.wait({forward, reader}, return_when=asyncio.FIRST_COMPLETED)
                _raise_failures(done)
        except TimeoutError:
            raise ProtocolError(f"a session lasts at most {self.max_session_s:g} s") from None
        finally:
            for task in (forward, reader):
                task.cancel()  # a cancelled forward closes its worker stream: the row is freed
            await asyncio.gather(forward, reader, return_exceptions=True)


def _raise_failures(done) -> None:
    for task in done:
        if task.exception() is not None:
            raise task.exception()


def failure(exc: BaseException) -> tuple[FailureKind, str]:
    """The kind (close code) and Error message of the failure that ended a session."""
    if isinstance(exc, NoFreeChannels):
        return FailureKind.OVERLOADED, NO_FREE_CHANNELS
    if isinstance(exc, WorkerError):
        if exc.kind is FailureKind.OVERLOADED:  # Serve's queue is full too
            return exc.kind, NO_FREE_CHANNELS
        return exc.kind, exc.message
    if isinstance(exc, ProtocolError):
        return FailureKind.INVALID, str(exc)
    log.error("asr-streaming session failed", exc_info=exc)
    return FailureKind.ERROR, "internal error; it is logged on the server"
