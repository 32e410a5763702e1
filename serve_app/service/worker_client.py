"""The ingress's view of the TTSWorker deployment for synthesis: requests through the Serve handle,
every Ray failure turned into a `WorkerError`, streamed text through a `TextStream`, and what the
last outcome says about the model. Status and offload are serve_app/service/cluster.py's (they
never use the handle, which would wake a deployment scaled to zero)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator, Callable

import numpy as np
from ray.serve.exceptions import BackPressureError

from deployments.protocol import (AudioChunk, FailureKind, InputFeedOpened, StreamMarker, SynthesisDone,
                                  SynthesisFailed, SynthesisRequest, TranscriptionDone, TranscriptionRequest)


log = logging.getLogger(__name__)


class WorkerError(Exception):
    """A synthesis the workers refused or could not do, and why (`kind`)."""

    def __init__(self, message: str, kind: FailureKind = FailureKind.ERROR, param: str | None = None):
        super().__init__(message)
        self.message, self.kind, self.param = message, kind, param


WORKER_CRASHED = ("the TTS worker serving this request stopped (it crashed or was replaced); "
                  "retry the request")
WORKERS_BUSY = "all TTS workers are busy and their queues are full; retry shortly"


class WorkerClient:
    def __init__(self, handle, app_name: str, timeout_s: float = 600.0):
        self.handle = handle
        self.app_name = app_name
        # The longest wait for a worker's next event: the first one (which may include a cold
        # start from zero replicas) and every gap after it.
        self.timeout_s = timeout_s
        self.last_model_error: str | None = None
        self._outcome_at = float("-inf")  # time.monotonic() of the last synthesis outcome

    # ---- synthesis -----------------------------------------------------------------------
    async def stream(self, request: SynthesisRequest | TranscriptionRequest,
                     last_input: Callable[[], float] | None = None) -> AsyncIterator:
        """Events of one synthesis (or transcription) as the worker produces them (see `stream_batches`)."""
        batches = self.stream_batches(request, last_input)
        try:
            async for events in batches:
                for event in events:
                    yield event
        finally:
            await batches.aclose()

    async def stream_batches(self, request: SynthesisRequest | TranscriptionRequest,
                             last_input: Callable[[], float] | None = None) -> AsyncIterator[list]:
        """Events of one synthesis in the batches the worker sends them (every event that
        accumulated over its flush interval: a route that sends one message per batch sends a few
        times fewer than one per 80 ms frame). Closing this iterator (a client that went away)
        cancels the request on the worker. Raises WorkerError, after the batch's events before
        the failure, when the workers refuse it (OVERLOADED: every queue is full), fail, die or go
        silent for `timeout_s`; `last_input()` (the loop time of the client's last words, for
        streamed text) restarts that wait: a worker owes nothing until it has words."""
        method = "transcribe_stream" if isinstance(request, TranscriptionRequest) else "synthesize_stream"
        responses = getattr(self.handle, method).options(stream=True).remote(request)
        finished = False
        started = False
        try:
            while True:
                events = await self._next_events(responses, started, last_input)
                if events is None:
                    return
                started = True
                for index, event in enumerate(events):
                    if isinstance(event, SynthesisFailed):
                        finished = True
                        if event.kind == FailureKind.UNAVAILABLE:
                            self.note_outcome(event.message)
                        if index:
                            yield events[:index]
                        raise WorkerError(event.message, event.kind, event.param)
                    if isinstance(event, (SynthesisDone, TranscriptionDone)):
                        finished = True
                        self.note_outcome(None)
                        events = events[:index + 1]
                        break
                yield events
                if finished:
                    return
        finally:
            if not finished:
                _cancel(responses)

    async def _next_events(self, responses, started: bool, last_input: Callable[[], float] | None) -> list | None:
        """The worker's next batch of events (None at the end of its stream)."""
        loop = asyncio.get_running_loop()
        waiting = asyncio.ensure_future(responses.__anext__())
        since = loop.time()
        try:
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=max(0.0, since + self.timeout_s - loop.time()))
                if done:
                    break
                if last_input is not None and last_input() > since:
                    since = last_input()
                    continue
                raise WorkerError(f"the TTS worker sent nothing for {self.timeout_s:g} s; the request was stopped"
                                  if started else f"no TTS worker started this request within {self.timeout_s:g} s",
                                  kind=FailureKind.TIMEOUT)
        except BaseException:
            waiting.cancel()
            raise
        try:
            return waiting.result()
        except StopAsyncIteration:
            return None
        except WorkerError:
            raise
        except BackPressureError:  # Serve refused it: every replica and its queue are full
            raise WorkerError(WORKERS_BUSY, kind=FailureKind.OVERLOADED) from None
        except Exception as exc:  # RayActorError and kin: the replica died under this request
            log.warning("a TTS worker stream broke (%s: %s)", exc.__class__.__name__, str(exc)[:500])
            raise WorkerError(WORKER_CRASHED, kind=FailureKind.CRASHED) from None

    async def synthesize(self, request: SynthesisRequest) -> tuple[np.ndarray, SynthesisDone]:
        chunks = []
        async for event in self.stream(request):
            if isinstance(event, AudioChunk):
                chunks.append(event.pcm)
            elif isinstance(event, SynthesisDone):
                audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
                return audio, event
        raise WorkerError("the worker ended the stream without a result")

    def open_text_stream(self, request: SynthesisRequest) -> "TextStream":
        """A `stream_text` synthesis whose words keep coming while it speaks (see TextStream)."""
        if not request.stream_text:
            raise ValueError("open_text_stream needs a stream_text request")
        return TextStream(self, request)

    def open_audio_stream(self, request: TranscriptionRequest) -> "AudioStream":
        """A `stream_audio` transcription whose audio keeps coming while it is heard (see AudioStream)."""
        if not request.stream_audio:
            raise ValueError("open_audio_stream needs a stream_audio request")
        return AudioStream(self, request)

    # ---- what the last outcome says about the model -------------------------------------------
    def model_error(self, replicas: list[dict]) -> str | None:
        """Why a TTS request cannot succeed now, or None: the last load failed and no replica has
        the model. Replicas report every REPORT_PERIOD_S, so right after a synthesis a report may
        not know its outcome yet ("loading" after a failure, "failed" after a success): only reports
        made since the last outcome seen here count, and where none says more, that outcome."""
        since_outcome = time.monotonic() - self._outcome_at
        models = [r.get("model", {}) for r in replicas if r.get("reported_s_ago", 0) <= since_outcome]
        if any(m.get("state") in ("ready", "offloaded") for m in models):
            self.last_model_error = None  # a replica has loaded it since: that error is history
            return None
        failed = next((m.get("error") for m in models if m.get("state") == "failed"), None)
        return failed or self.last_model_error

    def note_outcome(self, model_error: str | None) -> None:
        """Records how the last synthesis went: None when the model spoke, else why it could not load."""
        self.last_model_error, self._outcome_at = model_error, time.monotonic()

def _cancel(responses) -> None:
    """Cancels a request on its worker. For a request Serve never assigned, cancel() raises again
    why (back-pressure, no replica): nothing runs then, and the caller already has that failure as
    a WorkerError, which this must not replace."""
    try:
        responses.cancel()
    except Exception as exc:  # noqa: BLE001
        log.debug("cancelling a TTS request: %s: %s", exc.__class__.__name__, exc)


class InputStream:
    """One request fed while it runs (the WebSockets): iterate `events()` once for what the worker
    sends (WorkerError on failure; closing it cancels the request), and `put()` / `end()` the rest
    of its input meanwhile. The input goes to the inbox of the replica that runs it (its
    InputFeedOpened event says where), so it waits here until that event has come."""

    def __init__(self, client: WorkerClient, request: SynthesisRequest | TranscriptionRequest):
        # Loop time of the latest words: a worker owes nothing until it has them, so its silence
        # counts from here (see WorkerClient.stream_batches).
        self._last_input = asyncio.get_running_loop().time()
        self._events = client.stream(request, last_input=lambda: self._last_input)
        self._feed: InputFeedOpened | None = None
        self._opened = asyncio.Event()

    async def events(self) -> AsyncIterator:
        try:
            async for event in self._events:
                if isinstance(event, InputFeedOpened):
                    self._feed = event
                    self._opened.set()
                else:
                    yield event
        finally:
            await self._events.aclose()

    @property
    def opened(self) -> bool:
        """The worker has the request (a replica took it; it may still wait for a row)."""
        return self._opened.is_set()

    async def end(self) -> None:
        """The input is complete: the model finishes without waiting for more."""
        await self._put(None, end=True)

    async def _put(self, item: object, end: bool) -> None:
        self._last_input = asyncio.get_running_loop().time()
        await self._opened.wait()
        await self._feed.inbox.put.remote(self._feed.session, item, end)


class TextStream(InputStream):
    """A synthesis fed word by word (Kyutai's TTS socket): AudioChunk, WordSpoken, then SynthesisDone."""

    async def send(self, text: str) -> None:
        """More words, spoken after those sent before."""
        await self._put(text, end=False)


class AudioStream(InputStream):
    """A transcription fed frame by frame (Kyutai's ASR socket): Listening, then WordBegun,
    WordHeard, PauseHeard, StreamMarker, and TranscriptionDone."""

    async def send(self, pcm: np.ndarray) -> None:
        """More audio (float32 PCM at 24 kHz), heard after the audio sent before."""
        await self._put(pcm, end=False)

    async def mark(self, marker_id: int) -> None:
        """A marker after the audio sent so far: it comes back as an event once that audio is heard."""
        await self._put(StreamMarker(marker_id), end=False)
