"""Streamed synthesis for the HTTP routes: audio leaves the service frame by frame as the worker
generates it (chunked audio, or Server-Sent Events with base64 audio and word timestamps).

The worker's events arrive through the Serve handle (`WorkerClient.stream_batches`). `open_speech` waits for
the FIRST event before any response starts, so a refused request (unknown voice, overloaded workers,
model unavailable) still gets its proper HTTP status; the audio cannot start earlier anyway. After
that the status line is sent and the body follows as frames are encoded.

A client that goes away stops its generation: Serve cancels the request in the ingress, the body
generator is closed, and closing the worker stream cancels the request on the worker, which drops
it from its batch.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from typing import AsyncIterator, Callable

import numpy as np
from starlette.responses import StreamingResponse

from deployments.protocol import FRAME_SAMPLES, AudioChunk, SynthesisDone, SynthesisRequest, WordSpoken

from .. import audio
from ..context import IngressContext
from ..errors import APIError
from ..protocols.sse import error_event, sse
from .speech import api_error_for
from ..audio.tempo import Tempo
from .worker_client import WorkerError

log = logging.getLogger(__name__)

# Headers for every streamed response: no buffering by proxies (nginx honours X-Accel-Buffering).
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class SpeechStream:
    """One synthesis running on a worker whose first batch of events has arrived. Iterate
    `batches()` once; `aclose()` (always called by the body generators here) cancels it if it is
    still running."""

    def __init__(self, batches: AsyncIterator[list], first_batch: list):
        self._batches = batches
        self._first = first_batch

    async def batches(self) -> AsyncIterator[list]:
        """The worker's events as it sent them (a few frames at a time); raises WorkerError if the
        synthesis fails midway."""
        yield self._first
        async for batch in self._batches:
            yield batch

    async def aclose(self) -> None:
        await self._batches.aclose()


async def open_speech(ctx: IngressContext, request: SynthesisRequest, text_param: str = "text",
                      speed: float = 1.0) -> SpeechStream:
    """Submits a validated worker request (`speech.synthesis_request`) and waits for its first
    event; raises APIError with the right status for every refusal (naming the route's text
    field `text_param`). The stream is paced to its client's playback at `speed` (the worker
    makes it at most `stream_lead_s` ahead: deployments/engine/pacing.py)."""
    request = dataclasses.replace(request, playback_rate=speed)
    return await first_events(ctx.workers_for(request).stream_batches(request),
                              lambda exc: api_error_for(exc, text_param))


async def first_events(batches: AsyncIterator[list], refusal: Callable[[WorkerError], APIError]) -> SpeechStream:
    """A worker request's stream once its first batch has come (of speech or of a transcription);
    a failure before it is raised as `refusal(exc)`, an HTTP error with its status."""
    try:
        first = await batches.__anext__()
    except WorkerError as exc:
        raise refusal(exc) from None
    except StopAsyncIteration:
        raise APIError(500, "the worker ended the stream without a result", code="generation_failed") from None
    except BaseException:
        await batches.aclose()
        raise
    return SpeechStream(batches, first)


class ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse that always closes its body generator, even when the request is
    cancelled while a chunk is being sent (Starlette only stops iterating): closing it is what
    cancels the generation on the worker."""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()


async def encoded_audio(stream: SpeechStream, fmt: str, speed: float = 1.0,
                        on_event: Callable[[object], None] | None = None) -> AsyncIterator[bytes]:
    """Encoded audio bytes of `fmt` as frames arrive (time-stretched when speed != 1). `on_event`
    sees every worker event (words, done). A failure after the response started ends the body with
    an error (the connection is cut), so a client never takes a truncated stream for a whole one."""
    encoder = audio.StreamEncoder(fmt)
    tempo = Tempo(speed)

    def encode(pcm):
        return encoder.feed(tempo.process(pcm))

    try:
        async for batch in stream.batches():
            frames, done = [], False
            for event in batch:
                if on_event is not None:
                    on_event(event)
                if isinstance(event, AudioChunk):
                    frames.append(event.pcm)
                elif isinstance(event, SynthesisDone):
                    done = True
                    break
            if frames:
                # The frames of one worker batch (what it made in its last flush interval) leave
                # as ONE body message: each message costs the ingress and Serve's proxy more than
                # encoding a frame does (benchmarks/ingress_service_cpu.py). An 80 ms frame
                # encodes in well under a millisecond: here, as a thread hop would cost more;
                # more goes to a thread, never blocking the event loop, awaited in order.
                pcm = frames[0] if len(frames) == 1 else np.concatenate(frames)
                if audio.costly(fmt, round(pcm.shape[0] / speed)):
                    data = await asyncio.to_thread(encode, pcm)
                else:
                    data = encode(pcm)
                if data:
                    yield data
            if done:
                break
        tail = encoder.feed(tempo.flush()) + encoder.finish()
        if tail:
            yield tail
    except WorkerError as exc:
        # Chunked audio has no way to say it: the connection is cut (the client sees a broken
        # body, never a short file taken for a whole one). SSE callers send an error event.
        log.warning("synthesis failed after its response started (%s): %s", exc.kind, exc.message)
        raise
    finally:
        await stream.aclose()


def sse_error(exc: Exception) -> bytes:
    """The error event that ends a started SSE stream: a worker's failure as its HTTP error would
    say it, anything else as a generic 500 (the details go to the log only)."""
    if isinstance(exc, WorkerError):
        return error_event(api_error_for(exc))
    log.error("streamed synthesis failed", exc_info=exc)
    return error_event(APIError(500, "generation failed (the details are in the service's log)",
                                code="generation_failed"))


async def sse_speech(stream: SpeechStream, fmt: str, speed: float, *, audio_type: str,
                     word_type: str | None, done: Callable[[SynthesisDone, list[dict], int], dict]
                     ) -> AsyncIterator[bytes]:
    """Server-Sent Events: `{"type": audio_type, "audio": base64}` per encoded chunk, then (when
    `word_type` is set) `{"type": word_type, word, start_s, end_s}` per word as soon as it is
    known, then `done(SynthesisDone, words, audio_frames)`. A failure midway sends
    `{"type": "error", "error": {...}}` and ends the stream."""
    words: list[dict] = []
    pending: list[bytes] = []
    final: list[SynthesisDone] = []
    frames = 0

    def on_event(event) -> None:
        nonlocal frames
        if isinstance(event, WordSpoken):
            word = event.word.scaled(speed).to_dict()
            words.append(word)
            if word_type:
                pending.append(sse({"type": word_type, **word}))
        elif isinstance(event, AudioChunk):
            frames += max(1, round(event.pcm.shape[0] / FRAME_SAMPLES))
        elif isinstance(event, SynthesisDone):
            final.append(event)

    chunks = encoded_audio(stream, fmt, speed, on_event)
    try:
        async for chunk in chunks:
            # Words first: they describe audio that is at or after this chunk.
            while pending:
                yield pending.pop(0)
            yield sse({"type": audio_type, "audio": base64.b64encode(chunk).decode("ascii")})
        while pending:
            yield pending.pop(0)
        if final:
            yield sse(done(final[0], words, frames))
    except Exception as exc:  # noqa: BLE001 - a started stream ends with an error event, never cut
        yield sse_error(exc)
    finally:
        await chunks.aclose()  # at once, not when the garbage collector gets to it
