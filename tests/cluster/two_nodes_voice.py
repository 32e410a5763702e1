"""The uploaded voice's part of the two-node scenario (issue 20): a clip uploaded through the ingress
on the head node is spoken by the cloning model's replica on the worker node, and its deletion
reaches that replica. Used by tests/cluster/two_nodes_scenario.py; nothing is asserted here.

Both nodes of the local cluster run on one host and share its disk, so a worker that read the
voice store's files would work here by accident and fail on a real cluster. So the cloning
replica runs in a mount namespace of its own (Ray's `py_executable` runtime env wraps its Python in
`unshare`) where the folder that holds the voice store is an empty tmpfs: that process cannot see
the store, and the voice still speaks there only if its prompt came through Ray. The scenario reads
the replica's view of the path through /proc/<pid>/root (the path as that process resolves it).
Where mount namespaces cannot be made (no privilege, no user namespaces), the replica runs
unwrapped and the scenario says so (`hidden_store: false`, and why); the other facts hold either way.
"""

from __future__ import annotations

import copy
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

CLONE_DEPLOYMENT = "TTSWorker_clone"
# A custom resource only the first worker node has: the cloning replica is placed there.
CLONE_NODE = "clone-node"
STORE = "voice-store"


def unshare_prefix() -> list[str]:
    """`unshare` making a private mount namespace (a user namespace too when not root)."""
    flags = ["--mount"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--mount"]
    return ["unshare", *flags, "--propagation", "private"]


def hiding_python(folder: Path) -> tuple[str | None, str]:
    """A `py_executable` that runs this Python with `folder` covered by an empty tmpfs (None when
    this host cannot make mount namespaces), and why not."""
    if shutil.which("unshare") is None:
        return None, "no unshare command"
    cover = 'mount -t tmpfs -o size=64k,mode=0755 hidden "$0" && exec "$@"'
    wrapper = [*unshare_prefix(), "sh", "-c", cover, str(folder)]
    try:
        probe = subprocess.run([*wrapper, "true"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, repr(exc)
    if probe.returncode != 0:
        return None, (probe.stderr or f"rc {probe.returncode}").strip()[:300]
    return shlex.join([*wrapper, sys.executable]), ""


def add_cloning_model(app: dict, demo_app: dict, clone_checkpoint: str, head_disk: Path,
                      python: str | None) -> None:
    """The demo's cloning model beside the 1.6B-style one: one replica, on the node with CLONE_NODE,
    its Python wrapped by `python` (hiding_python) when given; uploads open to anonymous clients
    (no API keys here); the voice store in `head_disk`."""
    app["args"].update(models={"default": {}, "clone": {"model_path": clone_checkpoint,
                                                        "default_voice": "clips/low_hum.wav"}},
                       voice_store_dir=str(head_disk / STORE), allow_anonymous_uploads=True)
    clone = copy.deepcopy(next(d for d in demo_app["deployments"] if d["name"] == CLONE_DEPLOYMENT))
    clone["ray_actor_options"] = {"num_gpus": 0, "num_cpus": 0.5, "resources": {CLONE_NODE: 1}}
    if python:
        clone["ray_actor_options"]["runtime_env"] = {"py_executable": python}
    clone.update(user_config={"offload_after_s": 300, "max_batch_size": 1},
                 autoscaling_config={**clone["autoscaling_config"], "min_replicas": 1, "initial_replicas": 1,
                                     "max_replicas": 1})
    app["deployments"].append(clone)


def _openai_sdk(url: str):
    """The OpenAI Python SDK against the service (it has no API keys here: any key is let in)."""
    import openai

    return openai.OpenAI(api_key="no-keys-here", base_url=f"{url}/v1", max_retries=0, timeout=120)


def _broadcasts(registry, replica: str) -> list[str]:
    """What `replica` answered to the registry's commands still kept (the scenario sends none of its
    own: these are the ingress's)."""
    import ray

    answers = []
    for command_id in range(1, 20):
        results = ray.get(registry.results.remote(command_id))["results"]
        if replica in results:
            answers.append(results[replica].get("result"))
    return answers


def uploaded_voice(url: str, head_disk: Path, hidden: bool, poll) -> dict:
    """Upload (OpenAI SDK) -> the replica's view of the store -> speak (REST) -> delete (OpenAI
    SDK) -> the broadcast -> refused. One API speaks it here: every API sends the clip the same way
    (speech.synthesis_request puts it in the worker request), each API is tested on one node
    (tests/unit/test_uploaded_voices.py, tests/serve/test_clone_served.py), and the WebSocket's
    words crossing nodes (the inbox actor) is the 1.6B model's part of the scenario."""
    import ray

    from deployments.serve.registry import get_registry
    from helpers.clips import audio_file, tone
    from serve_app.service.shared_voices import store_actor_name

    facts: dict = {}
    registry = get_registry("tts")
    clone = poll("the cloning replica's report", lambda: next(
        (r for r in ray.get(registry.snapshot.remote()) if r.get("deployment") == CLONE_DEPLOYMENT), None))
    facts["clone_node"] = clone["node_id"]
    sdk = _openai_sdk(url)
    clip = audio_file(tone(4.0, rate=16000), rate=16000)
    voice = sdk.audio.voices.create(audio_sample=("me.wav", clip, "audio/wav"), consent="I am the speaker",
                                    name="Me").id
    listing = httpx.get(f"{url}/api/voices", params={"model": "clone"}, timeout=30).json()
    facts["listed"] = [(v["id"], v["model"]) for v in listing["uploaded"]]
    facts["voice_id"] = voice
    store = head_disk / STORE
    facts["store_files"] = sorted(str(p.relative_to(store).parent) for p in store.rglob("*") if p.is_file())
    facts["store_actor_nodes"] = [info["Address"]["NodeID"] for info in ray._private.state.actors().values()
                                  if info.get("Name") == store_actor_name("tts") and info.get("State") == "ALIVE"]
    if hidden:  # the path as the cloning replica's process resolves it (its mount namespace)
        facts["store_seen_by_clone"] = os.path.exists(f"/proc/{clone['pid']}/root{store}")
        facts["store_seen_here"] = store.is_dir()

    spoken = httpx.post(f"{url}/api/tts", json={"text": "Hello there.", "voice": voice, "format": "pcm"},
                        timeout=120)
    facts["spoken"] = {"status": spoken.status_code, "node_id": spoken.headers.get("X-TTS-Node"),
                       "bytes": len(spoken.content), "error": None if spoken.is_success else spoken.text[:500]}
    deleted = sdk.audio.voices.delete(voice)
    facts["deleted"] = {"id": deleted.id, "deleted": deleted.deleted}
    # The DELETE waits for the replicas' answers to its broadcast (serve_app/service/voice_uploads.py).
    facts["clone_answers"] = _broadcasts(registry, clone["replica"])
    again = httpx.post(f"{url}/api/tts", json={"text": "Hi.", "voice": voice}, timeout=60)
    facts["after_delete"] = {"status": again.status_code, "code": again.json().get("error", {}).get("code")}
    return facts
