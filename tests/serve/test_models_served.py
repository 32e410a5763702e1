"""Several models in one app (the `models` table): each has a worker deployment of its own (the
default model's is TTSWorker, the other's TTSWorker_<name>), and status, readiness, /api/info and
/v1/models report each. Both models are the tiny checkpoint under two names; their workers run on
CPU (num_gpus 0) so that the shared cluster's logical GPUs stay with the main app."""

from __future__ import annotations

import time

import httpx

def test_each_model_has_its_own_worker_deployment_and_status_lists_both(duo_url):
    status = httpx.get(f"{duo_url}/api/gpu/status", timeout=30).json()
    assert {(r["model_name"], r["deployment"]) for r in status["replicas"]} == {
        ("first", "TTSWorker"), ("second", "TTSWorker_second")}
    deployments = status["worker_deployments"]
    assert {name: (d["deployment"], d["status"]) for name, d in deployments.items()} == {
        "first": ("TTSWorker", "HEALTHY"), "second": ("TTSWorker_second", "HEALTHY")}
    assert status["worker_deployment"]["status"] == "HEALTHY"  # the default model's, as before


def test_ready_and_info_answer_for_every_model(duo_url, tiny_checkpoint):
    ready = httpx.get(f"{duo_url}/ready", timeout=30)
    body = ready.json()
    assert ready.status_code == 200 and set(body["models"]) == {"first", "second"}
    assert all(m["ready"] and m["replicas"] == 1 for m in body["models"].values())
    info = httpx.get(f"{duo_url}/api/info", timeout=30).json()
    assert [(m["name"], m["default"], m["test_model"]) for m in info["models"]] == [
        ("first", True, True), ("second", False, True)]
    ids = [m["id"] for m in httpx.get(f"{duo_url}/v1/models", timeout=30).json()["data"]]
    assert ids[:2] == [f"local/{tiny_checkpoint.name}"] * 2 and {"first", "second"} <= set(ids)


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
