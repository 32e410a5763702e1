"""Settings of the TTS engine: which model, which voices, generation defaults and limits."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

DEFAULT_MODEL_REPO = "kyutai/tts-1.6b-en_fr"
DEFAULT_VOICE_REPO = "kyutai/tts-voices"
DEFAULT_VOICE = "unmute-prod-website/default_voice.wav"


class EngineSettings(BaseModel):
    """What to load and how to generate. Given as the application's `args` (see configs/)."""

    model_config = {"extra": "forbid"}

    # Either a Hugging Face repo id, or a local checkpoint directory (config.json + files it names).
    model_repo: str = DEFAULT_MODEL_REPO
    model_path: str | None = None
    # a size of deployments.checkpoint (tiny, tiny-clone, tiny-stt, ...): build a random-weight test checkpoint at model_path when it is missing
    # (demo and tests; see deployments/checkpoint.py). Never set in production.
    build_test_checkpoint: str | None = None
    # Voices: names in `voice_repo` and/or files under `voice_dirs`. With a local model_path
    # whose folder holds `voices/`, that folder is used and the repo is not consulted.
    voice_repo: str | None = DEFAULT_VOICE_REPO
    voice_dirs: list[str] = Field(default_factory=list)
    default_voice: str = DEFAULT_VOICE

    device: str = "auto"  # "auto" | "cuda" | "cuda:N" | "cpu"
    # torch threads when running on CPU (None: torch's default). Small models on few cores run
    # far faster on one thread (measured: 2.5 s -> 0.26 s for a short sentence, tiny model).
    cpu_threads: int | None = Field(None, ge=1)
    # torch.compile of moshi's small fused functions: ~20% faster ticks on a GPU, but ~17 s more
    # at a new replica's first request (measured on an H100, see TTSEngine._compile_setting).
    torch_compile: bool = False
    # Codebooks generated per frame: Kyutai's own server uses 24 of the 32 (quality vs speed).
    n_q: int = Field(24, ge=1, le=32)
    temp: float = Field(0.6, ge=0.0, le=2.0)
    default_cfg_coef: float = 2.0
    # The cloning model: voice prompts kept ready to copy into a row (the model's state after
    # hearing the clip, for the voice and for its null CFG twin: ~25 MB per 10 s of clip for the
    # real model in bf16), least recently used out first. Dropped when the model is offloaded.
    prompt_cache_mb: float = Field(512.0, gt=0)
    # The cloning model: a NEW voice's prompt (P steps, 123 for a 10 s clip) runs in its row at
    # this many steps per tick, beside the rows that speak (each still gets its one step per
    # tick); the newcomer starts speaking once its prompt is done, ceil(P / this) ticks later.
    # These steps skip the depformer, so with 4 a tick in which a voice fills costs about what a
    # tick in which a newcomer catches up costs (1 full step + 2 or 3 text-only ones).
    prompt_steps_per_tick: int = Field(4, ge=1, le=1000)
    # Forced pause (in steps) between words: 1 makes the model articulate better.
    padding_between: int = Field(1, ge=0, le=10)

    max_text_chars: int = Field(20_000, ge=1)
    # The audio one request may ask for, words and <break> pauses together (a lower bound is
    # checked when it is prepared): a few characters of breaks could otherwise hold a slot for hours.
    max_audio_s: float = Field(1800.0, gt=0)
    # No longer used: a text of any length speaks in one slot (the model's attention is a ring
    # cache). Accepted so that older configs still deploy.
    chunk_max_chars: int | None = Field(None, ge=20)
    # A replica whose generation thread has made no progress for this long while rows speak or
    # requests wait fails its health check, and Serve replaces it (a tick takes ~33 ms on an H100).
    generation_stall_s: float = Field(120.0, gt=0)
    # Tests only: stage a hung generation thread (deployments/engine/faults.py). Never set in production.
    test_faults: bool = False
    # Tests only: a scripted fake engine instead of the model (deployments/engine/fakes.py); /api/info
    # and the page say so. Never set in production.
    test_engine: Literal["fake-tts", "fake-stt"] | None = None
    # Seconds to wait for the hub before failing a model or voice download.
    hub_timeout_s: float = Field(20.0, gt=0)
    # A model or voice download that puts no byte on disk for this long fails with an error saying
    # so (the next request resumes it). huggingface_hub alone gives up on a silent connection after
    # ~66 s (6 reads of HF_HUB_DOWNLOAD_TIMEOUT, 10 s) but never on one that trickles.
    hub_stall_s: float = Field(60.0, gt=0)
    # A request that finds the model being downloaded (a first start: the real model is 3.7 GB)
    # waits this long for it, then is refused with the download's progress (503 + Retry-After at
    # the ingress) instead of waiting as long as the download.
    first_download_wait_s: float = Field(30.0, gt=0)
    # Pacing of streamed responses (deployments/engine/pacing.py): a row makes at most this many
    # seconds of audio ahead of its real-time playback, then follows the clock (frozen rows cost
    # no step); a stream whose wall time exceeds its audio + the lead + stream_grace_s is ended.
    # What one stream can hold in the worker, the ingress and Serve's proxy is bounded by the lead.
    stream_lead_s: float = Field(20.0, gt=0)
    stream_grace_s: float = Field(10.0, ge=0)
    # `max_batch_size: auto` (deployments/engine/sizing.py): after the warm-up the slot count is the
    # largest of `slot_candidates` whose p95 tick (all rows speaking, `sizing_ticks` timed) stays
    # within `realtime_margin` x 80 ms and whose GPU memory (this process's, torch's reserved)
    # fits `slot_memory_budget_gib` (None: the whole GPU; no bound on CPU). Cached per GPU type,
    # checkpoint and these settings in `slot_sizing_cache_dir` (None: never cached). The worker's
    # `max_ongoing_requests` must be the largest candidate (the configs keep them equal).
    slot_candidates: list[int] = Field(default_factory=lambda: [8, 16, 32, 64, 128, 256], min_length=1)
    realtime_margin: float = Field(0.6, gt=0, le=1)
    slot_memory_budget_gib: float | None = Field(None, gt=0)
    slot_sizing_cache_dir: str | None = "~/.cache/kyutai-tts/slot-sizing"
    sizing_ticks: int = Field(20, ge=1)

    @field_validator("slot_candidates")
    @classmethod
    def _positive_counts(cls, value):
        if min(value) < 1:
            raise ValueError("slot_candidates: slot counts of 1 or more")
        return sorted(set(value))

    @field_validator("voice_dirs", mode="before")
    @classmethod
    def _split_dirs(cls, value):
        if isinstance(value, str):
            return [part for part in value.split(",") if part.strip()]
        return value
