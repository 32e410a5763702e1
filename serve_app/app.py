"""The Serve application: `import_path: serve_app.app:build_app` in serve_config.yaml.

`build_app(args)` receives the config's `args` (overridden by HF_REPO, VOICE_REPO, ... from the
environment or `.env`) and binds a worker deployment per model of the app's model table (one
replica per GPU each; the default model's is `TTSWorker`, see deployments/protocol.py) behind the
Ingress. Models of every kind may share an app: text to speech (either kind) and speech to text
(its worker serves `transcribe_stream`, Kyutai's ASR socket its clients).
"""

from __future__ import annotations

from deployments.engine.loading import ensure_test_checkpoint
from deployments.protocol import worker_deployment
from deployments.serve.worker import TTSWorker

from .ingress import Ingress
from .settings import load_settings


def build_app(args: dict | None = None):
    settings = load_settings(args)
    workers = {}
    for model, engine in settings.model_table().items():
        ensure_test_checkpoint(engine)  # demo/test configs: ready before the first replica starts
        deployment = worker_deployment(model, settings.default_model_name)
        workers[model] = TTSWorker.options(name=deployment).bind(engine.model_dump(), model)
    return Ingress.bind(workers, settings.model_dump())

