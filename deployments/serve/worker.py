"""`TTSWorker`: the Ray Serve deployment holding the model, one replica per GPU.

The model runs on the scheduler's thread; the replica's event loop only moves events, so health
checks, status and other requests keep flowing during a generation.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from typing import AsyncIterator

from ray import serve

from ..engine import download_progress
from ..engine.model_manager import ModelManager
from ..engine.scheduler import SlotScheduler, Submission
from ..protocol import (DEFAULT_MODEL_NAME, DEFAULT_SLOTS, PCM_BYTES, SAMPLE_RATE, WORKER_DEPLOYMENT, AudioChunk,
                        FailureKind, InputFeedOpened, Listening, SynthesisDone, SynthesisFailed, SynthesisRequest,
                        TranscriptionDone, TranscriptionRequest)
from ..settings import EngineSettings
from .gpu_info import gpu_facts
from .metrics import RequestTimer, WorkerMetrics
from .registry import RegistryReporter
from .text_inbox import TextInbox

log = logging.getLogger(__name__)
# Serve's logger: its lines land in the replica's log file, tagged with Serve's request fields;
# one line per request, naming the id the ingress gave it (serve_app/request_ids.py).
request_log = logging.getLogger("ray.serve")

# After the first audio, events are sent on at most this often: each yield is a Ray object, and one
# per 80 ms frame cost ~0.6 s per request on a 2-core machine (benchmarks/serve_overhead.py).
STREAM_FLUSH_S = 0.1
# The events that end a request's stream.
FINAL_EVENTS = (SynthesisDone, TranscriptionDone, SynthesisFailed)
# How often a request waiting for its first event looks whether the model is being downloaded.
DOWNLOAD_POLL_S = 1.0

# Run-time settings (`user_config`), applied by reconfigure() without a restart.
DEFAULT_USER_CONFIG = {"offload_after_s": 300.0, "max_batch_size": DEFAULT_SLOTS}


def _import_model_code() -> None:
    """Imports torch and moshi (seconds) while the replica waits for its first request; the
    model itself still loads lazily, on that request."""
    try:
        import moshi.models.tts  # noqa: F401
    except Exception:  # the first load reports any real problem
        log.exception("pre-importing the model code failed")


def _gpu_index() -> int | None:
    """The physical index of this replica's GPU (what NVML and the status pages use). Ray reports
    ids as ints or strings; a cluster naming GPUs by UUID gets None rather than a crash."""
    import ray

    ids = ray.get_gpu_ids()
    try:
        return int(ids[0]) if ids else None
    except (TypeError, ValueError):
        log.warning("GPU id %r is not an index: VRAM facts will not be reported", ids[0])
        return None


def _replica_context() -> tuple[str, str, str]:
    """(app name, deployment name, replica id) of this replica."""
    try:
        context = serve.get_replica_context()
        return context.app_name, context.deployment, context.replica_id.unique_id
    except Exception:  # constructed outside Serve (unit use)
        return "default", WORKER_DEPLOYMENT, f"local-{os.getpid()}"


def _node_id() -> str | None:
    import ray

    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # constructed outside Ray (unit use)
        return None


# max_ongoing_requests = the slots (user_config max_batch_size): see deployments/routing.py.
@serve.deployment(name="TTSWorker", max_ongoing_requests=DEFAULT_SLOTS, health_check_period_s=5)
class TTSWorker:
    def __init__(self, engine_settings: dict | None = None, model: str = DEFAULT_MODEL_NAME):
        self.settings = EngineSettings(**(engine_settings or {}))
        self.model = model  # its name in the app's model table
        self.gpu_index = _gpu_index()
        self.app_name, self.deployment, self.replica = _replica_context()
        self.node = socket.gethostname()
        # Ray's node id: two nodes of one host (or two pods of one machine) share a hostname.
        self.node_id = _node_id()
        self.manager = ModelManager(self.settings, DEFAULT_USER_CONFIG["offload_after_s"], self.gpu_index,
                                    gpu_facts=gpu_facts)
        self.metrics = WorkerMetrics(model)
        self.scheduler = SlotScheduler(self.manager, DEFAULT_USER_CONFIG["max_batch_size"],
                                       on_tick=self.metrics.tick_seconds.observe,
                                       on_underruns=self.metrics.underruns.inc)
        threading.Thread(target=_import_model_code, name="import-model-code", daemon=True).start()
        self.reporter = RegistryReporter(self.app_name, self.replica, self._status, self._run_command)
        # Input of streamed requests served here, words or audio (started now: the first must not wait).
        self.inbox = TextInbox.remote()
        log.info("TTSWorker %s on GPU %s (CUDA_VISIBLE_DEVICES=%s)", self.replica, self.gpu_index,
                 os.environ.get("CUDA_VISIBLE_DEVICES"))

    def reconfigure(self, user_config: dict) -> None:
        config = {**DEFAULT_USER_CONFIG, **(user_config or {})}
        offload = config.get("offload_after_s")
        self.manager.offload_after_s = None if offload is None else float(offload)
        self.scheduler.max_batch_size = config["max_batch_size"]  # a count, or "auto" (engine/sizing.py)
        log.info("reconfigured: %s", config)

    @property
    def served_by(self) -> dict:
        return {"gpu": self.gpu_index, "replica": self.replica, "node": self.node, "node_id": self.node_id,
                "model_name": self.model, "deployment": self.deployment}

    async def synthesize_stream(self, request: SynthesisRequest | dict) -> AsyncIterator[list]:
        """Yields lists of events (AudioChunk, WordSpoken, then SynthesisDone or SynthesisFailed)
        as the model produces them. Closing the stream cancels the request. With `stream_text`,
        the first event is an InputFeedOpened: the rest of the text comes through this replica's
        inbox while the request speaks."""
        if isinstance(request, dict):  # for one release: during a rolling upgrade, old ingresses send dicts
            request = SynthesisRequest(**request)
        async for events in self._serve(request, request.stream_text):
            yield events

    async def transcribe_stream(self, request: TranscriptionRequest) -> AsyncIterator[list]:
        """Yields lists of events of one transcription: with `stream_audio`, InputFeedOpened first
        (the rest of the audio, and the client's StreamMarkers, come through this replica's inbox),
        Listening once the stream holds a row, then WordBegun, WordHeard, PauseHeard, StreamMarker
        as the model hears it, and TranscriptionDone or RequestFailed. Closing the stream cancels
        the request: its row is freed at the next step."""
        async for events in self._serve(request, request.stream_audio):
            yield events

    async def _serve(self, request, streamed_input: bool) -> AsyncIterator[list]:
        """One request of either kind, its events out in batches (`_next_events`)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        submission = Submission(request, sink=lambda event: loop.call_soon_threadsafe(queue.put_nowait, event))
        timer = RequestTimer(self.metrics)
        outcome = "cancelled"
        # The inbox's key for this stream: unique, whatever id the client gave its request.
        session = uuid.uuid4().hex
        feeding = None
        self.scheduler.submit(submission)
        try:
            if streamed_input:
                feeding = asyncio.create_task(self._take_input(submission, session))
                yield [InputFeedOpened(inbox=self.inbox, session=session)]
            events = await self._first_events(queue)
            while True:
                if any(isinstance(event, (AudioChunk, Listening)) for event in events):
                    timer.audio()  # the first output: audio made, or a stream listened to
                last = events[-1]
                if isinstance(last, (SynthesisDone, TranscriptionDone)):
                    last.served_by = {**self.served_by, "device": self.manager.device}
                    outcome = "ok"
                    timer.finished(outcome, last.duration_s)
                elif isinstance(last, SynthesisFailed):
                    outcome = last.kind.value
                    timer.finished(outcome)
                yield events
                if outcome != "cancelled":
                    return
                events = await self._next_events(queue, first=timer.first_audio_at is None)
        finally:
            submission.cancelled.set()
            if feeding is not None:
                feeding.cancel()
                self.inbox.close.remote(session)
            if outcome == "cancelled":
                timer.finished(outcome)
            request_log.info("request %s: %s after %.2f s", request.request_id, outcome,
                             time.perf_counter() - timer.started)

    async def _take_input(self, submission: Submission, session: str) -> None:
        """Moves a streamed request's input (words, or audio and markers) from the inbox into its
        job, until its last."""
        while not submission.cancelled.is_set():
            for item, end in await self.inbox.take.remote(session):
                await asyncio.to_thread(self.scheduler.extend, submission, item, end)
                if end:
                    return

    async def _first_events(self, queue: asyncio.Queue) -> list:
        """The request's first events. While the model is being downloaded (a first start), at
        most `first_download_wait_s`: then a refusal saying how far the download is (the ingress
        answers 503 with Retry-After), and the download goes on for the next request."""
        getting = asyncio.ensure_future(self._next_events(queue, first=True))
        deadline = time.monotonic() + self.settings.first_download_wait_s
        try:
            while True:
                done, _ = await asyncio.wait({getting}, timeout=DOWNLOAD_POLL_S)
                if done:
                    return getting.result()
                # Through the module: the deployment class is pickled with the globals it names.
                download = download_progress.DOWNLOADS.current()
                if download is not None and time.monotonic() >= deadline:
                    return [SynthesisFailed(f"the model is still being downloaded ({download_progress.describe(download)}); "
                                            "retry in a while", kind=FailureKind.UNAVAILABLE)]
        finally:
            if not getting.done():
                getting.cancel()

    @staticmethod
    async def _next_events(queue: asyncio.Queue, first: bool) -> list:
        """The events to send next: at once until the first audio is out (time to first audio
        matters most), then what accumulated over STREAM_FLUSH_S, up to the final event."""
        events = [await queue.get()]
        if not first and not isinstance(events[-1], FINAL_EVENTS):
            await asyncio.sleep(STREAM_FLUSH_S)
        while not queue.empty() and not isinstance(events[-1], FINAL_EVENTS):
            events.append(queue.get_nowait())
        return events

    def _status(self) -> dict:
        self.metrics.queue_depth.set(self.scheduler.queued)
        self.metrics.active.set(self.scheduler.active)
        slots = self.scheduler.slots
        free_slots = max(0, slots - self.scheduler.active)
        self.metrics.free_slots.set(free_slots)
        buffered_s = self.scheduler.buffered_s
        self.metrics.buffered_seconds.set(buffered_s)
        self.metrics.buffered_bytes.set(round(buffered_s * SAMPLE_RATE * PCM_BYTES))
        self.metrics.stream_leads(self.scheduler.stream_leads())
        sizing = self.scheduler.sizing
        self.metrics.slots(slots, sizing)
        return {
            **self.served_by,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "pid": os.getpid(),
            "model": self.manager.status(),
            "queued": self.scheduler.queued,
            "active": self.scheduler.active,
            "max_batch_size": slots,
            "max_batch_size_setting": self.scheduler.max_batch_size,
            # `auto`'s choice (engine/sizing.py): chosen slots, p95 tick, its budget, the margin,
            # the memory bound, each candidate measured; None before it (or when a count is set).
            "slot_sizing": sizing.report() if sizing is not None else None,
            "free_slots": free_slots,
            "buffered_audio_s": round(buffered_s, 2),
            "audio_underruns": self.scheduler.underruns,
            **self.scheduler.counters(),
        }

    def _run_command(self, command: dict) -> dict:
        if command.get("action") == "offload":
            return {**self.served_by, "result": self.manager.offload()}
        if command.get("action") == "forget_clip":  # an uploaded voice was deleted
            engine = self.manager.engine
            forget = getattr(engine, "forget_clip", None)
            dropped = bool(forget(str(command.get("key")))) if forget is not None else False
            return {**self.served_by, "result": "dropped" if dropped else "not cached"}
        return {**self.served_by, "result": f"unknown action {command.get('action')!r}"}

    async def status(self) -> dict:
        return await asyncio.to_thread(self._status)

    def record_routing_stats(self) -> dict:
        """What the ingress's router (deployments/routing.py) needs to pack requests onto the
        replicas that already speak; Serve asks every `request_routing_stats_period_s`."""
        return {"max_batch_size": self.scheduler.slots, "active": self.scheduler.active,
                "queued": self.scheduler.queued, "model": self.manager.state.value}

    async def offload(self) -> dict:
        return await asyncio.to_thread(self._run_command, {"action": "offload"})

    async def check_health(self) -> None:
        """Serve replaces the replica after a few failed checks (its in-flight clients get a
        clean error from the ingress)."""
        if not self.scheduler.alive:
            raise RuntimeError("the generation thread died")
        engine = self.manager.engine
        problem = engine.health() if engine is not None else None
        if problem:
            raise RuntimeError(problem)
        stalled = self.scheduler.stalled_s()
        if stalled > self.settings.generation_stall_s:
            raise RuntimeError(f"the generation thread has made no progress for {stalled:.0f} s with work pending")

    def __del__(self):
        self.reporter.stop()
        self.scheduler.close()
        self.manager.close()
