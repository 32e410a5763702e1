"""moshi's own voice-cloning generation, as the reference the cloning engine is checked against.

Standalone on purpose: it imports nothing of `deployments/`, so that a mistake shared by the engine
and its checks cannot hide. It loads a checkpoint folder with moshi's loader (`CheckpointInfo`
-> `TTSModel.from_checkpoint_info`, n_q = the model's own) and runs `TTSModel.simple_generate(text,
"file://clip.wav", cfg_coef=c)`, which encodes the clip with Mimi, teacher-forces it as the prompt,
runs real CFG when c != 1 and keeps the audio after the prompt. At temperature 0 every sample is
argmax, so the result is a function of (text, clip, cfg): what the engine must reproduce.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np


@lru_cache(maxsize=2)
def reference_model(ckpt_dir: str):
    """moshi's TTSModel of a local checkpoint folder, fp32 on CPU, temperature 0."""
    import torch
    from moshi.models.loaders import CheckpointInfo
    from moshi.models.tts import TTSModel

    folder = Path(ckpt_dir)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    info = CheckpointInfo.from_hf_repo(
        str(folder), config_path=config_path, moshi_weights=folder / config["moshi_name"],
        mimi_weights=folder / config["mimi_name"], tokenizer=folder / config["tokenizer_name"],
        mimi_config_path=folder / config["mimi_config_name"])
    return TTSModel.from_checkpoint_info(info, n_q=config["n_q"], temp=0.0, device="cpu", dtype=torch.float32)


def reference_speech(ckpt_dir: str | Path, texts: list[str], clips: list[str | Path], cfg_coef: float) -> list[np.ndarray]:
    """moshi's audio for each (text, clip) pair, generated as one batch (float32, 24 kHz)."""
    import torch

    tts = reference_model(str(ckpt_dir))
    with torch.no_grad():
        pcms = tts.simple_generate(list(texts), [f"file://{Path(c)}" for c in clips], cfg_coef=cfg_coef,
                                   show_progress=False)
    return [pcm.numpy() for pcm in pcms]


def prompt_frames(ckpt_dir: str | Path, clip: str | Path) -> int:
    """P: the frames of a clip's prompt as moshi cuts it (`TTSModel.get_prefix`)."""
    return int(reference_model(str(ckpt_dir)).get_prefix(Path(clip)).shape[-1])
