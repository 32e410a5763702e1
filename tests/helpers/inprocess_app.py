"""The ingress's FastAPI app in process, without Ray: the real routes, guards, error handlers and
OpenAPI document (serve_app/ingress.py's create_app) over stand-ins for what lives in the cluster.

- The worker handle is `EngineHandle`: the scripted fake engine (deployments/engine/fakes.py) of
  the model's kind (speech to text for a speech-to-text repo) run to the end per request, its refusals reported as the worker reports them (the scheduler's
  `failure_for`), so the engine's own text checks (`clean_text`) answer as they do in the cluster.
- The cluster is `EmptyCluster`: no replica has reported, Serve calls the deployment HEALTHY, no
  node is known (nothing asks Ray).
- Voices: a folder holding `VOICES` (a model of the table may name its own, `voice_folder`),
  indexed before the first request.

For property tests of the request path (tests/unit): fast (microseconds per synthesis), with no
model, GPU or Ray cluster. What only the cluster shows (routing, replicas, Serve's proxy) is
tests/serve's.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from pathlib import Path

from deployments.engine.fakes import FakeSTTEngine, FakeTTSEngine
from deployments.engine.models import ModelKind, spec_for
from deployments.engine.scheduler import failure_for
from deployments.protocol import SynthesisFailed, SynthesisRequest, TextFeedOpened
from deployments.settings import EngineSettings
from serve_app.context import IngressContext
from serve_app.ingress import create_app
from serve_app.service.cache import TTLCache
from serve_app.service.cluster import ClusterView
from serve_app.settings import AppSettings

VOICES = ("expresso/ex03-ex01_happy_001_channel1_334s.wav", "unmute-prod-website/default_voice.wav",
          "vctk/p225_023.wav")
VOICE_FILE_SUFFIX = ".abcd1234@240.safetensors"  # what the catalog reads as a model's voice file


class _Responses:
    """What `handle.synthesize_stream.options(stream=True).remote(request)` returns: the worker's
    batches of events, one at a time."""

    def __init__(self, batches):
        self._batches = batches

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await self._batches.__anext__()

    def cancel(self) -> None:
        pass


class _Inbox:
    """The replica's text inbox (deployments/serve/text_inbox.py) for streamed text."""

    def __init__(self):
        self.sessions: dict[str, asyncio.Queue] = {}
        self.put = self  # inbox.put.remote(session, text, end)

    async def remote(self, session: str, text: str | None, end: bool) -> None:
        self.sessions[session].put_nowait((text, end))


class EngineHandle:
    """The TTSWorker handle, served by a fake engine in this process: each request is prepared,
    admitted and ticked to its end (streamed text: once its last words came), and its events sent
    as the worker sends them (one batch here)."""

    def __init__(self, settings: EngineSettings):
        spec = spec_for(settings.model_repo) if settings.model_repo else None
        listens = spec is not None and spec.kind is ModelKind.STT
        self.engine = (FakeSTTEngine if listens else FakeTTSEngine)(settings, "cpu")
        self.engine.ensure_slots(4)
        self.inbox = _Inbox()
        self.requests: list = []  # every request it was sent, in order
        # handle.synthesize_stream (or transcribe_stream).options(stream=True).remote(request)
        self.synthesize_stream = self.transcribe_stream = self

    def options(self, **_):
        return self

    def remote(self, request: SynthesisRequest) -> _Responses:
        self.requests.append(request)
        return _Responses(self._batches(request))

    async def _batches(self, request: SynthesisRequest):
        texts = []
        if getattr(request, "stream_text", False):
            session = uuid.uuid4().hex
            self.inbox.sessions[session] = asyncio.Queue()
            yield [TextFeedOpened(inbox=self.inbox, session=session)]
            while True:
                text, end = await self.inbox.sessions[session].get()
                texts.append(text or "")
                if end:
                    break
        yield self._run(request, texts)

    def _run(self, request: SynthesisRequest, more_texts: list[str]) -> list:
        events: list = []
        try:
            job = self.engine.prepare(request, events.append)
            for text in more_texts:
                self.engine.extend(job, text)
            job.feed([], complete=True)
            assert self.engine.admit(job), "a free row: requests run one at a time here"
            while job.row in self.engine._jobs:
                self.engine.tick()
        except Exception as exc:  # noqa: BLE001 - reported as the worker reports it
            return [failure_for(exc, request.request_id)]
        return events if events else [SynthesisFailed("no events")]


class EmptyCluster(ClusterView):
    """A cluster where no replica has reported yet and Serve calls the deployment HEALTHY."""

    def __init__(self, worker_deployments: list[str] | None = None):
        super().__init__("in-process", worker_deployments)
        self.node_facts = TTLCache(self._no_nodes, 5.0)

    @staticmethod
    async def _no_nodes() -> list[dict]:
        return []

    async def replicas(self) -> list[dict]:
        return []

    async def read_deployment_states(self) -> dict[str, dict]:
        return {name: {"status": "HEALTHY", "message": "", "replicas": {}} for name in self.worker_deployments}


def voice_folder(root: Path, voices: tuple[str, ...] = VOICES) -> Path:
    """A folder of voice files (`voices` ids) as a model's `voice_dirs` holds them."""
    for voice in voices:
        path = root / (voice + VOICE_FILE_SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return root


def clip_folder(root: Path, clips: tuple[str, ...]) -> Path:
    """A folder of voice clips (the cloning model's voices: audio files named by their id)."""
    for clip in clips:
        path = root / clip
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF")
    return root


def cloning_models(root: Path) -> dict:
    """A model table of two: `first` (1.6B-style, the fake engine) and `clone` (the 0.75B cloning
    model's kind, one preset clip); with `default_model="first"`."""
    return {"first": {}, "clone": {"model_repo": "kyutai/tts-0.75b-en-public", "n_q": 16,
                                   "voice_dirs": [str(clip_folder(root / "clips", ("clips/reader.wav",)))]}}


@contextlib.contextmanager
def served_over_http(app, timeout_s: float = 30.0):
    """`app` served by uvicorn on a free local port in a thread, for a real browser: its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))  # any free port
    thread = threading.Thread(target=server.run, name="inprocess-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)


def build_app(tmp_path: Path, **settings):
    """The ingress app with `settings` (AppSettings fields) over the stand-ins above."""
    settings = AppSettings(**{"max_text_chars": 2000, "outputs_dir": str(tmp_path / "outputs"),
                              "voice_store_dir": str(tmp_path / "voice-store"),
                              "model_path": None, "voice_repo": None,
                              "voice_dirs": [str(voice_folder(tmp_path / "voices"))], **settings})
    handles = {name: EngineHandle(settings.engine_settings(name)) for name in settings.model_names()}
    ctx = IngressContext.create(settings, handles, "in-process")
    for model in ctx.models.values():
        model.workers.timeout_s = 5.0
        # Known before the first request (the index's thread reads the same catalog).
        model.voices.index.ids = frozenset(v.id for v in model.voices.catalog.list_voices())
    ctx.cluster = EmptyCluster([m.deployment for m in ctx.models.values()])
    return create_app(ctx)


def mcp_tool(client, name: str, arguments: dict, headers: dict | None = None) -> dict:
    """One tools/call over MCP's streamable HTTP (stateless: no session) through `client`, a
    TestClient of the app: the tool's result (`content`, `structuredContent`, `isError`)."""
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    answer = client.post("/mcp/", json=call, headers={"Accept": "application/json, text/event-stream", **(headers or {})})
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]
