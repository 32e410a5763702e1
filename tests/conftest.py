"""Shared fixtures: the tiny test checkpoint, and ONE local Ray cluster with 2 logical GPUs running
the real Serve application(s) for the whole session (Ray start-up costs seconds).

What is faked, and why: there are no physical GPUs here, so Ray is given 2 *logical* GPUs (each
TTSWorker replica gets CUDA_VISIBLE_DEVICES 0 or 1 and torch falls back to CPU); the model hub is
unreachable, so the model is the tiny random-weight checkpoint built by deployments.checkpoint and
loaded through moshi's real loaders.
"""

from __future__ import annotations

import copy
import os
import socket
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, settings

from helpers.demo_apps import one_model_app

# The engine tests run on CPU here; TTS_TEST_DEVICE=cuda runs them on a GPU machine with CUDA
# graphs on, as in production (the Serve tests always use logical GPUs and CPU).
TEST_DEVICE = os.environ.get("TTS_TEST_DEVICE", "cpu")
os.environ.setdefault("NO_TORCH_COMPILE", "1")
if TEST_DEVICE == "cpu":
    os.environ.setdefault("NO_CUDA_GRAPH", "1")

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"

# Property tests (Hypothesis, Schemathesis) run the same examples on every run and machine (a
# failure reproduces), keep no example database in the work tree, and never fail for a slow example.
settings.register_profile("repo", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("repo")


# Tests are split by cost, one folder each (README, "Tests"); each folder's name is also a marker,
# so `-m "not serve"` and the like select across folders.
COST_FOLDERS = ("unit", "engine", "serve", "browser", "cluster")


# The order they run in (in one process; under xdist, within each worker): what needs no Ray
# cluster first, then the tests that start their own clusters, then the ones on the shared test
# cluster (started by the first of them, kept to the end). Every Serve replica of the shared cluster
# costs CPU while it idles (reports, metrics, health checks): ~0.6 of a core with all the session's
# apps deployed, measured on this 2-core machine.
RUN_ORDER = ("unit", "engine", "cluster", "browser", "serve")


def pytest_collection_modifyitems(config, items):
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in COST_FOLDERS:
            item.add_marker(folder)
    items.sort(key=lambda item: RUN_ORDER.index(folder) if (folder := Path(str(item.fspath)).parent.name)
               in RUN_ORDER else len(RUN_ORDER))  # stable: each folder keeps its own order


# `make test` runs two pytest-xdist workers. The tests on the shared cluster (browser, serve) are one
# unit of work, sent whole to one worker in RUN_ORDER (one cluster, started once); every other
# module is a unit of its own (its fixtures built once) for whichever worker is free: the in-process
# tests (one torch thread each) and the tests that start clusters of their own (apart from the
# shared one by design) run beside the shared cluster's tests instead of before them.
# (xdist's own `--dist loadgroup` cannot do it under pytest 9.2: it renames node ids through an
# attribute that pytest no longer reads, so its groups are silently ignored.)
SHARED_CLUSTER_FOLDERS = ("browser", "serve")


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown when it is not installed
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class SharedClusterTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            folder = Path(module).parent.name
            return "shared-cluster" if folder in SHARED_CLUSTER_FOLDERS else module

    return SharedClusterTogether(config, log)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from deployments.checkpoint import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", size="tiny", seed=0)


@pytest.fixture(scope="session")
def engine_settings(tiny_checkpoint):
    from deployments.settings import EngineSettings

    return EngineSettings(model_path=str(tiny_checkpoint), n_q=8, cpu_threads=1, max_audio_s=300,
                          max_text_chars=2000, device=TEST_DEVICE)


@pytest.fixture(scope="session")
def tiny_clone_checkpoint(tmp_path_factory) -> Path:
    """The voice-cloning model's tiny copy (no conditioners, no cross-attention) and its clips."""
    from deployments.checkpoint import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-clone", size="tiny-clone", seed=0)


@pytest.fixture(scope="session")
def clone_settings(tiny_clone_checkpoint):
    """The cloning engine at temperature 0, so that it can be compared with moshi's reference."""
    from deployments.settings import EngineSettings

    return EngineSettings(model_path=str(tiny_clone_checkpoint), n_q=8, cpu_threads=1, temp=0.0, max_audio_s=300,
                          max_text_chars=2000, default_voice="clips/low_hum.wav", device=TEST_DEVICE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServeCluster:
    """The session's Ray cluster and the Serve applications deployed on it.

    Serve deploys configs declaratively (apps missing from a config are deleted), so every app
    added stays in `self.apps` and each deploy sends them all; unchanged apps keep running.
    """

    def __init__(self, checkpoint: Path, outputs: Path):
        import ray

        from serve_app.launch import read_config

        # 4 logical GPUs: 2 for the main app's replicas, 1 for the scale-to-zero app, 1 shared by
        # the two-model app's two workers (half each).
        ray.init(address="local", num_cpus=8, num_gpus=4, namespace="serve", include_dashboard=False,
                 log_to_driver=bool(os.environ.get("TEST_RAY_LOGS")))
        self.port = free_port()
        self.base_config = read_config(REPO / "configs" / "demo.yaml")
        self.checkpoint, self.outputs = checkpoint, outputs
        self.apps: dict[str, dict] = {}

    def app_config(self, name: str, route_prefix: str, args: dict | None = None,
                   worker: dict | None = None, ingress: dict | None = None) -> dict:
        app = one_model_app(self.base_config["applications"][0], str(self.checkpoint), str(self.outputs))
        app.update(name=name, route_prefix=route_prefix)
        app["args"].update(args or {})
        for deployment in app["deployments"]:
            if deployment["name"] == "TTSWorker":
                _deep_update(deployment, worker or {})
            else:
                _deep_update(deployment, ingress or {})
        return app

    def deploy(self, name: str, route_prefix: str, args: dict | None = None, worker: dict | None = None,
               ingress: dict | None = None) -> str:
        return self.deploy_app(self.app_config(name, route_prefix, args, worker, ingress))

    def deploy_app(self, app: dict) -> str:
        """Deploys an application config (as `app_config` makes them) beside the others."""
        from serve_app.launch import deploy

        name, route_prefix = app["name"], app["route_prefix"]
        self.apps[name] = app
        config = {**{k: v for k, v in self.base_config.items() if k != "applications"},
                  "applications": list(self.apps.values())}
        config["http_options"] = {**config.get("http_options", {}), "port": self.port, "host": "127.0.0.1"}
        deploy(config, wait_s=180)
        return self.url(route_prefix)

    def remove(self, name: str) -> None:
        """Deletes an application a test no longer needs: each holds replicas (a process and
        ~1 GB each for a worker, CPU reservations), and the shared cluster has room for a few."""
        from ray import serve

        # Not waited for: its replicas' graceful shutdown (seconds each) overlaps the next test; a
        # deploy sends the apps still wanted, so the deleted one is never brought back.
        if self.apps.pop(name, None) is not None:
            serve.delete(name, _blocking=False)

    def url(self, route_prefix: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{route_prefix.rstrip('/')}"

    def shutdown(self) -> None:
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()


def _deep_update(target: dict, changes: dict) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


@pytest.fixture
def temporary_apps(serve_cluster):
    """`temporary_apps(name, route_prefix, ...)` deploys like `serve_cluster.deploy` an app that is
    deleted when the test ends (pass or fail)."""
    names: list[str] = []

    def deploy(name: str, route_prefix: str, **kwargs) -> str:
        names.append(name)
        return serve_cluster.deploy(name, route_prefix, **kwargs)

    yield deploy
    for name in names:
        serve_cluster.remove(name)


@pytest.fixture(scope="session")
def serve_cluster(tiny_checkpoint, tmp_path_factory):
    cluster = ServeCluster(tiny_checkpoint, tmp_path_factory.mktemp("outputs"))
    yield cluster
    cluster.shutdown()


# The main application: 2 TTSWorker replicas (one per logical GPU), never scaled to zero during
# the session so the other tests do not pay cold starts; its own tests reconfigure it live.
MAIN_WORKER = {"autoscaling_config": {"min_replicas": 2, "initial_replicas": 2, "max_replicas": 2},
               "user_config": {"offload_after_s": 300, "max_batch_size": 8}}


@pytest.fixture(scope="session")
def base_url(serve_cluster) -> str:
    url = serve_cluster.deploy("tts", "/", worker=MAIN_WORKER)
    wait_for_replicas(url, 2)
    return url


# An app with api_keys set (tests/serve/test_api_keys.py, test_websocket.py, test_ui.py). Its worker may
# scale to zero and needs no GPU: the tests using it generate nothing, or wait for a cold start.
KEYED_WORKER = {"ray_actor_options": {"num_gpus": 0},
                "autoscaling_config": {"min_replicas": 0, "initial_replicas": 0, "max_replicas": 1}}
API_KEY = "secret-key"


@pytest.fixture(scope="session")
def keyed_url(serve_cluster, base_url) -> str:
    # Also small WebSocket bounds (tests/serve/test_websocket.py): one session at a time, 2 s without text;
    # and the Host check on every route (tests/serve/test_api_keys.py).
    return serve_cluster.deploy("keyed", "/keyed", worker=KEYED_WORKER, args={
        "api_keys": [API_KEY], "max_websocket_sessions": 1, "websocket_idle_timeout_s": 2,
        "check_host_everywhere": True})


# An app over the scripted fake engine (far faster than real time) for what is the service's, not the
# model's: stream pacing with a 1 s lead (tests/serve/test_stream_pacing.py) and admission at the slot
# count `auto` chose (tests/serve/test_admission.py): no tick of any engine fits a real-time margin of
# a millionth (80 ns), so auto takes the smallest candidate, 6, below max_ongoing_requests (8).
FAKE_WORKER = {"ray_actor_options": {"num_gpus": 0}, "max_ongoing_requests": 8,
               "autoscaling_config": {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 1},
               "user_config": {"offload_after_s": 300, "max_batch_size": "auto"}}
FAKE_LEAD_S = 1.0
FAKE_CHOSEN_SLOTS = 6


@pytest.fixture(scope="session")
def fake_url(serve_cluster) -> str:
    url = serve_cluster.deploy("fake", "/fake", worker=FAKE_WORKER, args={
        "test_engine": "fake-tts", "stream_lead_s": FAKE_LEAD_S, "stream_grace_s": 1.0,
        "slot_candidates": [FAKE_CHOSEN_SLOTS, 8], "realtime_margin": 1e-6, "slot_sizing_cache_dir": None})
    wait_for_replicas(url, 1)
    return url


def wait_for_replicas(url: str, count: int, timeout_s: float = 120) -> list[dict]:
    """Polls /api/gpu/status until `count` replicas report (without waking anything)."""
    deadline = time.monotonic() + timeout_s
    replicas: list[dict] = []
    while time.monotonic() < deadline:
        replicas = httpx.get(f"{url}/api/gpu/status", timeout=30).json()["replicas"]
        if len(replicas) == count:
            return replicas
        time.sleep(0.5)
    raise AssertionError(f"expected {count} replicas, last saw {replicas}")


@pytest.fixture
def client(base_url):
    with httpx.Client(base_url=base_url, timeout=120) as c:
        yield c


# An app whose model cannot be fetched: the hub "answers" from a closed local port, so the failure
# is immediate and deterministic. The worker needs no GPU (it never loads anything).
UNREACHABLE_HUB = {"runtime_env": {"env_vars": {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "3",
                                                "HF_HUB_DOWNLOAD_TIMEOUT": "3"}}}


@pytest.fixture(scope="session")
def broken_url(serve_cluster, base_url) -> str:
    return serve_cluster.deploy(
        "broken", "/broken", args={"model_path": None, "model_repo": "nonexistent-org/nonexistent-model"},
        worker={"ray_actor_options": {"num_gpus": 0, **UNREACHABLE_HUB},
                "autoscaling_config": {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 1}},
        ingress={"ray_actor_options": UNREACHABLE_HUB})


# Half a logical GPU each: both models' replicas share one GPU (Ray places a fractional demand on
# the GPU it fits most tightly, so the second half goes beside the first).
DUO_WORKER = {"ray_actor_options": {"num_gpus": 0.5},
              "autoscaling_config": {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 1}}


# The duo app's speech-to-text model (tests/serve/test_asr_served.py): 2 rows, so that a third
# stream finds no free channel; no GPU (the two halves of the duo's are taken), never offloaded.
EARS_WORKER = {"ray_actor_options": {"num_gpus": 0},
               "autoscaling_config": {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 1},
               "max_ongoing_requests": 2, "user_config": {"offload_after_s": 300, "max_batch_size": 2}}
EARS_ROWS = 2


# An app with three models (the `models` table): the tiny checkpoint under two names, each with a
# worker deployment of its own (TTSWorker for "first", the default; TTSWorker_second), both on one
# logical GPU; and the tiny speech-to-text model ("ears", TTSWorker_ears), beside them.
@pytest.fixture(scope="session")
def duo_url(serve_cluster, base_url, tiny_checkpoint, tiny_stt_checkpoint) -> str:
    path = str(tiny_checkpoint)
    app = serve_cluster.app_config("duo", "/duo", worker=DUO_WORKER,
                                   args={"models": {"first": {"model_path": path}, "second": {"model_path": path},
                                                    "ears": {"model_path": str(tiny_stt_checkpoint)}},
                                         "default_model": "first", "asr_idle_timeout_s": 3})
    worker = next(d for d in app["deployments"] if d["name"] == "TTSWorker")
    app["deployments"].append({**copy.deepcopy(worker), "name": "TTSWorker_second"})
    ears = copy.deepcopy(worker)
    _deep_update(ears, {**EARS_WORKER, "name": "TTSWorker_ears"})
    app["deployments"].append(ears)
    url = serve_cluster.deploy_app(app)
    wait_for_replicas(url, 3)
    return url


# The voice-cloning model served beside the 1.6B-style one, as configs/demo.yaml does
# (tests/serve/test_clone_served.py, tests/browser/test_voice_panel.py): workers on CPU (the logical
# GPUs stay with the other apps), two replicas of the cloning model (a deleted voice's prompt is
# dropped on each), two ingress replicas (one voice store for both) and anonymous uploads.
CLONE_TWO = {"autoscaling_config": {"min_replicas": 2, "initial_replicas": 2, "max_replicas": 2}}


@pytest.fixture(scope="session")
def clone_url(serve_cluster, base_url, tiny_checkpoint, tiny_clone_checkpoint, tmp_path_factory) -> str:
    models = {"default": {}, "clone": {"model_path": str(tiny_clone_checkpoint), "default_voice": "clips/low_hum.wav"}}
    cpu_worker = {**DUO_WORKER, "ray_actor_options": {"num_gpus": 0}}
    app = serve_cluster.app_config("clone", "/clone", worker=cpu_worker, ingress=CLONE_TWO, args={
        "models": models, "allow_anonymous_uploads": True,
        "voice_store_dir": str(tmp_path_factory.mktemp("voice-store"))})
    worker = next(d for d in app["deployments"] if d["name"] == "TTSWorker")
    app["deployments"].append({**copy.deepcopy(worker), "name": "TTSWorker_clone"})
    _deep_update(app["deployments"][-1], CLONE_TWO)
    url = serve_cluster.deploy_app(app)
    wait_for_replicas(url, 3)
    return url


@pytest.fixture(scope="session")
def tiny_stt_checkpoint(tmp_path_factory) -> Path:
    """The speech-to-text model's tiny copy (stt-1b-en_fr's shape, voice-activity heads) and its clips."""
    from deployments.checkpoint import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-stt", size="tiny-stt", seed=0)


@pytest.fixture(scope="session")
def stt_settings(tiny_stt_checkpoint):
    from deployments.settings import EngineSettings

    return EngineSettings(model_path=str(tiny_stt_checkpoint), cpu_threads=1, device=TEST_DEVICE)
