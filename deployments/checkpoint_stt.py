"""The speech-to-text flavour of the test checkpoints (`--size tiny-stt | tiny-stt-novad | full-stt`).

Kyutai's STT models (`kyutai/stt-1b-en_fr`, `kyutai/stt-2.6b-en`) are the TTS transformer without
the depformer: `dep_q = 0`, every one of the `n_q` Mimi codebooks is an input, one text token comes
out per 80 ms frame, all streams without delay (`delays = [0] * (n_q + 1)`), no conditioners and no
cross-attention. `model_type: "stt"` and `stt_config` tell moshi (and our loader) what it is; the
`-candle` release of the 1B adds 4 voice-activity heads (`extra_heads_num_heads`, 6 logits each,
softmax index 0 = pause probability). `full-stt` is that architecture (the 1B, with heads).

Random weights give a text head that barely listens: argmax over random logits is dominated by the
rows of `text_linear` with the largest norm, so every clip would give the same one or two tokens.
`bias_text_head` makes the random model a useful test subject, in two documented ways:
- only pieces that spell something can win: the rows of reserved pieces, byte pieces and control
  tokens other than 0 (word boundary) and 3 (pad) are zeroed (their logit is 0, below the winners);
- the boundary token 0 and the pad token 3 are scaled so that they win about as often as a
  word piece does, so that a clip of a few seconds holds several words.
`tests/engine/test_checkpoint.py` checks the outcome: each test clip gives at least 10 text tokens
and 3 words at temperature 0, and different clips give different tokens.

`STT_CLIPS` are the test clips (speech-like signals, distinct), written to `clips/` in the folder.
"""

from __future__ import annotations

import copy
import typing as tp

import torch

STT_MODEL_SIG = "b3f8c1d2"
STT_MODEL_EPOCH = 1
STT_DELAY_S = 0.5            # stt-1b-en_fr: text lags the audio by 0.5 s (6 steps by Kyutai's rule)
STT_SILENCE_PREFIX_S = 0.0   # stt-1b-en_fr takes no silence before the audio (the 2.6B: 1 s)
VAD_HEADS = 4                # the -candle release's heads: pause in 0.5 / 1 / 2 / 3 s
VAD_HEAD_DIM = 6

# Test clips: (name, seconds, syllables per second, base pitch in Hz). Amplitude-modulated harmonic
# tones with noise bursts: speech-like rhythm, different pitch and rate per clip.
STT_CLIPS = (
    ("clips/slow_low.wav", 2.4, 3.0, 110.0),
    ("clips/fast_high.wav", 2.0, 6.0, 330.0),
    ("clips/mid.wav", 2.8, 4.5, 196.0),
)

# What differs from the TTS preset an STT size starts from (`PRESETS` in checkpoint.py).
STT_LM = {"tiny": {"context": 100}, "full": {"n_q": 32, "dim": 2048, "num_heads": 16, "num_layers": 16,
                                              "context": 750}}


def stt_presets(presets: dict) -> dict[str, dict]:
    """The STT sizes, made from the TTS presets: `tiny-stt` (with voice-activity heads, as the
    production default), `tiny-stt-novad` (without), `full-stt` (stt-1b-en_fr-candle's shape)."""
    out = {}
    for name, base, vad in (("tiny-stt", "tiny", True), ("tiny-stt-novad", "tiny", False),
                            ("full-stt", "full", True)):
        preset = copy.deepcopy(presets[base])
        preset["lm"].update(STT_LM[base])
        preset["stt"] = {"vad": vad}
        out[name] = preset
    return out


def make_stt_config(config: dict[str, tp.Any], vad: bool) -> dict[str, tp.Any]:
    """config.json of an STT model, from the TTS config of the same preset (same key structure as
    Kyutai's STT release: the depformer keys go, `model_type` and `stt_config` come)."""
    config = {k: v for k, v in config.items() if not k.startswith("depformer") and k not in
              ("conditioners", "fuser", "tts_config", "demux_second_stream")}
    n_q = config["n_q"]
    config.update({
        "dep_q": 0,
        "delays": [0] * (n_q + 1),
        "cross_attention": False,
        "text_card_out": None,
        "max_period": 100000,
        "model_type": "stt",
        "stt_config": {"audio_delay_seconds": STT_DELAY_S, "audio_silence_prefix_seconds": STT_SILENCE_PREFIX_S},
        "lm_gen_config": {"temp": 0.0, "temp_text": 0.0},
    })
    if vad:
        config.update({"extra_heads_num_heads": VAD_HEADS, "extra_heads_dim": VAD_HEAD_DIM})
    config["model_id"] = {**config["model_id"], "sig": STT_MODEL_SIG, "epoch": STT_MODEL_EPOCH}
    return config


def bias_text_head(state: dict[str, torch.Tensor], spelled: list[bool], boundary_scale: float,
                   pad_scale: float) -> None:
    """Zeroes the text head's rows of pieces that spell nothing (`spelled[i]` False, except tokens
    0 and 3) and scales the boundary and pad rows (module docstring). In place."""
    weight = state["text_linear.weight"]
    keep = torch.tensor(spelled, dtype=torch.bool)
    keep[0] = keep[3] = True
    weight[~keep] = 0
    weight[0] *= boundary_scale
    weight[3] *= pad_scale


def clip_samples(seconds: float, rate_hz: float, pitch_hz: float, seed: int) -> torch.Tensor:
    """A speech-like float32 clip at 24 kHz (a whole number of 80 ms frames)."""
    generator = torch.Generator().manual_seed(seed)
    n = int(round(seconds * 12.5)) * 1920
    t = torch.arange(n, dtype=torch.float64) / 24_000
    voiced = sum(torch.sin(2 * torch.pi * pitch_hz * k * t) / k for k in (1, 2, 3, 4))
    envelope = torch.sin(torch.pi * rate_hz * t).abs() ** 2
    noise = torch.randn(n, generator=generator, dtype=torch.float64)
    bursts = (torch.sin(2 * torch.pi * rate_hz * 0.5 * t + 1.0) > 0.7).double()
    wave = envelope * voiced + 0.4 * bursts * noise
    return (0.3 * wave / wave.abs().max()).float()
