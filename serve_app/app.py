"""The Serve application: `import_path: serve_app.app:build_app` in serve_config.yaml.

`build_app(args)` receives the config's `args` (overridden by HF_REPO, VOICE_REPO, ... from the
environment or `.env`) and binds a worker deployment per model of the app's model table (one
replica per GPU each; the default model's is `TTSWorker`, see deployments/protocol.py) behind the
Ingress.
"""

from __future__ import annotations

from deployments.engine.loading import ensure_test_checkpoint
from deployments.engine.models import ModelKind, model_kind
from deployments.protocol import worker_deployment
from deployments.serve.worker import TTSWorker

from .ingress import Ingress
from .settings import load_settings


def build_app(args: dict | None = None):
    settings = load_settings(args)
    workers = {}
    for model, engine in settings.model_table().items():
        _check_servable(model, engine)
        ensure_test_checkpoint(engine)  # demo/test configs: ready before the first replica starts
        deployment = worker_deployment(model, settings.default_model_name)
        workers[model] = TTSWorker.options(name=deployment).bind(engine.model_dump(), model)
    return Ingress.bind(workers, settings.model_dump())


def _check_servable(model: str, engine) -> None:
    """A model of the table this release has no engine for is refused at start, by name: both
    TTS kinds are served (the 1.6B and the cloning 0.75B), speech to text not yet."""
    kind = model_kind(engine)
    if kind is ModelKind.STT:
        raise ValueError(f"model {model!r}: {engine.model_path or engine.model_repo} is a {kind.value} model, "
                         f"which this release cannot serve yet")
