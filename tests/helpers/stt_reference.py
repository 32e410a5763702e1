"""moshi's own speech-to-text loop, the reference the STT engine is checked against.

The loop of Kyutai's `scripts/stt_from_file_pytorch.py` (delayed-streams-modeling), written here
for one clip at a time and temperature 0: moshi's loaders on a checkpoint folder, Mimi and LMGen in
streaming mode with one row, a silence prefix (`audio_silence_prefix_seconds`), the clip cut in
80 ms frames (the last one padded with silence: Kyutai's script hands Mimi a short last chunk,
which its streaming encoder would hold back), then `ceil(audio_delay_seconds * 12.5)` silence
frames to flush the last words; per frame `mimi.encode` then `LMGen.step` (or
`step_with_extra_heads` when the model has voice-activity heads).

It imports nothing from `deployments/`: an engine bug cannot hide in shared code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

FRAME = 1920      # samples per 80 ms frame at 24 kHz
FRAME_RATE = 12.5


@dataclass
class Transcript:
    tokens: list[int]                                   # one text token per step, prefix and flush included
    pause_prs: list[list[float]] = field(default_factory=list)  # per step, per head: P(pause)
    prefix_frames: int = 0
    delay_frames: int = 0


def load(ckpt_dir: Path):
    """(mimi, lm, tokenizer, stt_config) by moshi's loaders, unchanged, on CPU in fp32."""
    from moshi.models.loaders import CheckpointInfo

    ckpt_dir = Path(ckpt_dir)
    config = json.loads((ckpt_dir / "config.json").read_text())
    info = CheckpointInfo.from_hf_repo(
        str(ckpt_dir), config_path=ckpt_dir / "config.json", moshi_weights=ckpt_dir / config["moshi_name"],
        mimi_weights=ckpt_dir / config["mimi_name"], tokenizer=ckpt_dir / config["tokenizer_name"],
        mimi_config_path=ckpt_dir / config["mimi_config_name"])
    mimi = info.get_mimi(device="cpu")
    lm = info.get_moshi(device="cpu", dtype=torch.float32)
    return mimi, lm, info.get_text_tokenizer(), info.stt_config


@torch.no_grad()
def transcribe(model, pcm: np.ndarray) -> Transcript:
    """Text tokens of `pcm` (float32, 24 kHz, mono) by moshi's streaming loop at temperature 0."""
    from moshi.models.lm import LMGen

    mimi, lm, _, stt_config = model
    prefix = math.ceil(stt_config.get("audio_silence_prefix_seconds", 0.0) * FRAME_RATE)
    delay = math.ceil(stt_config.get("audio_delay_seconds", 0.0) * FRAME_RATE)
    pcm = np.asarray(pcm, np.float32)
    pcm = np.pad(pcm, (0, -len(pcm) % FRAME))
    frames = [np.zeros(FRAME, np.float32)] * prefix + list(pcm.reshape(-1, FRAME)) + [np.zeros(FRAME, np.float32)] * delay
    lm_gen = LMGen(lm, use_sampling=False, temp=0.0, temp_text=0.0)
    out = Transcript(tokens=[], prefix_frames=prefix, delay_frames=delay)
    with mimi.streaming(1), lm_gen.streaming(1):
        for frame in frames:
            codes = mimi.encode(torch.from_numpy(frame)[None, None])
            if len(lm.extra_heads):
                tokens, heads = lm_gen.step_with_extra_heads(codes)
                out.pause_prs.append([float(h[0, 0, 0]) for h in heads])
            else:
                tokens = lm_gen.step(codes)
            out.tokens.append(int(tokens[0, 0, 0]))
    return out


def words_by_kyutai_rule(tokens: list[int], delay_tokens: int, tokenizer) -> list[tuple[str, float, float | None]]:
    """(text, start_s, stop_s) of each word, by the rule Kyutai's Rust server applies to a row's
    text tokens (step k counted from 1): from step `delay_tokens` on, a boundary (0) or pad (3)
    token closes the word whose pieces came since the last close (starting at the last boundary's
    time); a boundary at step k stamps time (k - delay_tokens) / 12.5, which ends the word closed
    last if it has no end yet. Words that never see a later boundary have stop None."""
    words: list[list] = []
    pieces: list[int] = []
    last_stop, unended = 0.0, False
    for k, token in enumerate(tokens, start=1):
        if k < delay_tokens:
            continue
        if token in (0, 3):
            if pieces:
                words.append([tokenizer.decode(pieces), last_stop, None])
                pieces, unended = [], True
        else:
            pieces.append(token)
        if token == 0:
            stop = (k - delay_tokens) / FRAME_RATE
            if unended:
                words[-1][2] = stop
                unended = False
            last_stop = stop
    return [tuple(w) for w in words]
