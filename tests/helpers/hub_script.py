"""A model manager's first requests in a fresh interpreter, with the hub environment given.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE when it is imported
(huggingface_hub.constants), and a test process imported it long ago: a start with another hub
environment (an unreachable hub, offline mode) runs here, as a replica would start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

HUB_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from deployments.settings import EngineSettings
    from deployments.engine.model_manager import ModelManager
    from deployments.protocol import SynthesisRequest

    repo, voice = sys.argv[1], sys.argv[2]
    manager = ModelManager(EngineSettings(model_repo=repo, n_q=8, cpu_threads=1, device="cpu",
                                          default_voice=voice))
    report = {"errors": []}
    for attempt in range(2):
        try:
            with manager.acquire() as engine:
                [result] = engine.synthesize([SynthesisRequest("Spoken from the cache.")])
                report["words"] = [w.word for w in result["words"]]
                report["voices"] = [v.to_dict() for v in engine.voices.list_voices()]
        except Exception as exc:
            report["errors"].append([exc.__class__.__name__, str(exc)])
        report["status"] = {k: manager.status()[k] for k in ("state", "error", "failures", "loads")}
    print(json.dumps(report))
""")


def run_hub_script(hf_home: Path, repo: str, voice: str, **env: str) -> tuple[dict, str]:
    """Loads `repo` twice (the second request retries a failed load) and speaks with `voice`;
    returns what happened and the log. Without `HF_ENDPOINT` in `env` the hub is unreachable."""
    full_env = {**os.environ, "HF_HOME": str(hf_home),
                "HF_ENDPOINT": "http://127.0.0.1:9",  # nothing listens there: connection refused
                "NO_TORCH_COMPILE": "1", "NO_CUDA_GRAPH": "1"}
    for name in ("HF_HUB_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_OFFLINE"):
        full_env.pop(name, None)
    full_env.update(env)
    # The timeout only turns a hang into a failure.
    done = subprocess.run([sys.executable, "-c", HUB_SCRIPT, repo, voice], cwd=REPO_ROOT, env=full_env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr
