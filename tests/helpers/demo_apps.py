"""The demo config's application cut down to what most cluster tests run: the 1.6B-style tiny model
alone (the demo's cloning model is named by the tests that want it), its workers on a whole logical
GPU each (the demo's half GPUs are for its two models sharing one), the test checkpoint and outputs
given, and limits that keep a test's texts short."""

from __future__ import annotations

import copy


def one_model_app(demo_app: dict, checkpoint: str, outputs: str) -> dict:
    app = copy.deepcopy(demo_app)
    app["args"].pop("models", None)
    app["args"].pop("build_test_checkpoint", None)
    app["deployments"] = [d for d in app["deployments"] if d["name"] in ("TTSWorker", "Ingress")]
    app["args"].update(model_path=checkpoint, outputs_dir=outputs, max_text_chars=2000, max_audio_s=300)
    for deployment in app["deployments"]:
        if deployment["name"] == "TTSWorker":
            deployment["ray_actor_options"].update(num_gpus=1, num_cpus=0.5)
    return app
