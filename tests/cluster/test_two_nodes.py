"""More than one node: a local Ray cluster of two nodes (head + worker, one logical GPU each) runs
configs/demo.yaml; tests/cluster/two_nodes_scenario.py drives it in a process of its own (this pytest
process holds the session's single-node cluster) and reports facts as JSON, judged here.

Shown: one TTSWorker replica per node, each reporting its Ray node id; /api/gpu/status lists both
nodes; a saved output downloads through the service; the worker registry and the Ingress run on the
head node, which no scale-down removes; losing the worker node under a busy request gives that
client a clean 503 `worker_failed` while new requests are served by the head's replica; when a
node comes back, Serve starts the second replica on it. A voice uploaded through the ingress (head)
is spoken by the cloning model's replica on the worker node, whose process cannot see the voice
store's folder (tests/cluster/two_nodes_voice.py), and deleting it drops its prompt there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = REPO / "tests" / "cluster" / "two_nodes_scenario.py"
TIMEOUT_S = 600


@pytest.fixture(scope="module")
def facts(tiny_checkpoint, tiny_clone_checkpoint, tmp_path_factory) -> dict:
    # Both nodes are on this host, so a temporary folder is "shared"; on a real cluster outputs_dir
    # must be a path every ingress node mounts (README, "Run on a cluster").
    outputs = tmp_path_factory.mktemp("two-node-outputs")
    process = subprocess.Popen([sys.executable, str(SCRIPT), str(tiny_checkpoint), str(outputs),
                                str(tiny_clone_checkpoint)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.terminate()  # the script shuts its cluster down on SIGTERM
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # and whatever it started, as a last resort
            stdout, stderr = process.communicate()
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"the scenario printed no facts (rc {process.returncode}):\n{stderr[-6000:]}"
    result = json.loads(lines[-1])
    assert "error" not in result, f"{result['error']}\nfacts: {result}\n{stderr[-6000:]}"
    return result


def test_one_replica_per_node_each_reporting_its_node_id(facts):
    nodes = sorted([facts["head_node"], facts["worker_node"]])
    assert facts["replica_nodes"] == nodes
    assert facts["status_nodes"] == nodes


def test_a_saved_output_downloads_through_the_service(facts):
    assert facts["save_status"] == 200
    assert facts["download_status"] == 200 and facts["download_riff"] and facts["download_bytes"] > 44


def test_the_registry_and_the_ingress_live_on_the_head_node(facts):
    assert facts["registry_nodes"] == [facts["head_node"]]
    assert facts["ingress_nodes"] and set(facts["ingress_nodes"]) == {facts["head_node"]}


def test_losing_a_busy_node_fails_its_client_cleanly_and_the_head_serves_on(facts):
    assert facts["in_flight_node"] == facts["worker_node"]
    in_flight = facts["in_flight"]
    assert in_flight.get("status") == 503, in_flight
    assert in_flight["content_type"].startswith("application/json")
    assert in_flight["body"]["error"]["code"] == "worker_failed", in_flight
    assert facts["after_removal"] == [{"status": 200, "node_id": facts["head_node"]}] * 2


def test_serve_brings_the_replica_back_when_a_node_returns(facts):
    assert facts["replica_nodes_after"] == sorted([facts["head_node"], facts["returned_node"]])


def voice_facts(facts) -> dict:
    voice = facts.get("voice", {"error": "the voice step did not end"})
    assert "error" not in voice, voice["error"]
    return voice


def test_a_voice_uploaded_on_the_head_speaks_on_the_worker_node(facts):
    voice = voice_facts(facts)
    # Sent with the OpenAI SDK (client.audio.voices.create), a voice of the cloning model.
    assert voice["listed"] == [[voice["voice_id"], "clone"]]
    # The store (its actor and its files) is the head's; the only cloning replica is the worker node's.
    assert voice["store_actor_nodes"] == [facts["head_node"]]
    assert voice["store_files"] == ["clips", "voices"]
    assert voice["clone_node"] == facts["worker_node"] != facts["head_node"]
    spoken = voice["spoken"]
    assert spoken["status"] == 200 and spoken["bytes"] > 0 and spoken["node_id"] == facts["worker_node"], spoken


def test_the_clip_reaches_the_worker_node_through_ray_not_the_disk(facts):
    if not facts["hidden_store"]:
        pytest.skip(f"this host cannot give the replica a mount namespace: {facts['hidden_store_why_not']}")
    # This process sees the store's folder; the replica that spoke the voice never could.
    voice = voice_facts(facts)
    assert voice["store_seen_here"] is True
    assert voice["store_seen_by_clone"] is False


def test_deleting_the_voice_drops_its_prompt_on_the_worker_node(facts):
    voice = voice_facts(facts)
    assert voice["deleted"] == {"id": voice["voice_id"], "deleted": True}  # the SDK's audio.voices.delete
    # The DELETE's broadcast, as the worker node's replica answered it: it held the prompt.
    assert voice["clone_answers"] == ["dropped"]
    assert voice["after_delete"] == {"status": 400, "code": "unknown_voice"}
