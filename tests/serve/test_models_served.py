"""Several models in one app (the `models` table): each has a worker deployment of its own (the
default model's is TTSWorker, the other's TTSWorker_<name>), and status, readiness, /api/info and
/v1/models report each. Both models are the tiny checkpoint under two names; their workers hold
half a logical GPU each, and share one (tests/conftest.py's DUO_WORKER)."""

from __future__ import annotations

import time

import httpx

def test_each_model_has_its_own_worker_deployment_and_status_lists_both(duo_url):
    status = httpx.get(f"{duo_url}/api/gpu/status", timeout=30).json()
    assert {(r["model_name"], r["deployment"], r["kind"]) for r in status["replicas"]} == {
        ("first", "TTSWorker", "tts-embedding-voices"), ("second", "TTSWorker_second", "tts-embedding-voices"),
        ("ears", "TTSWorker_ears", "stt")}
    deployments = status["worker_deployments"]
    assert {name: (d["deployment"], d["status"], d["kind"]) for name, d in deployments.items()} == {
        "first": ("TTSWorker", "HEALTHY", "tts-embedding-voices"),
        "second": ("TTSWorker_second", "HEALTHY", "tts-embedding-voices"), "ears": ("TTSWorker_ears", "HEALTHY", "stt")}
    assert status["worker_deployment"]["status"] == "HEALTHY"  # the default model's, as before


def test_ready_and_info_answer_for_every_model(duo_url, tiny_checkpoint):
    ready = httpx.get(f"{duo_url}/ready", timeout=30)
    body = ready.json()
    assert ready.status_code == 200 and set(body["models"]) == {"first", "second", "ears"}
    assert all(m["ready"] and m["replicas"] == 1 for m in body["models"].values())
    info = httpx.get(f"{duo_url}/api/info", timeout=30).json()
    assert [(m["name"], m["default"], m["test_model"], m["kind"]) for m in info["models"]] == [
        ("first", True, True, "tts-embedding-voices"), ("second", False, True, "tts-embedding-voices"),
        ("ears", False, True, "stt")]
    listed = {m["id"]: m["kind"] for m in httpx.get(f"{duo_url}/v1/models", timeout=30).json()["data"]}
    assert listed[f"local/{tiny_checkpoint.name}"] == "tts-embedding-voices" and listed["ears"] == "stt"
    assert {"first", "second", "ears"} <= set(listed)


def test_both_models_replicas_share_one_gpu_and_each_serves_its_own_model(duo_url):
    """Half a logical GPU each: Ray placed both replicas on one node and one GPU (its assignment as
    each replica read it, ray.get_gpu_ids(), and the CUDA_VISIBLE_DEVICES Ray set for it; the GCS
    actor table's node and pid of each replica actor), and a request naming a model is spoken by
    that model's replica, on that GPU."""
    import ray
    from ray import serve

    # Each deployment's one replica, in its own words (through its handle: it runs anyway).
    first, second = (serve.get_deployment_handle(name, app_name="duo").status.remote().result(timeout_s=60)
                     for name in ("TTSWorker", "TTSWorker_second"))
    assert first["gpu"] is not None and first["gpu"] == second["gpu"]
    assert first["cuda_visible_devices"] == second["cuda_visible_devices"] == str(first["gpu"])
    assert first["node_id"] == second["node_id"] and first["replica"] != second["replica"]
    actors = {info["Name"].rsplit("#", 1)[-1]: info for info in ray._private.state.actors().values()
              if info["State"] == "ALIVE" and info["Name"].rsplit("#", 1)[0] in (
                  "SERVE_REPLICA::duo#TTSWorker", "SERVE_REPLICA::duo#TTSWorker_second")}
    assert set(actors) == {first["replica"], second["replica"]}
    for report in (first, second):
        actor = actors[report["replica"]]
        assert (actor["Address"]["NodeID"], actor["Pid"]) == (report["node_id"], report["pid"])
    for model, replica in (("first", first), ("second", second)):
        spoken = httpx.post(f"{duo_url}/api/tts", json={"text": "Sharing a GPU.", "model": model}, timeout=120)
        assert spoken.status_code == 200, spoken.text
        assert (spoken.headers["x-tts-replica"], spoken.headers["x-tts-gpu"]) == (replica["replica"], str(first["gpu"]))


def test_a_request_naming_no_model_is_served_by_the_default_models_deployment(duo_url):
    replicas = httpx.get(f"{duo_url}/api/gpu/status", timeout=30).json()["replicas"]
    default_replica = next(r["replica"] for r in replicas if r["deployment"] == "TTSWorker")
    spoken = httpx.post(f"{duo_url}/api/tts", json={"text": "Good morning."}, timeout=120)
    assert spoken.status_code == 200 and spoken.headers["x-tts-replica"] == default_replica


def replicas_by_deployment(url: str) -> dict[str, dict]:
    return {r["deployment"]: r for r in httpx.get(f"{url}/api/gpu/status", timeout=30).json()["replicas"]}


def test_the_request_chooses_its_model_on_rest_and_openai(duo_url):
    replicas = replicas_by_deployment(duo_url)
    second = replicas["TTSWorker_second"]["replica"]
    rest = httpx.post(f"{duo_url}/api/tts", json={"text": "Good morning.", "model": "second"}, timeout=120)
    assert rest.status_code == 200 and rest.headers["x-tts-replica"] == second
    for model, deployment in [("second", "TTSWorker_second"), ("tts-1", "TTSWorker"), ("no-such-model", "TTSWorker")]:
        # OpenAI's clients send names of their own: any unknown name is the default model.
        before = admissions(duo_url, deployment)
        spoken = httpx.post(f"{duo_url}/v1/audio/speech", json={"input": "Hi.", "model": model,
                                                                 "response_format": "pcm"}, timeout=120)
        assert spoken.status_code == 200 and spoken.content, model
        assert admissions(duo_url, deployment) == before + 1, model
    refused = httpx.post(f"{duo_url}/api/tts", json={"text": "Hi.", "model": "no-such-model"}, timeout=60)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unknown_model"
    assert refused.json()["error"]["param"] == "model"
    assert httpx.get(f"{duo_url}/api/voices", params={"model": "nope"}, timeout=30).status_code == 400
    listing = httpx.get(f"{duo_url}/api/voices", params={"model": "second"}, timeout=30).json()
    assert listing["voices"] and (listing["model"], listing["models"]) == ("second", ["first", "second"])


def admissions(url: str, deployment: str, timeout_s: float = 15) -> int:
    """Requests the deployment's replica has admitted to a row, from a report it made after this
    call began (replicas report once a second), so that every request already answered counts."""
    asked = time.monotonic()
    deadline = asked + timeout_s
    while time.monotonic() < deadline:
        report = replicas_by_deployment(url)[deployment]
        if report["reported_s_ago"] is not None and report["reported_s_ago"] < time.monotonic() - asked:
            return report["admissions"] or 0
        time.sleep(0.2)
    raise AssertionError(f"{deployment} made no report for {timeout_s} s")


def test_the_websocket_and_mcp_choose_their_model_too(duo_url):
    import asyncio

    import msgpack
    import websockets
    from test_mcp import mcp_session, run
    from test_websocket import receive_all, ws_url

    before = admissions(duo_url, "TTSWorker_second")

    async def speak() -> list:
        async with websockets.connect(ws_url(duo_url, model="second")) as ws:
            await ws.send(msgpack.packb({"type": "Text", "text": "Hello there, my friend."}))
            await ws.send(msgpack.packb({"type": "Eos"}))
            return await receive_all(ws)

    messages = [msgpack.unpackb(m) for m in asyncio.run(speak())]
    assert messages[0] == {"type": "Ready"} and any(m["type"] == "Audio" for m in messages)
    assert admissions(duo_url, "TTSWorker_second") == before + 1

    async def refused_handshake() -> int:
        try:
            async with websockets.connect(ws_url(duo_url, model="no-such-model")):
                return 101
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(refused_handshake()) == 400

    async def tool_calls():
        async with mcp_session(f"{duo_url}/mcp") as session:
            spoken = await session.call_tool("text_to_speech", {"text": "Hi.", "model": "second", "save": False})
            voices = await session.call_tool("list_voices", {"model": "second"})
            wrong = await session.call_tool("text_to_speech", {"text": "Hi.", "model": "no-such-model"})
            return spoken, voices, wrong

    spoken, voices, wrong = run(tool_calls)
    assert not spoken.isError and spoken.structuredContent["replica"] == replicas_by_deployment(duo_url)[
        "TTSWorker_second"]["replica"]
    assert voices.structuredContent["model"] == "second" and voices.structuredContent["models"] == ["first", "second"]
    assert wrong.isError and "unknown model" in wrong.content[0].text


def worker_series(metric: str, application: str) -> dict[tuple[str, str], float]:
    """(deployment, model) -> value of a worker metric of `application`, as Ray's Prometheus
    endpoint on this node shows it (summed over its other labels)."""
    import re

    import ray

    port = ray._private.worker.global_worker.node.metrics_export_port
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        match = re.match(rf"^{metric}\{{(.*)\}} (\S+)$", line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if labels.get("application") == application:
            key = (labels.get("deployment"), labels.get("model"))
            found[key] = found.get(key, 0.0) + float(match.group(2))
    return found


def test_the_workers_metrics_are_labelled_by_model(duo_url):
    """Each worker's metrics carry its model's name (deployments/serve/metrics.py), beside the
    deployment Serve tags them with. Earlier tests of this module had both models speak."""
    for model in ("first", "second"):
        assert httpx.post(f"{duo_url}/api/tts", json={"text": "Counted.", "model": model},
                          timeout=120).status_code == 200
    expected = {("TTSWorker", "first"), ("TTSWorker_second", "second")}
    deadline = time.monotonic() + 60  # Ray exports a worker's metrics every few seconds
    while True:
        requests, first_audio = (worker_series(name, "duo") for name in (
            "ray_tts_requests_total", "ray_tts_time_to_first_audio_seconds_count"))
        if expected <= set(requests) and expected <= set(first_audio):
            break
        assert time.monotonic() < deadline, f"not labelled by model: {requests}, {first_audio}"
        time.sleep(1)
    assert set(requests) == set(first_audio) == expected and all(count >= 1 for count in requests.values())


def test_each_models_deployment_scales_to_zero_on_its_own(serve_cluster, duo_url):
    """Last of this module: the second model's deployment is let scale to zero (a live update of
    its autoscaling), the first keeps its replica and serves, and a request naming the second
    model wakes it again."""
    import copy

    app = copy.deepcopy(serve_cluster.apps["duo"])
    second = next(d for d in app["deployments"] if d["name"] == "TTSWorker_second")
    second["autoscaling_config"].update(min_replicas=0, downscale_delay_s=2, downscale_to_zero_delay_s=2,
                                        look_back_period_s=2)
    serve_cluster.deploy_app(app)
    deadline = time.monotonic() + 120  # a bound against hangs only
    while time.monotonic() < deadline:
        status = httpx.get(f"{duo_url}/api/gpu/status", timeout=30).json()
        running = {name: d["replicas"].get("RUNNING", 0) for name, d in status["worker_deployments"].items()}
        if running == {"first": 1, "second": 0} and set(replicas_by_deployment(duo_url)) == {"TTSWorker"}:
            break
        time.sleep(1)
    assert running == {"first": 1, "second": 0}, status["worker_deployments"]
    first = replicas_by_deployment(duo_url)["TTSWorker"]["replica"]
    served = httpx.post(f"{duo_url}/api/tts", json={"text": "Still here."}, timeout=120)
    assert served.status_code == 200 and served.headers["x-tts-replica"] == first
    woken = httpx.post(f"{duo_url}/api/tts", json={"text": "Awake again.", "model": "second"}, timeout=300)
    assert woken.status_code == 200 and woken.headers["x-tts-replica"] != first
    deadline = time.monotonic() + 30  # replicas report once a second
    while "TTSWorker_second" not in (reports := replicas_by_deployment(duo_url)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert reports["TTSWorker_second"]["replica"] == woken.headers["x-tts-replica"]
