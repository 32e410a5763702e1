"""Application settings: the `args` of the Serve application (serve_config.yaml, configs/*.yaml),
overridden by the old service's environment variables (or a `.env` file)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, ValidationError, field_validator, model_validator

from deployments.protocol import DEFAULT_MODEL_NAME, MODEL_NAME
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
    # Body limits besides the JSON one (serve_app/security/body_limit.py): a voice clip upload
    # (multipart POST /api/voices), and /mcp, whose tool calls may carry such a clip as base64
    # (4/3 of its size) inside JSON.
    max_voice_clip_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    mcp_max_body_bytes: int = Field(14 * 1024 * 1024, ge=64 * 1024)
    # Voice clips (serve_app/audio/clips.py): the sound a clip must hold (its quiet start and end not
    # counted), the most audio decoded from one (decoding stops there), the part kept as the model's
    # prompt, what counts as silence, and a cap on the time spent decoding one clip.
    voice_clip_min_s: float = Field(3.0, gt=0)
    voice_clip_max_s: float = Field(30.0, gt=0, le=600)
    voice_prompt_s: float = Field(10.0, gt=0)
    voice_clip_silence_dbfs: float = Field(-50.0, lt=0)
    voice_clip_decode_timeout_s: float = Field(5.0, gt=0)
    # Uploaded voices (serve_app/service/voice_store.py): where they are kept (on the ingress's
    # node; durable across restarts), at most this many per API key, at most this many bytes of
    # clips in all. Uploads need API keys (each key owns its voices) unless anonymous uploads are
    # allowed explicitly (every client then shares one owner: logged loudly at start).
    voice_store_dir: str = "voices-store"
    voice_store_max_voices_per_key: int = Field(20, ge=1)
    voice_store_max_bytes: int = Field(1_000_000_000, ge=1)
    allow_anonymous_uploads: bool = False
    # Kyutai WebSocket sessions one ingress replica holds at once (an Error beyond), and how long
    # a session may go without a message that carries something (empty Text does not count).
    max_websocket_sessions: int = Field(256, ge=1)
    websocket_idle_timeout_s: float = Field(60.0, gt=0)
    # Kyutai's ASR WebSocket (/api/asr-streaming; its sessions count in max_websocket_sessions):
    # when every row of every warm replica is busy, how long a new stream waits for one before
    # `Error "no free channels"` (a cold start is waited for: worker_timeout_s); a session ends
    # after this long without a message, and after max_session_s of audio or of wall time; one
    # Audio message holds at most this many samples (10 s; Kyutai's clients send 80 ms to 1 s).
    asr_free_row_wait_s: float = Field(1.0, ge=0)
    asr_idle_timeout_s: float = Field(20.0, gt=0)
    asr_max_session_s: float = Field(3600.0, gt=0)
    asr_max_samples_per_message: int = Field(240_000, ge=1_920)
    # Files to transcribe (POST /v1/audio/transcriptions, MCP speech_to_text): the upload's body
    # limit (OpenAI's own: 25 MiB), the most audio decoded from one (decoding stops there: a small
    # file that decodes to hours is refused after this much work; 30 min is 173 MB of 24 kHz
    # float32 held by the ingress and sent to a worker per request) and a cap on decoding time.
    max_transcription_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    transcription_max_s: float = Field(1800.0, gt=0)
    transcription_decode_timeout_s: float = Field(30.0, gt=0)
    # Seconds the ingress waits for a worker (including a cold start from zero replicas).
    worker_timeout_s: float = Field(600.0, gt=0)
    # Several models in one app, each with a worker deployment of its own: short name -> the engine
    # settings in which it differs from the ones above (model_repo or model_path, n_q, voices...).
    # Empty: one model, the settings above, named "default". Deployment options (GPUs, replicas)
    # go in the config's `deployments` list under the model's deployment name (deployments/protocol.py).
    models: dict[str, dict] = Field(default_factory=dict)
    # The model a request gets when it names none (or a name this app does not have, as OpenAI's
    # `tts-1`); None: the first of `models`.
    default_model: str | None = None

    @field_validator("models")
    @classmethod
    def _model_names(cls, models: dict) -> dict:
        for name in models:
            if not MODEL_NAME.fullmatch(name):
                raise ValueError(f"model name {name!r}: use 1 to 32 lowercase letters, digits, '_' or '-'")
        return models

    @model_validator(mode="after")
    def _clip_bounds(self):
        if not self.voice_clip_min_s <= self.voice_clip_max_s:
            raise ValueError("voice_clip_min_s must not exceed voice_clip_max_s")
        if self.mcp_max_body_bytes < self.max_voice_clip_bytes * 4 // 3:
            raise ValueError("mcp_max_body_bytes must hold a clip of max_voice_clip_bytes as base64 (4/3 of it)")
        return self

    @model_validator(mode="after")
    def _table_is_whole(self):
        if self.default_model is not None and self.default_model not in self.model_names():
            raise ValueError(f"default_model {self.default_model!r} is not one of models "
                             f"({', '.join(self.model_names())})")
        self.model_table()  # every entry must be valid engine settings: said at start, by name
        return self

    def model_names(self) -> list[str]:
        return list(self.models) or [DEFAULT_MODEL_NAME]

    @property
    def default_model_name(self) -> str:
        return self.default_model or self.model_names()[0]

    def model_table(self) -> dict[str, EngineSettings]:
        """Each model's engine settings: the ones above, overridden by its entry."""
        base = {name: getattr(self, name) for name in EngineSettings.model_fields}
        if not self.models:
            return {DEFAULT_MODEL_NAME: EngineSettings(**base)}
        table = {}
        for name, entry in self.models.items():
            try:
                table[name] = EngineSettings(**{**base, **entry})
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                raise ValueError(f"model {name!r}: {problems}") from None
        return table

    def model_name(self, name: str | None = None) -> str:
        """A model as clients see it: the hub repo, or `local/<folder name>`, never a local path
        (`name`: an entry of the table; None: the default model)."""
        engine = self.model_table()[name or self.default_model_name]
        return f"local/{Path(engine.model_path).name}" if engine.model_path else engine.model_repo

    def engine_settings(self, name: str | None = None) -> EngineSettings:
        """The engine settings of a model of the table (None: the default model)."""
        return self.model_table()[name or self.default_model_name]


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
    for name in ("model_path", "outputs_dir", "voice_store_dir"):
        value = getattr(settings, name)
        if value:
            setattr(settings, name, str(Path(value).expanduser().resolve()))
    settings.voice_dirs = [str(Path(d).expanduser().resolve()) for d in settings.voice_dirs]
    for entry in settings.models.values():
        if entry.get("model_path"):
            entry["model_path"] = str(Path(entry["model_path"]).expanduser().resolve())
        if entry.get("voice_dirs"):
            entry["voice_dirs"] = [str(Path(d).expanduser().resolve()) for d in EngineSettings._split_dirs(entry["voice_dirs"])]
    return settings
