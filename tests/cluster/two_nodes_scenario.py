"""The two-node scenario of tests/cluster/test_two_nodes.py, run in a process of its own (a pytest process
holds the session's single-node Ray cluster, and one process joins one cluster).

    python tests/cluster/two_nodes_scenario.py CHECKPOINT_DIR OUTPUTS_DIR CLONE_CHECKPOINT_DIR

Starts a local Ray cluster of two nodes on this host (Ray's own `ray.cluster_utils.Cluster`: a head
and a worker node with one logical GPU each), deploys configs/demo.yaml with the tiny checkpoints,
does what a cluster operator would see (replicas per node, a saved file, where the registry and the
ingress run, a voice uploaded on the head spoken and deleted on the worker node (two_nodes_voice.py),
the loss of a GPU node under load and its return), and prints one JSON line of facts on stdout for
the test to judge. Nothing is asserted here; every wait is bounded. The cluster is shut
down on every way out (SIGTERM included).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the repository, and the tests' helpers

from deployments.engine.faults import HANG_MARKER  # noqa: E402
from deployments.serve.registry import NAMESPACE, registry_name  # noqa: E402
from serve_app.launch import deploy, read_config  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from helpers.demo_apps import one_model_app  # noqa: E402
from two_nodes_voice import CLONE_NODE, add_cloning_model, hiding_python, uploaded_voice  # noqa: E402

NODE = {"num_cpus": 2, "num_gpus": 1}
WAIT_S = 90


def poll(what: str, check, timeout_s: float = WAIT_S, every_s: float = 0.25):
    """check()'s first truthy answer; TimeoutError naming `what` and the last answer."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not within {timeout_s:g} s (last: {last!r})")


def app_config(checkpoint: str, outputs: str, port: int, clone_checkpoint: str, head_disk: Path,
               python: str | None) -> dict:
    config = read_config(REPO / "configs" / "demo.yaml")
    demo_app = config["applications"][0]
    # One proxy: on one host, proxies of both nodes would want the same port.
    config.update(proxy_location="HeadOnly", http_options={**config["http_options"], "host": "127.0.0.1",
                                                           "port": port})
    # The 1.6B-style model alone, a whole logical GPU per replica: with the demo's half GPUs the
    # replica lost with the worker node comes back on the head's GPU, and none would be placed on
    # the returned node.
    app = config["applications"][0] = one_model_app(config["applications"][0], checkpoint, outputs)
    # test_faults: a text with HANG_MARKER keeps its replica busy until the node goes away
    # (generation_stall_s high enough that the health check does not replace it first).
    app["args"].update(test_faults=True, generation_stall_s=600, websocket_idle_timeout_s=300)
    for deployment in app["deployments"]:
        if deployment["name"] == "TTSWorker":
            # One slot per replica: a request that holds one replica sends the next to the other.
            deployment.update(max_ongoing_requests=1, user_config={"offload_after_s": 300, "max_batch_size": 1},
                              autoscaling_config={**deployment["autoscaling_config"], "min_replicas": 2,
                                                  "initial_replicas": 2, "max_replicas": 2})
    # The cloning model: one replica, on the first worker node only (its Python wrapped by
    # `python`, which hides `head_disk`, the voice store's folder, from it).
    add_cloning_model(app, demo_app, clone_checkpoint, head_disk, python)
    return config


class Scenario:
    def __init__(self, checkpoint: str, outputs: str, clone_checkpoint: str):
        self.checkpoint, self.outputs, self.clone_checkpoint = checkpoint, outputs, clone_checkpoint
        self.head_disk = Path(tempfile.mkdtemp(prefix="head-disk-"))  # the voice store's folder
        self.facts: dict = {}
        self.holds: list = []
        self.sockets = contextlib.ExitStack()

    # ---- helpers --------------------------------------------------------------------------
    def replicas(self) -> list[dict]:
        """The 1.6B-style model's replicas (TTSWorker), as /api/gpu/status lists them."""
        response = httpx.get(f"{self.url}/api/gpu/status", timeout=30)
        listed = response.json()["replicas"] if response.status_code == 200 else []
        return [r for r in listed if r["deployment"] == "TTSWorker"]

    def replica_on(self, node_id: str) -> dict | None:
        return next((r for r in self.replicas() if r.get("node_id") == node_id), None)

    def wait_active(self, node_id: str, active: int) -> None:
        try:
            poll(f"replica on {node_id[:8]} with {active} busy slot(s)",
                 lambda: (self.replica_on(node_id) or {}).get("active") == active)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; replicas: {self.replicas()}") from None

    def hold(self):
        """A WebSocket session with streamed text and no end: it keeps one slot busy until closed."""
        import msgpack
        from websockets.sync.client import connect

        # Its audio is never read: no keepalive pings (they would wait behind it), no queue bound.
        ws = self.sockets.enter_context(connect(f"ws://127.0.0.1:{self.port}/api/tts_streaming", open_timeout=30,
                                                ping_interval=None, max_queue=None))
        ws.send(msgpack.packb({"type": "Text", "text": "hold this slot for a while please"}))
        self.holds.append(ws)
        return ws

    def admissions(self, total: int) -> dict[str, int]:
        """Each node's replica's admission count, once the replicas' reports count at least the
        `total` requests sent so far (reports come every second: the last one may not be in yet)."""
        def counts():
            found = self.admission_counts()
            return found if sum(found.values()) >= total else None
        return poll(f"replica reports counting {total} admissions", counts)

    def admission_counts(self) -> dict[str, int]:
        return {r["node_id"]: r.get("admissions", 0) for r in self.replicas()}

    def admitted_on(self, before: dict[str, int]) -> str:
        """The node whose replica admitted a request since `before` (a replica's admission count
        only grows: a report a second old cannot be taken for the new request, as `active` can)."""
        return poll("a replica admitting the new request", lambda: next(
            (node for node, count in self.admission_counts().items() if count > before.get(node, 0)), None))

    def actor_nodes(self) -> dict[str, list[str]]:
        """Alive actors' node ids by class or name (from the GCS: no dashboard needed)."""
        import ray

        nodes: dict[str, list[str]] = {}
        for info in ray._private.state.actors().values():
            if info.get("State") == "ALIVE":
                for key in {info.get("Name"), info.get("ActorClassName")} - {None, ""}:
                    nodes.setdefault(key, []).append(info["Address"]["NodeID"])
        return nodes

    def uploaded_voice(self, hidden: bool) -> None:
        try:
            self.facts["voice"] = uploaded_voice(self.url, self.head_disk, hidden, poll)
        except Exception as exc:  # noqa: BLE001 - reported, judged by the test
            traceback.print_exc()
            self.facts["voice"] = {"error": f"{exc.__class__.__name__}: {exc}"}

    # ---- the scenario ---------------------------------------------------------------------
    def run(self, cluster) -> None:
        import ray

        facts = self.facts
        started = time.monotonic()
        head_id = cluster.head_node.node_id
        # Connected while the head is the only node, so this driver attaches to the head's raylet
        # (Ray refuses to remove the node a driver is attached to).
        ray.init(address=cluster.address, namespace="serve", log_to_driver=False)
        worker = cluster.add_node(**NODE, resources={CLONE_NODE: 1})
        cluster.wait_for_nodes()
        facts.update(head_node=head_id, worker_node=worker.node_id,
                     driver_node=ray.get_runtime_context().get_node_id())
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        python, why_not = hiding_python(self.head_disk)
        facts.update(hidden_store=python is not None, hidden_store_why_not=why_not)
        deploy(app_config(self.checkpoint, self.outputs, self.port, self.clone_checkpoint, self.head_disk, python),
               wait_s=180)
        replicas = poll("2 replicas reporting", lambda: (r := self.replicas()) and len(r) == 2 and r)
        status = httpx.get(f"{self.url}/api/gpu/status", timeout=30).json()
        facts.update(replica_nodes=sorted(r["node_id"] for r in replicas),
                     status_nodes=sorted(n["node_id"] for n in status["nodes"]),
                     deployed_s=round(time.monotonic() - started, 1))

        # 3b. A voice uploaded through the head's ingress, spoken and deleted on the worker node's
        # cloning replica, beside steps 2 and 3 (other replicas: its model loads meanwhile).
        voice_started = time.monotonic()
        voice = threading.Thread(target=self.uploaded_voice, args=(python is not None,), name="voice")
        voice.start()

        # 2. A saved file downloads through the service (one ingress replica here).
        saved = httpx.post(f"{self.url}/api/tts", json={"text": "Saved on the cluster.", "save": True},
                           timeout=120)
        facts["save_status"] = saved.status_code
        if saved.status_code == 200:
            download = httpx.get(saved.json()["url"], timeout=30)
            facts.update(download_status=download.status_code, download_bytes=len(download.content),
                         download_riff=download.content[:4] == b"RIFF")

        # 3. Where the registry and the ingress run.
        actors = self.actor_nodes()
        facts.update(registry_nodes=actors.get(registry_name("tts"), []),
                     ingress_nodes=actors.get("ServeReplica:tts:Ingress", []),
                     registry_namespace=NAMESPACE)

        # 3b. (begun with 2.) The voice, on the cloning replica: done before the nodes change.
        voice.join(WAIT_S * 2)
        facts["voice_s"] = round(time.monotonic() - voice_started, 1)

        # 4. A long request on the worker node's replica. Each replica has one slot: hold the
        # head's slot with a WebSocket session, so the hanging request can only go to the worker's.
        # Requests admitted so far: the saved one.
        before = self.admissions(1)
        first = self.hold()
        if self.admitted_on(before) != head_id:  # it took the worker's slot: take the head's, free the worker's
            before = self.admissions(2)
            self.hold()
            self.admitted_on(before)
            first.close()
            self.wait_active(worker.node_id, 0)
        before = self.admissions(len(self.holds) + 1)
        busy: dict = {}

        def long_request() -> None:
            try:
                response = httpx.post(f"{self.url}/api/tts", json={"text": f"{HANG_MARKER} never ends"},
                                      timeout=WAIT_S)
                json_body = response.headers.get("content-type", "").startswith("application/json")
                busy.update(status=response.status_code, content_type=response.headers.get("content-type"),
                            body=response.json() if json_body else response.text[:500])
            except Exception as exc:  # noqa: BLE001 - reported, judged by the test
                busy.update(exception=repr(exc))

        client = threading.Thread(target=long_request)
        client.start()
        facts["in_flight_node"] = self.admitted_on(before)
        for ws in self.holds:
            ws.close()
        self.wait_active(head_id, 0)
        removed_at = time.monotonic()
        cluster.remove_node(worker, allow_graceful=False)
        client.join(WAIT_S)
        facts.update(in_flight=busy, in_flight_answered_s=round(time.monotonic() - removed_at, 1))
        after = []
        for i in range(2):
            response = httpx.post(f"{self.url}/api/tts", json={"text": f"After the loss, number {i}."},
                                  timeout=120)
            after.append({"status": response.status_code, "node_id": response.headers.get("X-TTS-Node")})
        facts["after_removal"] = after

        # The node comes back: Serve starts the second replica there.
        back = cluster.add_node(**NODE)
        returned_at = time.monotonic()
        replicas = poll("a replica on the returned node", lambda: (r := self.replicas()) and len(r) == 2
                        and back.node_id in {x["node_id"] for x in r} and r, timeout_s=WAIT_S)
        facts.update(returned_node=back.node_id, replica_nodes_after=sorted(r["node_id"] for r in replicas),
                     returned_s=round(time.monotonic() - returned_at, 1))
        facts["total_s"] = round(time.monotonic() - started, 1)


def main() -> int:
    import ray
    from ray.cluster_utils import Cluster

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below
    scenario = Scenario(sys.argv[1], sys.argv[2], sys.argv[3])
    cluster = None
    try:
        # A lost node is declared dead after 3 missed 1 s health checks (Ray's default: 5 x 3 s).
        cluster = Cluster(initialize_head=True, head_node_args={
            **NODE, "include_dashboard": False,
            "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}})
        scenario.run(cluster)
    except BaseException as exc:  # noqa: BLE001 - reported as a fact
        scenario.facts["error"] = f"{exc.__class__.__name__}: {exc}"
        traceback.print_exc()
    finally:
        try:
            scenario.sockets.close()
        except Exception:  # noqa: BLE001 - a socket the cluster's end already dropped
            pass
        try:
            ray.shutdown()
        finally:
            if cluster is not None:
                cluster.shutdown()
            shutil.rmtree(scenario.head_disk, ignore_errors=True)
        print(json.dumps(scenario.facts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
