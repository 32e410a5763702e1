"""Application settings: the `args` of the Serve application (serve_config.yaml, configs/*.yaml),
overridden by the old service's environment variables (or a `.env` file)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from deployments.settings import EngineSettings

from .protocols.openai import default_openai_voices

# Old service's variable -> setting. Environment beats .env beats the config file's args.
ENV_OVERRIDES = {"HF_REPO": "model_repo", "VOICE_REPO": "voice_repo", "MODEL_PATH": "model_path",
                 "TTS_OUTPUTS_DIR": "outputs_dir"}


class AppSettings(EngineSettings):
    """Everything the application needs; the engine part goes to every TTSWorker replica."""

    outputs_dir: str = "outputs"
    # Saved files (save: true, MCP downloads) are deleted after this many seconds; None keeps them.
    outputs_max_age_s: float | None = Field(24 * 3600.0, gt=0)
    # ...and the oldest are deleted after each save to keep them under this many bytes in all
    # (a file larger than that alone is refused with 507); None: no cap.
    outputs_max_bytes: int | None = Field(2_000_000_000, ge=1)
    # Host headers accepted by the MCP endpoint (DNS-rebinding protection); "*" disables the check.
    allowed_hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1:*", "localhost:*", "[::1]:*"])
    # The same Host check on every route but /health and /ready (421 otherwise): for a service
    # that browsers reach on a workstation or a LAN (serve_app/security/cross_site.py). Off: REST clients
    # of a cluster need no configuration.
    check_host_everywhere: bool = False
    allowed_origins: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:*", "http://localhost:*"])
    # OpenAI voice name -> voice id (serve_app/protocols/openai.py has the defaults; entries given
    # here replace them name by name).
    openai_voices: dict[str, str] = Field(default_factory=default_openai_voices)
    # API keys for /v1/* (Authorization: Bearer) and the /api/tts_streaming WebSocket
    # (kyutai-api-key header or auth_id query). Empty: those endpoints are open.
    api_keys: list[str] = Field(default_factory=list)
    # Kyutai WebSocket sessions one ingress replica holds at once (an Error beyond), and how long
    # a session may go without a message that carries something (empty Text does not count).
    max_websocket_sessions: int = Field(256, ge=1)
    websocket_idle_timeout_s: float = Field(60.0, gt=0)
    # Seconds the ingress waits for a worker (including a cold start from zero replicas).
    worker_timeout_s: float = Field(600.0, gt=0)

    def model_name(self) -> str:
        """The model as clients see it: the hub repo, or `local/<folder name>`, never a local path."""
        return f"local/{Path(self.model_path).name}" if self.model_path else self.model_repo

    def engine_settings(self) -> EngineSettings:
        return EngineSettings(**{name: getattr(self, name) for name in EngineSettings.model_fields})


def _keys_from(environ: dict) -> list[str]:
    """API keys from TTS_API_KEYS (comma-separated) and TTS_API_KEYS_FILE (one per line, `#`
    comments): secrets stay out of the Serve config, which the dashboard shows."""
    keys = [k.strip() for k in (environ.get("TTS_API_KEYS") or "").split(",")]
    if environ.get("TTS_API_KEYS_FILE"):
        lines = Path(environ["TTS_API_KEYS_FILE"]).expanduser().read_text().splitlines()
        keys += [line.strip() for line in lines if not line.strip().startswith("#")]
    return [k for k in keys if k]


def load_settings(args: dict | None, environ: dict | None = None, dotenv_path: str | None = ".env") -> AppSettings:
    """Settings from the config's args, with environment / .env overrides; paths made absolute
    (replicas do not share the driver's working directory)."""
    values = dict(args or {})
    environ = dict(os.environ if environ is None else environ)
    if dotenv_path and Path(dotenv_path).is_file():
        from dotenv import dotenv_values

        environ = {**{k: v for k, v in dotenv_values(dotenv_path).items() if v is not None}, **environ}
    for variable, setting in ENV_OVERRIDES.items():
        if environ.get(variable):
            values[setting] = environ[variable]
            if setting == "model_repo":
                values.pop("model_path", None)  # HF_REPO asks for a hub model explicitly
                values.pop("build_test_checkpoint", None)
    values["api_keys"] = list(values.get("api_keys") or []) + _keys_from(environ)
    settings = AppSettings(**values)
    for name in ("model_path", "outputs_dir"):
        value = getattr(settings, name)
        if value:
            setattr(settings, name, str(Path(value).expanduser().resolve()))
    settings.voice_dirs = [str(Path(d).expanduser().resolve()) for d in settings.voice_dirs]
    return settings
