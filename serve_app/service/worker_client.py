"""The ingress's view of the TTSWorker deployment: synthesis through the Serve handle, status and
offload through the worker registry (which never wakes a deployment scaled to zero)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import AsyncIterator, Callable

import numpy as np
import ray
from ray import serve
from ray.serve.exceptions import BackPressureError

from deployments.serve.registry import REPORT_PERIOD_S, get_registry
from deployments.protocol import (AudioChunk, FailureKind, SynthesisDone, SynthesisFailed, SynthesisRequest,
                                  TextFeedOpened)

from .cache import TTLCache
from ..errors import APIError

log = logging.getLogger(__name__)
WORKER_DEPLOYMENT = "TTSWorker"


class WorkerError(Exception):
    """A synthesis the workers refused or could not do, and why (`kind`)."""

    def __init__(self, message: str, kind: FailureKind = FailureKind.ERROR, param: str | None = None):
        super().__init__(message)
        self.message, self.kind, self.param = message, kind, param


REGISTRY_TIMEOUT_S = 10.0
# How long node facts (Ray's node list and one NVML task per node) and Serve's view of the
# deployment are reused: the web page polls every 3 s per open tab, all tabs share one read.
NODE_FACTS_TTL_S = 5.0
DEPLOYMENT_STATE_TTL_S = 1.0
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])(?:[A-Za-z]:)?[\\/][^\s'\"`,;()\[\]{}]+")
_LONG_HEX_ID = re.compile(r"\b[0-9a-fA-F]{16,}\b")


def public_summary(text: str | None, limit: int = 240) -> str:
    """A Serve or Ray message made fit for clients: its first line only (Serve appends the
    replica's traceback after "Error:" on the next lines), with no absolute paths and no actor,
    node or replica ids. The whole text belongs in the server's log."""
    lines = (text or "").strip().splitlines()
    first = re.sub(r"\s*(with exception)?\.?\s*Error:\s*$", ".", lines[0]) if lines else ""
    first = _LONG_HEX_ID.sub("<id>", _ABSOLUTE_PATH.sub("<path>", first))
    return first if len(first) <= limit else first[:limit - 1] + "\u2026"

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
        self._registry_handle = None  # looked up once (a blocking call, made in a thread)
        self.node_facts: TTLCache[list[dict]] = TTLCache(cluster_gpus, NODE_FACTS_TTL_S)
        self.deployment_states: TTLCache[dict] = TTLCache(self.deployment_state, DEPLOYMENT_STATE_TTL_S)

    # ---- synthesis -----------------------------------------------------------------------
    async def stream(self, request: SynthesisRequest, last_input: Callable[[], float] | None = None) -> AsyncIterator:
        """Events of one synthesis as the worker produces them (see `stream_batches`)."""
        batches = self.stream_batches(request, last_input)
        try:
            async for events in batches:
                for event in events:
                    yield event
        finally:
            await batches.aclose()

    async def stream_batches(self, request: SynthesisRequest,
                             last_input: Callable[[], float] | None = None) -> AsyncIterator[list]:
        """Events of one synthesis in the batches the worker sends them (every event that
        accumulated over its flush interval: a route that sends one message per batch sends a few
        times fewer than one per 80 ms frame). Closing this iterator (a client that went away)
        cancels the request on the worker. Raises WorkerError, after the batch's events before
        the failure, when the workers refuse it (OVERLOADED: every queue is full), fail, die or go
        silent for `timeout_s`; `last_input()` (the loop time of the client's last words, for
        streamed text) restarts that wait: a worker owes nothing until it has words."""
        responses = self.handle.synthesize_stream.options(stream=True).remote(request)
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
                    if isinstance(event, SynthesisDone):
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

    # ---- status and control (never through the handle) ------------------------------------
    async def registry(self):
        """The registry actor's handle. Looking it up is a blocking call to Ray's control plane:
        done once, in a thread; `replicas()` forgets it when the registry stops answering."""
        if self._registry_handle is None:
            self._registry_handle = await asyncio.to_thread(get_registry, self.app_name)
        return self._registry_handle

    async def replicas(self) -> list[dict]:
        """Every running replica's last report. APIError 503 while the registry actor is down
        (Ray restarts it; replicas report again within a second)."""
        try:
            registry = await self.registry()
            return await asyncio.wait_for(registry.snapshot.remote(), timeout=REGISTRY_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - RayActorError, a timeout: the same answer
            self._registry_handle = None  # looked up again next time (a new actor, if it was lost)
            log.warning("the worker registry did not answer: %s: %s", exc.__class__.__name__, str(exc)[:300])
            raise APIError(503, "the worker registry is not answering (it is being restarted); retry shortly",
                           code="registry_unavailable", headers={"Retry-After": "2"}) from None

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

    async def deployment_state(self) -> dict:
        """Serve's own view of the TTSWorker deployment (replica counts by state)."""
        def read() -> dict:
            try:
                app = serve.status().applications.get(self.app_name)
                deployment = app.deployments.get(WORKER_DEPLOYMENT) if app else None
            except Exception as exc:
                log.warning("reading Serve's status failed: %s: %s", exc.__class__.__name__, str(exc)[:500])
                return {"status": "UNKNOWN", "message": "Serve's status could not be read; retry shortly",
                        "replicas": {}}
            if deployment is None:
                return {"status": "NOT_DEPLOYED", "message": "", "replicas": {}}
            message = public_summary(deployment.message)
            if message != (deployment.message or "").strip():
                log.warning("TTSWorker deployment: %s", deployment.message)  # the whole story, here only
            return {"status": str(getattr(deployment.status, "value", deployment.status)),
                    "message": message,
                    "replicas": {str(getattr(k, "value", k)): v for k, v in deployment.replica_states.items()}}
        return await asyncio.to_thread(read)

    async def offload(self, gpu: int | None = None, replica: str | None = None,
                      wait_s: float = 10.0) -> dict:
        """Asks matching replicas to offload; replies with each one's result. At zero replicas
        this is a no-op: nothing is woken."""
        targets = [r for r in await self.replicas()
                   if (gpu is None or r.get("gpu") == gpu) and (replica is None or r.get("replica") == replica)]
        if not targets:
            return {"requested": 0, "results": [], "note": "no running TTSWorker replica matched"}
        registry = await self.registry()
        command_id = await registry.submit.remote({"action": "offload"}, [t["replica"] for t in targets])
        deadline = time.monotonic() + wait_s
        while True:
            progress = await registry.results.remote(command_id)
            if not progress["pending"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(REPORT_PERIOD_S / 4)
        return {"requested": len(targets), "results": list(progress["results"].values()),
                "pending": progress["pending"]}


def _cancel(responses) -> None:
    """Cancels a request on its worker. For a request Serve never assigned, cancel() raises again
    why (back-pressure, no replica): nothing runs then, and the caller already has that failure as
    a WorkerError, which this must not replace."""
    try:
        responses.cancel()
    except Exception as exc:  # noqa: BLE001
        log.debug("cancelling a TTS request: %s: %s", exc.__class__.__name__, exc)


class TextStream:
    """One synthesis fed word by word (the WebSocket): iterate `events()` once for what the worker
    sends (AudioChunk, WordSpoken, then SynthesisDone; WorkerError on failure; closing it cancels
    the synthesis), and `send()` / `end()` the rest of the text meanwhile. The words go to the
    text inbox of the replica that runs it (its TextFeedOpened event says where), so they wait
    here until that event has come."""

    def __init__(self, client: WorkerClient, request: SynthesisRequest):
        # Loop time of the latest words: a worker owes nothing until it has them, so its silence
        # counts from here (see WorkerClient.stream_batches).
        self._last_input = asyncio.get_running_loop().time()
        self._events = client.stream(request, last_input=lambda: self._last_input)
        self._feed: TextFeedOpened | None = None
        self._opened = asyncio.Event()

    async def events(self) -> AsyncIterator:
        try:
            async for event in self._events:
                if isinstance(event, TextFeedOpened):
                    self._feed = event
                    self._opened.set()
                else:
                    yield event
        finally:
            await self._events.aclose()

    async def send(self, text: str) -> None:
        """More words, spoken after those sent before."""
        await self._put(text, end=False)

    async def end(self) -> None:
        """The text is complete: the model speaks its last words without waiting for more."""
        await self._put(None, end=True)

    async def _put(self, text: str | None, end: bool) -> None:
        self._last_input = asyncio.get_running_loop().time()
        await self._opened.wait()
        await self._feed.inbox.put.remote(self._feed.session, text, end)


@ray.remote(num_cpus=0)
def _node_report() -> dict:
    from deployments.serve.gpu_info import node_report

    return node_report()


async def cluster_gpus() -> list[dict]:
    """Every alive node with its GPUs: Ray's logical GPU count, and NVML facts where NVIDIA GPUs
    exist (asked by a zero-CPU task pinned to each node: no Serve replica is involved)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in await asyncio.to_thread(ray.nodes) if n.get("Alive")]
    refs = [_node_report.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
            for n in nodes]
    reports = []
    for node, ref in zip(nodes, refs):
        try:
            facts = await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout=10)
        except Exception as exc:
            log.warning("GPU report of node %s failed: %s: %s", node.get("NodeManagerHostname"),
                        exc.__class__.__name__, str(exc)[:500])
            facts = {"node": node.get("NodeManagerHostname"), "gpus": [],
                     "error": "this node did not report its GPUs (the ingress's log has the cause); retry shortly"}
        reports.append({
            "node_id": node["NodeID"],
            "node_ip": node.get("NodeManagerAddress"),
            "hostname": facts.get("node") or node.get("NodeManagerHostname"),
            "ray_gpus": node.get("Resources", {}).get("GPU", 0.0),
            "gpus": facts.get("gpus", []),
        })
    return reports
