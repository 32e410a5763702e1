"""The Serve application: `import_path: serve_app.app:build_app` in serve_config.yaml.

`build_app(args)` receives the config's `args` (overridden by HF_REPO, VOICE_REPO, ... from the
environment or `.env`) and binds one TTSWorker deployment (one replica per GPU) behind the Ingress.
"""

from __future__ import annotations

from deployments.engine.loading import ensure_test_checkpoint
from deployments.serve.worker import TTSWorker

from .ingress import Ingress
from .settings import load_settings


def build_app(args: dict | None = None):
    settings = load_settings(args)
    ensure_test_checkpoint(settings)  # demo/test configs: ready before the first replica starts
    worker = TTSWorker.bind(settings.engine_settings().model_dump())
    return Ingress.bind(worker, settings.model_dump())
