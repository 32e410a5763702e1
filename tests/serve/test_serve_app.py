"""The Serve application end to end: a real local Ray with logical GPUs, real deployments, real HTTP."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import io
import shutil
import threading
import time
import wave

import httpx
import pytest
from conftest import wait_for_replicas
from helpers.hub_server import HubServer, kyutai_repos
from helpers.speech_checks import wait_idle
from ray import serve
from test_mcp import mcp_session

LONG_TEXT = " ".join(["The quick brown fox jumps over the lazy dog near the river bank."] * 6)
# One of its sentences: ~9 s of audio on the tiny model, over a hundred ticks on any device.
BUSY_TEXT = "The quick brown fox jumps over the lazy dog near the river bank."

# A one-replica app on the third logical GPU for the per-replica behaviours: batching, event loop,
# idle offload, reconfigure, scale to zero.
SCALE_WORKER = {
    "autoscaling_config": {"min_replicas": 0, "initial_replicas": 1, "max_replicas": 1,
                           "target_ongoing_requests": 4, "upscale_delay_s": 0.5,
                           "downscale_delay_s": 4, "downscale_to_zero_delay_s": 4},
    "user_config": {"offload_after_s": 300, "max_batch_size": 8},
    "max_ongoing_requests": 16,
}


@pytest.fixture(scope="module")
def scale_url(serve_cluster, base_url):
    url = serve_cluster.deploy("scale", "/scale", worker=SCALE_WORKER)
    wait_for_replicas(url, 1)
    yield url
    serve_cluster.remove("scale")


def worker_status(app: str) -> dict:
    return serve.get_deployment_handle("TTSWorker", app_name=app).status.remote().result(timeout_s=60)


def decode_wav(data: bytes) -> tuple[int, int, int]:
    with wave.open(io.BytesIO(data)) as clip:
        return clip.getframerate(), clip.getnchannels(), clip.getnframes()


def test_two_replicas_one_per_gpu_serve_concurrent_load(client, base_url):
    replicas = wait_for_replicas(base_url, 2)
    assert sorted(r["gpu"] for r in replicas) == [0, 1]
    slots = replicas[0]["max_batch_size"]
    # One replica's slots plus a few, each long enough to still speak when the last arrives (over a
    # hundred ticks each, sent at once): the router fills one GPU, and only the overflow goes to the
    # other (deployments/routing.py).
    count = slots + 4

    def speak(i: int) -> httpx.Response:
        return httpx.post(f"{base_url}/api/tts", json={"text": f"Request number {i}. {LONG_TEXT[:100]}"}, timeout=300)

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        responses = list(pool.map(speak, range(count)))
    for response in responses:
        assert response.status_code == 200, response.text
        rate, channels, frames = decode_wav(response.content)
        assert (rate, channels) == (24000, 1) and frames > 0
    assert {r.headers["X-TTS-GPU"] for r in responses} == {"0", "1"}
    assert {r.headers["X-TTS-Replica"] for r in responses} == {r["replica"] for r in replicas}


def test_a_light_load_is_served_by_one_replica_and_the_other_rests(base_url):
    """Serve's default router spreads requests over both replicas (each would keep its model loaded
    and never sit idle); the slot-packing router keeps a light load on one: the main app's other
    replica admits none of it (the workers' own counts, from reports made once both were idle)."""
    before = {r["replica"]: r["admissions"] for r in wait_idle()}
    served = []
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for round_ in range(4):  # two at a time: within one replica's slots
            texts = [f"Light load {round_} number {i}." for i in range(2)]
            for response in pool.map(lambda t: httpx.post(f"{base_url}/api/tts", json={"text": t}, timeout=300), texts):
                assert response.status_code == 200, response.text
                served.append(response.headers["X-TTS-Replica"])
    assert len(set(served)) == 1, served
    after = {r["replica"]: r["admissions"] for r in wait_idle()}
    assert set(after) == set(before) and after[served[0]] - before[served[0]] == len(served)
    assert [after[name] - before[name] for name in after if name != served[0]] == [0]  # it rested


def test_audio_grows_with_text_and_save_returns_a_url(client):
    short = client.post("/api/tts", json={"text": "Hi."})
    long = client.post("/api/tts", json={"text": "Hi. " + BUSY_TEXT})  # one sentence more is longer
    assert decode_wav(long.content)[2] > decode_wav(short.content)[2]
    saved = client.post("/api/tts", json={"text": "Keep this one.", "save": True, "format": "flac"})
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert [w["word"] for w in body["words"]] == ["Keep", "this", "one."]
    served = httpx.get(body["url"])
    assert served.status_code == 200 and served.headers["content-type"] == "audio/flac"
    assert served.content[:4] == b"fLaC"


def test_event_loop_stays_responsive_during_a_generation(scale_url):
    done = threading.Event()

    codes = []

    def long_generation():
        try:
            codes.append(httpx.post(f"{scale_url}/api/tts", json={"text": BUSY_TEXT}, timeout=300).status_code)
        finally:
            done.set()

    thread = threading.Thread(target=long_generation)
    thread.start()
    try:
        # Ask the busy replica for its status through the handle, back to back, until the
        # generation ends: answers that come while it speaks, each after more engine steps than
        # the one before, were given between ticks, so its event loop is not blocked. Counted in
        # steps, not seconds: a generation of BUSY_TEXT is over a hundred ticks on any device.
        deadline = time.monotonic() + 300  # only a bound against hangs
        during = []
        while not done.is_set() and time.monotonic() < deadline:
            status = worker_status("scale")
            if status["active"] > 0 and (not during or status["steps"] > during[-1]):
                during.append(status["steps"])
        assert len(during) >= 3, f"status was not answered between the generation's steps: {during}"
    finally:
        thread.join()
    assert codes == [200]


def test_concurrent_requests_on_one_replica_are_batched(scale_url):
    before = worker_status("scale")["admissions"]
    texts = [f"Batch member {i} speaks a few words here." for i in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda t: httpx.post(f"{scale_url}/api/tts", json={"text": t}, timeout=300), texts))
    assert all(r.status_code == 200 for r in responses)
    assert len({r.headers["X-TTS-Replica"] for r in responses}) == 1
    status = worker_status("scale")
    assert status["admissions"] - before == 4
    assert max(status["recent_busy_slots"]) > 1, f"never more than one busy slot: {status['recent_busy_slots']}"


def test_reconfigure_changes_idle_offload_live_then_reload(serve_cluster, scale_url):
    replica_before = worker_status("scale")["replica"]
    assert httpx.post(f"{scale_url}/api/tts", json={"text": "Load it."}, timeout=120).status_code == 200
    reloads_before = worker_status("scale")["model"]["reloads"]
    serve_cluster.deploy("scale", "/scale", worker={**SCALE_WORKER, "user_config": {"offload_after_s": 1.5, "max_batch_size": 8}})
    status = worker_status("scale")
    assert status["replica"] == replica_before, "reconfigure must not restart the replica"
    assert status["model"]["offload_after_s"] == 1.5
    deadline = time.monotonic() + 30
    while worker_status("scale")["model"]["state"] != "offloaded":
        assert time.monotonic() < deadline, "model was not offloaded after the idle time"
        time.sleep(0.3)
    response = httpx.post(f"{scale_url}/api/tts", json={"text": "Back again."}, timeout=120)
    assert response.status_code == 200
    model = worker_status("scale")["model"]
    assert model["reloads"] == reloads_before + 1
    serve_cluster.deploy("scale", "/scale", worker=SCALE_WORKER)


def test_offload_route_offloads_loaded_replicas_and_next_request_reloads(client, base_url):
    assert client.post("/api/tts", json={"text": "Warm up."}).status_code == 200
    result = client.post("/api/gpu/offload", json={}).json()
    assert result["requested"] == 2
    outcomes = {r["gpu"]: r["result"] for r in result["results"]}
    assert set(outcomes) == {0, 1}
    assert "offloaded" in outcomes.values()  # at least the replica that served the warm-up
    states = {r["gpu"]: r["state"] for r in wait_for_replicas(base_url, 2)}
    assert all(states[g] == "offloaded" for g, outcome in outcomes.items() if outcome == "offloaded")
    one = client.post("/api/gpu/offload", json={"gpu": 1}).json()
    assert one["requested"] == 1 and one["results"][0]["gpu"] == 1
    assert client.post("/api/tts", json={"text": "Reloaded."}).status_code == 200


def test_bad_offload_target_is_a_4xx(client):
    response = client.post("/api/gpu/offload", json={"gpu": -1})
    assert response.status_code == 422 and response.json()["error"]["param"] == "gpu"


def worker_counts(app: str) -> dict:
    """The Serve controller's view of the app's TTSWorker: its target replica count, and its
    replicas by state (STARTING, RUNNING...). {"target": 0} is a deployment at rest at zero."""
    from ray.serve.context import _get_global_client

    deployment = _get_global_client().get_serve_details()["applications"][app]["deployments"]["TTSWorker"]
    return {"target": deployment["target_num_replicas"],
            **collections.Counter(r["state"] for r in deployment["replicas"])}


# How long the status surfaces are polled at zero replicas. A request a poll sent through the
# handle would make the router report it at once (Serve's scale-from-zero push) and raise the
# target within a second or two (upscale_delay_s is 0.5 s); an absence is watched for a while.
WATCH_AT_ZERO_S = 6.0


async def poll_every_status_surface(url: str, app: str, min_rounds: int = 3) -> list[dict]:
    """Calls every status surface in turn (REST, /ready, /api/info, offload, MCP), at least
    `min_rounds` times and for WATCH_AT_ZERO_S, and samples the deployment after each call."""
    samples = []
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=url, timeout=60) as http, mcp_session(f"{url}/mcp") as session:
        rounds, until = 0, loop.time() + WATCH_AT_ZERO_S
        while rounds < min_rounds or loop.time() < until:
            status = await http.get("/api/gpu/status")
            assert status.status_code == 200 and status.json()["replicas"] == []
            samples.append(await asyncio.to_thread(worker_counts, app))
            assert (await http.get("/ready")).status_code in (200, 503)
            samples.append(await asyncio.to_thread(worker_counts, app))
            assert (await http.get("/api/info")).status_code == 200
            samples.append(await asyncio.to_thread(worker_counts, app))
            offload = await http.post("/api/gpu/offload", json={})
            assert offload.status_code == 200 and offload.json()["requested"] == 0  # a no-op at zero
            samples.append(await asyncio.to_thread(worker_counts, app))
            mcp_status = await session.call_tool("get_gpu_status", {})
            assert not mcp_status.isError and mcp_status.structuredContent["replicas"] == []
            samples.append(await asyncio.to_thread(worker_counts, app))
            rounds += 1
    return samples


def test_scale_to_zero_while_status_is_polled_then_cold_request(scale_url):
    deadline = time.monotonic() + 120
    while True:  # polling status must not keep the deployment awake
        status = httpx.get(f"{scale_url}/api/gpu/status", timeout=30).json()
        if not status["replicas"] and worker_counts("scale") == {"target": 0}:
            break
        assert time.monotonic() < deadline, f"never scaled to zero: {worker_counts('scale')}"
        time.sleep(0.5)
    # At zero, no status surface wakes a replica: the target stays 0 and nothing starts.
    samples = asyncio.run(poll_every_status_surface(scale_url, "scale"))
    woken = [s for s in samples if s != {"target": 0}]
    assert not woken, f"a status poll woke the deployment: {woken[:3]}"
    started = time.monotonic()
    cold = httpx.post(f"{scale_url}/api/tts", json={"text": "Waking up from zero."}, timeout=300)
    assert cold.status_code == 200, cold.text
    print(f"cold start from zero replicas: {time.monotonic() - started:.2f}s")


# The refusals only the worker makes: the field survives the trip back. What the ingress refuses
# (empty, too long, wrong types, unknown or path-like voices, format, cfg_coef, unknown fields) is
# tests/unit/test_tts_bad_input.py, in process.
@pytest.mark.parametrize("body, status, param", [
    ({"text": "\x01\x02\x03"}, 422, "text"),
    # 40 pauses of 10 s: over the test app's max_audio_s (300), refused before it takes a slot.
    ({"text": 'Wait <break time="10s"/> ' * 40}, 422, "text"),
])
def test_bad_input_gets_a_4xx_json_error_naming_the_field(client, body, status, param):
    response = client.post("/api/tts", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"]


def test_invalid_json_is_a_4xx_and_the_service_stays_healthy(client):
    for raw in (b"{not json", b"\xff\xfe\x00garbage", b""):
        response = client.post("/api/tts", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422, raw
        assert "error" in response.json()
        assert client.get("/health").json() == {"status": "ok"}
    assert client.post("/api/tts", json={"text": "Still here."}).status_code == 200


def test_oversized_body_is_refused_before_reading(client):
    response = client.post("/api/tts", content=b"x" * 10_000_000, headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_oversized_chunked_body_is_refused_while_reading(client):
    def chunks():  # no Content-Length: sent with chunked transfer encoding
        yield b'{"text": "'
        for _ in range(200):
            yield b"a" * 65536
        yield b'"}'

    response = client.post("/api/tts", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text[:200]
    assert response.json()["error"]["message"].startswith("request body larger than")
    assert client.post("/api/tts", json={"text": "Fine after that."}).status_code == 200


def test_saved_outputs_refuse_paths(client):
    for name in ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "nothere.wav", "0" * 32 + ".wav"]:
        assert client.get(f"/api/outputs/{name}").status_code == 404


def test_unreachable_model_repo_gives_503_while_other_routes_work(broken_url):
    response = httpx.post(f"{broken_url}/api/tts", json={"text": "Anyone there?"}, timeout=120)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert "nonexistent-org/nonexistent-model" in error["message"]
    assert "model_path" in error["message"] and "HF_HUB_OFFLINE" in error["message"]
    assert response.headers.get("retry-after")
    assert httpx.get(f"{broken_url}/health").status_code == 200
    ready = httpx.get(f"{broken_url}/ready", timeout=30)  # at once, before the replica's next report
    assert ready.status_code == 503 and "nonexistent-org/nonexistent-model" in ready.json()["reason"]
    deadline = time.monotonic() + 30  # replicas report every second: wait for the next report
    while [r["state"] for r in httpx.get(f"{broken_url}/api/gpu/status", timeout=30).json()["replicas"]] != ["failed"]:
        assert time.monotonic() < deadline, "the replica never reported the failed load"
        time.sleep(0.5)
    ready = httpx.get(f"{broken_url}/ready", timeout=30)
    assert ready.status_code == 503 and "nonexistent-org/nonexistent-model" in ready.json()["reason"]
    voices = httpx.get(f"{broken_url}/api/voices", timeout=60)
    assert voices.status_code == 200 and "unreachable" in voices.json()["warning"]


# One small app for two behaviours of a lone replica: its model arrives late (/ready says why until
# a replica has loaded it), and it runs one request and queues one (the rest are refused at once).
@pytest.fixture(scope="module")
def tight(serve_cluster, base_url, tmp_path_factory):
    checkpoint = tmp_path_factory.mktemp("late") / "arrives-later"
    url = serve_cluster.deploy("tight", "/tight", args={"model_path": str(checkpoint)}, worker={
        "ray_actor_options": {"num_gpus": 0}, "max_ongoing_requests": 1, "max_queued_requests": 1,
        "autoscaling_config": {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 1}})
    wait_for_replicas(url, 1)
    yield url, checkpoint
    serve_cluster.remove("tight")


def test_ready_says_why_until_a_replica_has_loaded_the_model(tight, tiny_checkpoint):
    """The model cannot load (its checkpoint is not there yet): /ready is 503 with the reason from the
    first failed request on, retries included, and 200 once a replica has loaded it."""
    url, checkpoint = tight
    assert httpx.get(f"{url}/ready", timeout=30).status_code == 200  # nothing failed yet
    tts = httpx.post(f"{url}/api/tts", json={"text": "Not yet."}, timeout=120)
    message = tts.json()["error"]["message"]  # names the setting, not the server's path
    assert tts.status_code == 503 and "model_path" in message and str(checkpoint.parent) not in message
    ready = httpx.get(f"{url}/ready", timeout=30)
    assert ready.status_code == 503 and "model_path" in ready.json()["reason"]
    assert str(checkpoint.parent) not in ready.text
    shutil.copytree(tiny_checkpoint, checkpoint)
    assert httpx.get(f"{url}/ready", timeout=30).status_code == 503  # no replica has loaded it yet
    assert httpx.post(f"{url}/api/tts", json={"text": "Now it speaks."}, timeout=120).status_code == 200
    ready = httpx.get(f"{url}/ready", timeout=30)
    assert ready.status_code == 200 and ready.json()["ready"] is True and ready.json()["reason"] is None


def test_full_queue_gets_503_with_retry_after_and_nobody_hangs(tight, tiny_checkpoint):
    url, checkpoint = tight
    if not checkpoint.exists():  # run on its own
        shutil.copytree(tiny_checkpoint, checkpoint)
    text = "Every request here asks for a few seconds of speech."  # ~80 ticks: the six arrive meanwhile
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: httpx.post(f"{url}/api/tts", json={"text": text}, timeout=300), range(6)))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) == {200, 503}, codes  # some served, the rest refused at once
    for refused in (r for r in responses if r.status_code == 503):
        assert refused.json()["error"]["code"] == "overloaded"
        assert refused.headers["retry-after"]
    assert httpx.post(f"{url}/api/tts", json={"text": "After the rush."}, timeout=120).status_code == 200


def test_ready_is_503_with_the_progress_while_a_first_start_downloads_the_model(temporary_apps, tiny_checkpoint,
                                                                                 tmp_path):
    """The production config's path on an empty cache, against the test hub (the real repo names,
    the tiny files, throttled): while the replica downloads, /ready is 503 saying how far it got and
    /api/gpu/status carries the download; the request that started it is refused after
    first_download_wait_s with a 503 that says how far the download is, the download goes on, and
    the next request succeeds."""
    with HubServer(kyutai_repos(tiny_checkpoint), rate_bps=300_000) as hub:  # ~5.5 s for the model
        hub_env = {"runtime_env": {"env_vars": {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"),
                                                "HF_HUB_DISABLE_XET": "1"}}}
        url = temporary_apps(
            "first-start", "/first-start",
            args={"model_path": None, "first_download_wait_s": 2},  # model_repo / voice_repo: the defaults
            worker={"ray_actor_options": {"num_gpus": 0, **hub_env},
                    "autoscaling_config": {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 1}},
            ingress={"ray_actor_options": hub_env})
        wait_for_replicas(url, 1)
        assert httpx.get(f"{url}/ready", timeout=30).status_code == 200  # nothing asked of the hub yet
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            speech = pool.submit(httpx.post, f"{url}/api/tts", json={"text": "Downloaded first."}, timeout=240)
            while True:  # until the replica reports the download (bytes, not seconds, are asserted)
                ready = httpx.get(f"{url}/ready", timeout=30)
                if ready.status_code == 503 or speech.done():
                    break
                time.sleep(0.2)
            assert ready.status_code == 503 and ready.json()["reason"].startswith(
                "downloading the model: kyutai/tts-1.6b-en_fr: "), ready.text
            [replica] = httpx.get(f"{url}/api/gpu/status", timeout=30).json()["replicas"]
            download = replica["download"]
            assert replica["state"] == "loading" and download["repo"] == "kyutai/tts-1.6b-en_fr"
            assert 0 <= download["bytes_done"] < download["bytes_total"]
            refused = speech.result()
            error = refused.json()["error"]
            assert refused.status_code == 503 and refused.headers["retry-after"] and error["code"] == "model_unavailable"
            assert "still being downloaded (kyutai/tts-1.6b-en_fr: " in error["message"], error
        deadline = time.monotonic() + 120  # a bound against hangs only: the download goes on by itself
        while httpx.get(f"{url}/ready", timeout=30).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert httpx.post(f"{url}/api/tts", json={"text": "Downloaded first."}, timeout=240).status_code == 200
        answered = time.monotonic()
        assert httpx.get(f"{url}/ready", timeout=30).status_code == 200
        while True:  # a report made after the answer (replicas report once a second; the voice was
            # fetched on demand by that request, and an older report may still show its download)
            [replica] = httpx.get(f"{url}/api/gpu/status", timeout=30).json()["replicas"]
            if replica["reported_s_ago"] < time.monotonic() - answered or time.monotonic() > answered + 30:
                break
            time.sleep(0.2)
        assert (replica["state"], replica["download"]) == ("ready", None)
        model_bytes = sum(len(data) for data in hub.repos["kyutai/tts-1.6b-en_fr"].files.values())
        assert sum(hub.bytes_served.get(name, 0) for name in hub.repos["kyutai/tts-1.6b-en_fr"].files) == model_bytes


def test_health_ready_docs(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert client.get("/docs").status_code == 200
    assert client.get("/apidocs", follow_redirects=False).headers["location"] == "/docs"
    spec = client.get("/openapi.json").json()
    assert "/api/tts" in spec["paths"] and "/api/gpu/status" in spec["paths"]


def test_gpu_status_reports_nodes_and_replicas(client):
    """Holds with or without NVIDIA GPUs: Ray's logical GPUs per node, and NVML facts exactly where
    NVML reports GPUs (this test's cluster is one local node: NVML here is NVML there)."""
    import ray

    from deployments.serve.gpu_info import gpu_facts, node_gpus

    status = client.get("/api/gpu/status").json()
    alive = {n["NodeID"]: n.get("Resources", {}).get("GPU", 0.0) for n in ray.nodes() if n.get("Alive")}
    assert {n["node_id"]: n["ray_gpus"] for n in status["nodes"]} == alive
    assert status["total_ray_gpus"] == sum(alive.values()) >= 3  # the test cluster's logical GPUs
    nvidia = [{k: g[k] for k in STABLE} for g in node_gpus()]  # [] without an NVIDIA driver
    assert [[{k: g[k] for k in STABLE} for g in n["gpus"]] for n in status["nodes"]] == [nvidia] * len(alive)
    assert status["total_gpus"] == len(nvidia) * len(alive)
    assert {r["gpu"] for r in status["replicas"]} == {0, 1}
    for replica in status["replicas"]:
        assert replica["state"] in {"unloaded", "loading", "ready", "offloaded"}
        assert replica["idle_seconds"] >= 0
        # VRAM facts of the replica's GPU where NVML knows that GPU, else none.
        expected = gpu_facts(replica["gpu"])
        assert (replica["vram"] is None) == (expected is None)
        if expected:
            assert {k: replica["vram"][k] for k in STABLE} == {k: expected[k] for k in STABLE}


STABLE = ("index", "name", "uuid", "memory_total_mib")  # NVML facts that do not change between reads


def test_gpu_status_node_facts_are_cached_and_shared_by_concurrent_callers(base_url):
    """The GPU panel polls every 3 s per tab: node facts (ray.nodes() and one task per node) are
    read at most once per NODE_FACTS_TTL_S by an ingress replica, whoever asks."""
    async def statuses(count: int) -> list[dict]:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as c:
            answers = await asyncio.gather(*(c.get("/api/gpu/status") for _ in range(count)))
        assert all(a.status_code == 200 for a in answers)
        return [a.json() for a in answers]

    (first,) = asyncio.run(statuses(1))
    assert first["node_facts"]["ttl_s"] > 0 and first["node_facts"]["reads"] >= 1 and first["nodes"]
    later = asyncio.run(statuses(6))
    # Six callers at once start at most one new read (none while the first one's facts are fresh).
    assert max(s["node_facts"]["reads"] for s in later) - first["node_facts"]["reads"] <= 1
    assert all(s["nodes"] for s in later)


def test_another_sites_page_cannot_drive_the_service(client, base_url):
    before = [r["offloads"] for r in client.get("/api/gpu/status").json()["replicas"]]
    # What a page on another site can send without a CORS preflight: a bodiless text/plain POST.
    evil = client.post("/api/gpu/offload", content=b"", headers={"Origin": "http://evil.example",
                                                                  "Content-Type": "text/plain"})
    assert evil.status_code == 403 and evil.json()["error"]["code"] == "cross_origin"
    evil_tts = client.post("/api/tts", json={"text": "Hello."}, headers={"Origin": "http://evil.example"})
    assert evil_tts.status_code == 403
    assert [r["offloads"] for r in client.get("/api/gpu/status").json()["replicas"]] == before
    # A POST must carry JSON, whoever sends it.
    bodiless = client.post("/api/gpu/offload")
    assert bodiless.status_code == 415 and bodiless.json()["error"]["code"] == "json_required"
    # The service's own page, an allowed origin, and clients that send no Origin keep working.
    own = base_url.split("/", 3)[:3]
    for origin in ("/".join(own), "http://localhost:3000", None):
        headers = {"Origin": origin} if origin else {}
        response = client.post("/api/tts", json={"text": "Hello."}, headers=headers)
        assert response.status_code == 200, (origin, response.text)


def test_another_sites_page_cannot_open_the_websocket(base_url):
    import asyncio

    import websockets

    async def connect(origin: str):
        url = base_url.replace("http://", "ws://") + "/api/tts_streaming"
        async with websockets.connect(url, origin=origin) as ws:
            return await ws.recv()

    with pytest.raises(websockets.InvalidStatus) as refused:
        asyncio.run(connect("http://evil.example"))
    assert refused.value.response.status_code == 403
    assert asyncio.run(connect("http://localhost:3000"))  # an allowed origin gets its Ready
