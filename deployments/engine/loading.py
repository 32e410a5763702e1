"""Loading a TTS model through moshi's own loaders, from a hub repo or a local checkpoint folder."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .hub import HubFetcher, ModelUnavailableError, describe_hub_error, public_hub_error
from ..settings import EngineSettings

log = logging.getLogger(__name__)

# Files a local checkpoint's config.json names, with moshi's key for each.
_LOCAL_FILE_KEYS = {
    "moshi_weights": "moshi_name",
    "mimi_weights": "mimi_name",
    "tokenizer": "tokenizer_name",
    "mimi_config_path": "mimi_config_name",
}


def pick_device(requested: str = "auto") -> str:
    """`auto` -> CUDA when torch sees a GPU, else CPU (with a warning, and CPU-friendly moshi flags)."""
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        log.warning("No CUDA device visible to torch: the TTS model runs on CPU (fp32), "
                    "which is far slower than real time for the real model.")
        requested = "cpu"
    if requested == "cpu":
        # torch.compile and CUDA graphs only cost time on CPU (measured: 33 s -> 1.6 s to first audio).
        os.environ.setdefault("NO_TORCH_COMPILE", "1")
        os.environ.setdefault("NO_CUDA_GRAPH", "1")
    return requested


def dtype_for(device: str):
    import torch

    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def local_checkpoint_info(ckpt_dir: str | Path):
    """moshi CheckpointInfo for a local folder laid out like a hub repo (config.json + its files)."""
    from moshi.models.loaders import CheckpointInfo

    ckpt_dir = Path(ckpt_dir).expanduser()
    config_path = ckpt_dir / "config.json"
    if not config_path.is_file():
        raise ModelUnavailableError(
            "the model folder set by `model_path` has no config.json: the operator must put a checkpoint "
            "there (details in the worker's log); retry once it is there",
            detail=f"no config.json in model_path '{ckpt_dir}': build a test checkpoint with "
                   f"`python -m deployments.checkpoint --size tiny {ckpt_dir}`, or copy a downloaded model there.")
    config = json.loads(config_path.read_text())
    files = {}
    for argument, key in _LOCAL_FILE_KEYS.items():
        if key in config:
            path = ckpt_dir / config[key]
            if not path.is_file():
                raise ModelUnavailableError(
                    f"the model folder set by `model_path` lacks a file its config.json names ({key}): the "
                    f"operator must complete the checkpoint (details in the worker's log)",
                    detail=f"model_path '{ckpt_dir}' lacks {config[key]} (named by config.json's {key})")
            files[argument] = path
    return CheckpointInfo.from_hf_repo(str(ckpt_dir), config_path=config_path, **files)


def ensure_test_checkpoint(settings: EngineSettings) -> None:
    """Builds the random-weight test checkpoint on first use, when the settings ask for one."""
    if settings.build_test_checkpoint and settings.model_path:
        from ..checkpoint import build_checkpoint

        build_checkpoint(Path(settings.model_path).expanduser(), size=settings.build_test_checkpoint)


def checkpoint_info(settings: EngineSettings):
    """Where the model's files are; downloads them from the hub when no local path is given."""
    if settings.model_path:
        ensure_test_checkpoint(settings)
        return local_checkpoint_info(settings.model_path)
    return hub_checkpoint_info(settings.model_repo, settings.hub_timeout_s, settings.hub_stall_s)


def hub_checkpoint_info(repo: str, timeout_s: float, stall_s: float = 60.0):
    """Fetches config.json and the files it names ourselves (failing fast when the hub is
    unreachable, failing when a download stalls, with progress in the status: see HubFetcher),
    then lets moshi parse them exactly as `from_hf_repo(repo)` would. Left to moshi, a failed
    config.json download is taken for a legacy Moshi repo."""
    from moshi.models.loaders import CheckpointInfo

    config_path, _, files = fetch_hub_checkpoint(HubFetcher(repo, timeout_s, stall_s))
    try:
        return CheckpointInfo.from_hf_repo(repo, config_path=config_path, **files)
    except Exception as exc:  # a file moshi fetches itself (`hf://...` names)
        raise ModelUnavailableError(public_hub_error(repo), describe_hub_error(repo, exc)) from exc


def fetch_hub_checkpoint(fetcher: HubFetcher) -> tuple[Path, dict, dict[str, Path]]:
    """config.json of the fetcher's repo, parsed, and the files it names (moshi's argument ->
    path), fetched as one download (one progress). No torch: `make serve`'s prefetch calls it."""
    repo = fetcher.repo
    config_path = fetcher.fetch("config.json")
    try:
        config = json.loads(config_path.read_text())
    except ValueError as exc:
        raise ModelUnavailableError(f"config.json of '{repo}' is not valid JSON: the operator must check "
                                    f"the model setting (details in the worker's log)",
                                    detail=f"config.json of '{repo}' is not valid JSON ({exc})") from exc
    named = {argument: config[key] for argument, key in _LOCAL_FILE_KEYS.items()
             if isinstance(config.get(key), str) and "://" not in config[key]}
    fetched = fetcher.fetch_all(list(dict.fromkeys(named.values())))
    return config_path, config, {argument: fetched[name] for argument, name in named.items()}


def voice_file_suffix(config: dict) -> str:
    """What moshi appends to a voice name for this checkpoint (config.json): a model conditioned on
    speaker embeddings reads `<voice>.<sig>@<epoch>.safetensors` (TTSModel.voice_suffix), any other
    reads the voice file itself. Read from the config, so that no model is loaded to know it."""
    model_id = config.get("model_id") or {}
    if "speaker_wavs" not in (config.get("conditioners") or {}) or "sig" not in model_id:
        return ""
    return f".{model_id['sig']}@{model_id['epoch']}.safetensors"


def local_voice_dirs(settings: EngineSettings) -> list[Path]:
    """Configured voice folders, plus `voices/` inside a local checkpoint folder."""
    dirs = [Path(d).expanduser() for d in settings.voice_dirs]
    if settings.model_path:
        dirs.append(Path(settings.model_path).expanduser() / "voices")
    return dirs


def voice_repo(settings: EngineSettings) -> str | None:
    """The hub voice repo, used with hub models only: a local model folder brings its voices
    (in `voices/`, plus `voice_dirs`), and a local setup must never wait on the hub."""
    return None if settings.model_path else settings.voice_repo


def load_tts_model(settings: EngineSettings, device: str, fixed_n_q: bool = False):
    """moshi's TTSModel. `fixed_n_q`: the model runs with all its codebooks and no other count
    (the cloning model: its prompts hold every codebook), whatever `n_q` the settings say."""
    from moshi.models.tts import TTSModel

    info = checkpoint_info(settings)
    n_q = settings.n_q
    model_n_q = info.lm_config.get("n_q") if info.lm_config else None
    if fixed_n_q and model_n_q and n_q != model_n_q:
        log.info("n_q %d does not fit this model, which generates exactly %d codebooks: using %d",
                 n_q, model_n_q, model_n_q)
        n_q = model_n_q
    return TTSModel.from_checkpoint_info(
        info, n_q=n_q, temp=settings.temp, device=device, dtype=dtype_for(device),
        voice_repo=settings.voice_repo or "")
