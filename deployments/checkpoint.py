"""Builds a Kyutai DSM TTS checkpoint with RANDOM weights, for tests, demos and benchmarks.

    python -m deployments.checkpoint --size tiny|full|tiny-clone|full-clone|tiny-stt|tiny-stt-novad|full-stt
        [--seed N] OUT_DIR

The weights are random, so the model "speaks" noise: every file is in the release format
of `kyutai/tts-1.6b-en_fr` (+ `kyutai/tts-voices`), but nothing in it was trained. It exists
because no model hub can be reached from where this project is built and tested, and we still
want to exercise the exact code path of the real model: moshi's own
`CheckpointInfo.from_hf_repo` -> `TTSModel.from_checkpoint_info` -> `TTSModel.generate` ->
`MimiModel.decode`, unchanged, with the same tensor names, shapes (for `--size full`), dtypes,
conditioners, voice-embedding files and tokenizer conventions as the released model. Only the
numbers are made up. Because the DSM state machine forces the next word after
`max_padding` pad steps, even a random model finishes the text and returns a transcript.

Presets (see `PRESETS`):
  - `tiny`: a few hundred thousand parameters; builds in seconds and generates a short sentence
    on CPU in about a second. For the test suite and the offline demo.
  - `full`: the real architecture of `kyutai/tts-1.6b-en_fr` (~1.84B parameters, bf16, ~3.7 GB)
    with the real Mimi codec architecture (fp32). For GPU benchmarks: timings match the real model,
    audio does not. Building it on CPU takes a minute or two and ~8 GB of RAM.
  - `tiny-clone` / `full-clone`: the voice-cloning flavour, `kyutai/tts-0.75b-en-public` (16
    codebooks, no conditioners, no cross-attention, 5 text logits out): a voice is an audio clip the
    model continues. Its voices are short `.wav` clips (`CLIP_NAMES`, distinct tones and noise) in
    `voices/`, as `kyutai/tts-voices` holds the prompts this model takes; no voice suffix.
  - `tiny-stt` / `tiny-stt-novad` / `full-stt`: speech to text (`kyutai/stt-1b-en_fr`'s shape,
    with or without voice-activity heads), its text head biased so that random weights still
    transcribe test clips into varied words; test clips in `clips/` (deployments/checkpoint_stt.py).

Output layout (same file names for both sizes; `config.json` is written last):
    OUT_DIR/config.json                      LM kwargs + moshi's extra keys, as the real config
    OUT_DIR/dsm_tts_random.safetensors       LM weights (bf16; condition_provider in fp32)
    OUT_DIR/mimi_random.safetensors          Mimi codec weights (fp32)
    OUT_DIR/mimi_config.json                 Mimi architecture (keys of moshi's `_mimi_config`)
    OUT_DIR/tokenizer_spm_random_en_fr.model SentencePiece tokenizer, trained here on a tiny corpus
    OUT_DIR/voices/<dir>/<name>.wav.1e68beda@240.safetensors   voice embeddings, as kyutai/tts-voices
    OUT_DIR/voices/clips/<name>.wav                            (clone sizes) voice prompts instead

The random-weights marker lives in `config["model_id"]["test_model"]` (see `random_weights_marker`):
moshi forwards every unknown top-level key of `config.json` to `LMModel(**kwargs)`, which rejects
it, while `model_id` is set aside by `CheckpointInfo` (it only reads `sig` and `epoch`).

Same seed -> byte-identical files (weights, voices, tokenizer, configs).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import os
import re
import struct
import sys
import time
import typing as tp
from pathlib import Path

import sentencepiece
import torch
from safetensors.torch import save_file

from moshi.models import loaders
from moshi.models.compression import MimiModel
from moshi.models.loaders import CheckpointInfo
from moshi.quantization.core_vq import EuclideanCodebook

from deployments.checkpoint_stt import STT_CLIPS, bias_text_head, clip_samples, make_stt_config, stt_presets
from deployments.engine.random_weights import random_weights_marker

# Bump when the generator's output changes, so that existing checkpoints get rebuilt.
FORMAT_VERSION = 2

CONFIG_NAME = "config.json"
LM_WEIGHTS_NAME = "dsm_tts_random.safetensors"
MIMI_WEIGHTS_NAME = "mimi_random.safetensors"
MIMI_CONFIG_NAME = "mimi_config.json"
TOKENIZER_NAME = "tokenizer_spm_random_en_fr.model"
VOICES_DIR_NAME = "voices"

# Identity of the released model: voice files are named `<voice>.{sig}@{epoch}.safetensors`.
MODEL_SIG = "1e68beda"
MODEL_EPOCH = 240
VOICE_SUFFIX = f".{MODEL_SIG}@{MODEL_EPOCH}.safetensors"
# Voice names as in the `kyutai/tts-voices` repository (without VOICE_SUFFIX).
VOICE_NAMES = (
    "expresso/ex03-ex01_happy_001_channel1_334s.wav",
    "vctk/p225_023.wav",
    "unmute-prod-website/default_voice.wav",
    "cml-tts/fr/2154_2576_000020.wav",
)
SPEAKER_EMB_DIM = 512    # `speaker_wavs` conditioner input dim
SPEAKER_EMB_FRAMES = 125  # 10 s of voice sample at 12.5 Hz

# Size presets. `lm` and `mimi` hold what differs between sizes; everything else (conditioners,
# fuser, delays pattern, depformer schedule pattern, norms, gating, ...) follows the released
# model, see `make_lm_config` and `make_mimi_config`. `full` is the released architecture.
PRESETS: dict[str, dict[str, tp.Any]] = {
    "tiny": {
        "lm": {
            "card": 64,            # audio vocabulary = Mimi `bins`
            "n_q": 8,              # audio codebooks (n_q = dep_q)
            "dim": 64,
            "num_heads": 4,
            "num_layers": 2,
            "context": 100,
            "depformer_dim": 32,
            "depformer_num_heads": 4,
            "depformer_num_layers": 1,
            "depformer_dim_feedforward": 96,
            "depformer_low_rank_embeddings": 16,
        },
        # Overrides of moshi's default Mimi config (loaders._mimi_config).
        "mimi": {
            "seanet": {"dimension": 32, "n_filters": 4},
            "quantizer": {"dimension": 16},
            "transformer": {"num_heads": 2, "num_layers": 1, "dim_feedforward": 64},
        },
        "vocab_size": 500,
    },
    "full": {
        "lm": {
            "card": 2048,
            "n_q": 32,
            "dim": 2048,
            "num_heads": 16,
            "num_layers": 16,
            "context": 500,
            "depformer_dim": 1024,
            "depformer_num_heads": 16,
            "depformer_num_layers": 4,
            "depformer_dim_feedforward": 3072,
            "depformer_low_rank_embeddings": 128,
        },
        "mimi": {},  # the released Mimi architecture
        "vocab_size": 8000,
    },
}
# The cloning model (`kyutai/tts-0.75b-en-public`): what differs from the 1.6B preset it starts
# from. The real one: 16 codebooks (it cannot run with fewer or more), dim 1024, 24 layers.
CLONE_MODEL_SIG = "d6ef30c7"
CLONE_MODEL_EPOCH = 1000
CLONE_TEXT_CARD_OUT = 5  # its text head only predicts the state machine's control tokens
PRESETS["tiny-clone"] = {**PRESETS["tiny"], "clone": True}
PRESETS["full-clone"] = {**PRESETS["full"], "clone": True, "lm": {
    **PRESETS["full"]["lm"], "n_q": 16, "dim": 1024, "num_heads": 16, "num_layers": 24}}
# Voice prompts of the clone sizes: (name, seconds, base frequency in Hz or 0 for noise). Short,
# so that a test's prompt is a few steps (P = seconds * 12.5 - 2), and unlike each other, so that
# two voices give two different audios.
CLIP_NAMES = (
    ("clips/low_hum.wav", 1.0, 110.0),
    ("clips/bright_tone.wav", 0.8, 880.0),
    ("clips/noise.wav", 1.2, 0.0),
    ("clips/chirp.wav", 0.9, 330.0),
    ("clips/pulse.wav", 0.7, 220.0),
    ("clips/whistle.wav", 1.1, 1760.0),
    ("clips/buzz.wav", 0.6, 55.0),
    ("clips/hiss.wav", 1.3, -1.0),
)


PRESETS.update(stt_presets(PRESETS))
SIZES = tuple(PRESETS)
# How much the STT text head's boundary (0) and pad (3) rows are scaled (checkpoint_stt.py says why).
STT_BOUNDARY_SCALE = 2.5
STT_PAD_SCALE = 2.0


def is_clone_size(size: str) -> bool:
    return bool(PRESETS[size].get("clone"))


def is_stt_size(size: str) -> bool:
    return "stt" in PRESETS[size]

# Floating point weights are stored in this dtype, except the condition provider / fuser,
# which the released checkpoint (and moshi's loader) keep in fp32.
LM_WEIGHTS_DTYPE = torch.bfloat16
MIMI_WEIGHTS_DTYPE = torch.float32

# Small English + French corpus for the tokenizer. Pieces beyond what it supports are filled
# with never-produced `<reserved_N>` pieces so that `text_card` has the preset's size.
TOKENIZER_CORPUS = """
Hello world, this is a test of the text to speech system.
The quick brown fox jumps over the lazy dog.
Good morning! How are you doing today? I am fine, thank you very much.
Please read this sentence slowly and clearly, so that everyone can understand it.
We are streaming audio from a language model running on a graphics card.
The weather is nice today, with a light breeze and a few clouds in the sky.
Could you tell me the way to the train station, please?
It was the best of times, it was the worst of times.
She sells sea shells by the sea shore, and the shells she sells are surely sea shells.
Numbers like 1, 2, 3, 42 and 2025 should also be spoken out loud.
Listen to the voice: it is calm, warm and friendly.
Welcome to the demo. Type some text, pick a voice, and press the play button.
Don't worry, we'll be there at half past seven; it's only ten minutes away.
Bonjour tout le monde, ceci est un test de synthèse vocale.
Le petit chat dort sur le canapé pendant que la pluie tombe dehors.
Comment allez-vous aujourd'hui ? Je vais très bien, merci beaucoup.
Ça va ? Oui, ça va, et toi ?
Nous aimons écouter de la musique et lire des livres le dimanche matin.
La gare est à deux rues d'ici, juste après la boulangerie.
Il fait beau ce matin, le soleil brille et les oiseaux chantent.
Pouvez-vous répéter la phrase plus lentement, s'il vous plaît ?
Elle a acheté du pain, du fromage et des fraises au marché.
Les enfants jouent dans le jardin avec leur chien.
Voici une voix française : elle est douce, claire et naturelle.
Où est la bibliothèque ? Elle se trouve en face de l'école, près du musée.
Une année, deux mois, trois semaines et quatre jours.
Bienvenue ! Écrivez un texte, choisissez une voix et appuyez sur lecture.
"""


# --------------------------------------------------------------------------- paths & loading


def voices_dir(ckpt_dir: Path) -> Path:
    """Folder holding the voice embeddings, laid out like the `kyutai/tts-voices` repository."""
    return Path(ckpt_dir) / VOICES_DIR_NAME


def voice_file(ckpt_dir: Path, voice: str) -> Path:
    """Path of a voice embedding given its name in `kyutai/tts-voices`, e.g. `vctk/p225_023.wav`."""
    return voices_dir(ckpt_dir) / (voice + VOICE_SUFFIX)


# --------------------------------------------------------------------------- configs


def depformer_schedule(n_q: int) -> list[int]:
    """The released model's weight sharing pattern, scaled to `n_q` codebooks: the first quarter
    of the codebooks get their own depformer weights, each following quarter shares one set.
    For n_q=32: [0..7] + [8]*8 + [9]*8 + [10]*8."""
    assert n_q % 4 == 0, n_q
    k = n_q // 4
    return list(range(k)) + [k] * k + [k + 1] * k + [k + 2] * k


def make_lm_config(size: str, text_card: int, seed: int) -> dict[str, tp.Any]:
    """config.json content, with the key structure of `kyutai/tts-1.6b-en_fr` (or of
    `kyutai/tts-0.75b-en-public` for a clone size)."""
    config = _make_1_6b_config(size, text_card, seed)
    if is_clone_size(size):
        # No speaker embedding, no cfg conditioner (moshi then runs real CFG), no cross-attention;
        # an empty condition provider, as moshi's TTSModel.generate asserts that one exists.
        config.update({"cross_attention": False, "conditioners": {}, "text_card_out": CLONE_TEXT_CARD_OUT})
        del config["fuser"]
        config["model_id"].update({"sig": CLONE_MODEL_SIG, "epoch": CLONE_MODEL_EPOCH})
    if is_stt_size(size):
        config = make_stt_config(config, vad=PRESETS[size]["stt"]["vad"])
    return config


def _make_1_6b_config(size: str, text_card: int, seed: int) -> dict[str, tp.Any]:
    p = PRESETS[size]["lm"]
    n_q, dim = p["n_q"], p["dim"]
    return {
        "card": p["card"],
        "n_q": n_q,
        "dep_q": n_q,
        # one entry per stream, text first: num_codebooks = n_q + 1.
        "delays": [0, 0] + [2] * (n_q - 1),
        "dim": dim,
        "text_card": text_card,
        "existing_text_padding_id": 3,
        "num_heads": p["num_heads"],
        "num_layers": p["num_layers"],
        "hidden_scale": 4.125,
        "causal": True,
        "layer_scale": None,
        "context": p["context"],
        "max_period": 10000,
        "gating": "silu",
        "norm": "rms_norm_f32",
        "positional_embedding": "rope",
        "depformer_dim": p["depformer_dim"],
        "depformer_num_heads": p["depformer_num_heads"],
        "depformer_num_layers": p["depformer_num_layers"],
        "depformer_dim_feedforward": p["depformer_dim_feedforward"],
        "depformer_multi_linear": True,
        "depformer_pos_emb": "none",
        "depformer_weights_per_step": True,
        "depformer_low_rank_embeddings": p["depformer_low_rank_embeddings"],
        "demux_second_stream": True,
        "text_card_out": None,
        "cross_attention": True,
        "conditioners": {
            "speaker_wavs": {"type": "tensor", "tensor": {"dim": SPEAKER_EMB_DIM}},
            "cfg": {"type": "lut", "lut": {
                "n_bins": 7, "dim": 16, "tokenizer": "noop",
                "possible_values": ["1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0"]}},
            "control": {"type": "lut", "lut": {
                "dim": dim, "n_bins": 1, "tokenizer": "noop", "possible_values": ["ok"]}},
        },
        "fuser": {
            "cross_attention_pos_emb": True,
            "cross_attention_pos_emb_scale": 1,
            "sum": ["control", "cfg"],
            "prepend": [],
            "cross": ["speaker_wavs"],
        },
        "tts_config": {"audio_delay": 1.28, "second_stream_ahead": 2},
        "model_id": {
            "sig": MODEL_SIG,
            "epoch": MODEL_EPOCH,
            "test_model": {
                "random_weights": True,
                "size": size,
                "seed": seed,
                "format_version": FORMAT_VERSION,
                "note": "random weights: audio is noise. Built by deployments/checkpoint.py.",
            },
        },
        "depformer_weights_per_step_schedule": depformer_schedule(n_q),
        "tokenizer_name": TOKENIZER_NAME,
        "mimi_name": MIMI_WEIGHTS_NAME,
        "moshi_name": LM_WEIGHTS_NAME,
        "mimi_config_name": MIMI_CONFIG_NAME,
        "model_type": "tts",
        "lm_gen_config": {"temp": 0.6, "text_temp": 0.6},
    }


def make_mimi_config(size: str) -> dict[str, tp.Any]:
    """moshi's default Mimi config (24 kHz, 12.5 Hz frames: 960x SEANet hop then 2x downsampling,
    so one frame decodes to 1920 samples), with the preset's overrides. The quantizer `bins`
    equal the LM `card` and it has as many codebooks as the LM."""
    preset = PRESETS[size]
    config = copy.deepcopy(loaders._mimi_config)
    for section, overrides in preset["mimi"].items():
        config[section].update(overrides)
    dimension = config["seanet"]["dimension"]
    config["quantizer"].update({
        "bins": preset["lm"]["card"],
        "n_q": preset["lm"]["n_q"],
        "input_dimension": dimension,
        "output_dimension": dimension,
    })
    config["transformer"].update({
        "d_model": dimension,
        "input_dimension": dimension,
        "output_dimensions": [dimension],
    })
    return config


# --------------------------------------------------------------------------- tokenizer


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _unused_piece(piece: str) -> bytes:
    """A serialized `ModelProto.pieces` entry of type UNUSED (never produced by `encode`).
    Appending it to a serialized ModelProto appends it to the vocabulary (protobuf merges
    repeated fields in order). Written by hand: sentencepiece's own `_pb2` module needs a
    newer protobuf than the one Ray allows."""
    text = piece.encode()
    body = (b"\x0a" + _varint(len(text)) + text      # 1: piece
            + b"\x15" + struct.pack("<f", 0.0)       # 2: score
            + b"\x18" + _varint(5))                  # 3: type = UNUSED
    return b"\x0a" + _varint(len(body)) + body


def train_tokenizer(vocab_size: int) -> bytes:
    """A unigram SentencePiece model (serialized) trained on TOKENIZER_CORPUS, with the
    conventions of Kyutai's tokenizers: unk=0 (also the TTS "new word" token), bos=1, eos=2,
    pad=3, and byte fallback so that any text encodes. Single-threaded, hence deterministic."""
    lines = [line.strip() for line in TOKENIZER_CORPUS.strip().splitlines() if line.strip()]
    model = io.BytesIO()
    with open(os.devnull, "w") as devnull:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,
            logstream=devnull,
            minloglevel=2,  # silence the trainer's logs
            vocab_size=vocab_size,
            hard_vocab_limit=False,  # the corpus may support fewer pieces: filled below
            model_type="unigram",
            character_coverage=1.0,
            byte_fallback=True,
            split_digits=True,
            unk_id=0, bos_id=1, eos_id=2, pad_id=3,
            num_threads=1,
        )
    proto = model.getvalue()
    trained = sentencepiece.SentencePieceProcessor(model_proto=proto).vocab_size()
    proto += b"".join(_unused_piece(f"<reserved_{i}>") for i in range(vocab_size - trained))
    assert sentencepiece.SentencePieceProcessor(model_proto=proto).vocab_size() == vocab_size
    return proto


# --------------------------------------------------------------------------- weights


def _sub_seed(seed: int, what: str) -> int:
    """Independent, reproducible seed per component."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{what}".encode()).digest()[:8], "little") >> 1


_PROJ_KEY = re.compile(r"^(?P<prefix>.*)\.(?P<kind>in|out)_projs\.(?P<index>\d+)\.weight$")


def release_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Stores attention projections as Kyutai's released checkpoints do: one fused
    `in_proj_weight` / `out_proj.weight` per attention (per-step weights of the depformer
    concatenated), which moshi splits back into `in_projs.{i}` / `out_projs.{i}` on load.
    With it the full LM has the released tensor names and count (418)."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[tuple[str, str], dict[int, torch.Tensor]] = {}
    for key, value in state.items():
        match = _PROJ_KEY.match(key)
        if match is None:
            out[key] = value
        else:
            fused.setdefault((match["prefix"], match["kind"]), {})[int(match["index"])] = value
    for (prefix, kind), parts in fused.items():
        name = f"{prefix}.in_proj_weight" if kind == "in" else f"{prefix}.out_proj.weight"
        out[name] = torch.cat([parts[i] for i in range(len(parts))], dim=0)
    return out


def _lm_state(ci: CheckpointInfo, seed: int) -> dict[str, torch.Tensor]:
    # moshi's own constructor and initialization, as `TTSModel.from_checkpoint_info` would build
    # the model before loading the weights; built directly in bf16 to halve the memory.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_sub_seed(seed, "lm"))
        lm = ci.get_moshi(device="cpu", dtype=LM_WEIGHTS_DTYPE, load_weight=False)
    state = {}
    for key, value in lm.state_dict().items():
        if value.is_floating_point():
            keep_fp32 = key.startswith(("condition_provider.", "fuser."))
            value = value.to(torch.float32 if keep_fp32 else LM_WEIGHTS_DTYPE)
        state[key] = value.contiguous()
    del lm
    return release_layout(state)


def _mimi_state(mimi_config: dict, seed: int, fit_codebooks: bool = False) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_sub_seed(seed, "mimi"))
        mimi = loaders.get_mimi(None, copy.deepcopy(mimi_config), device="cpu",
                                num_codebooks=mimi_config["quantizer"]["n_q"])
        for module in mimi.modules():
            # A fresh codebook is all zeros, waiting for k-means on the first batch: give it
            # random centroids and mark it initialized, as a trained one would be.
            if isinstance(module, EuclideanCodebook):
                module.embedding_sum.normal_()
                module.cluster_usage.fill_(1.0)
                module._initialized.fill_(1.0)
                module._embedding = None
        if fit_codebooks:
            _fit_first_codebooks(mimi, seed)
        _calibrate_output_level(mimi)
    state = {k: v.to(MIMI_WEIGHTS_DTYPE).contiguous() for k, v in mimi.state_dict().items()}
    return release_layout(state)


@torch.no_grad()
def _fit_first_codebooks(mimi: MimiModel, seed: int) -> None:
    """A random encoder maps every clip near one point, and random centroids then give every clip
    the same codes: the cloning model's voices would differ only in length. Draws the first
    codebook of each quantizer from the latents of varied signals (tones, noise), as the k-means
    initialization of a trained codec would, so that different clips get different codes."""
    generator = torch.Generator().manual_seed(_sub_seed(seed, "codebooks"))
    signals = [torch.from_numpy(_clip_samples(seed, f"calibration/{f}", 1.0, f))
               for f in (0.0, -1.0, 55.0, 110.0, 220.0, 440.0, 880.0, 1760.0)]
    latent = mimi._encode_to_unquantized_latent(torch.stack(signals)[:, None])
    for rvq in (mimi.quantizer.rvq_first, mimi.quantizer.rvq_rest):
        projected = rvq.input_proj(latent)
        frames = projected.transpose(1, 2).reshape(-1, projected.shape[1])
        codebook = rvq.vq.layers[0]._codebook
        pick = torch.randint(0, len(frames), (codebook.embedding_sum.shape[0],), generator=generator)
        jitter = 0.01 * frames.std() * torch.randn(codebook.embedding_sum.shape, generator=generator)
        codebook.embedding_sum.copy_(frames[pick] + jitter)
        codebook.cluster_usage.fill_(1.0)
        codebook._embedding = None


@torch.no_grad()
def _calibrate_output_level(mimi: MimiModel, rms: float = 0.1) -> None:
    """Randomly initialized, the decoder outputs a large DC offset with a small signal on top.
    Rescales its last convolution so that decoding random codes gives zero-mean noise of the
    given RMS (-20 dBFS): audible in a demo, far from clipping."""
    last_conv = [m for m in mimi.decoder.modules() if isinstance(m, torch.nn.Conv1d)][-1]
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, mimi.cardinality, (1, mimi.num_codebooks, 25), generator=generator)
    pcm = mimi.decode(codes)
    scale = rms / pcm.std().clamp(min=1e-8).item()
    last_conv.weight.mul_(scale)
    if last_conv.bias is not None:
        last_conv.bias.sub_(pcm.mean()).mul_(scale)


def _voice_tensor(seed: int, voice: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(_sub_seed(seed, "voice/" + voice))
    return torch.randn(1, SPEAKER_EMB_DIM, SPEAKER_EMB_FRAMES, generator=generator)


# --------------------------------------------------------------------------- building


def _partial(path: Path) -> Path:
    # Per process, so that concurrent builds of the same folder cannot mix their files.
    return path.with_name(f"{path.name}.{os.getpid()}.partial")


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = _partial(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_json(path: Path, data: dict) -> None:
    _write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def _save_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    tmp = _partial(path)
    save_file(tensors, str(tmp), metadata=metadata)
    _canonicalize_header(tmp)
    os.replace(tmp, path)


def _canonicalize_header(path: Path) -> None:
    """Sorts the `__metadata__` entries of a safetensors header in place. safetensors writes them
    from a Rust HashMap, in an order that changes from run to run, which would make files
    built with the same seed differ. Same JSON, same length: only the header bytes change."""
    with open(path, "r+b") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        if "__metadata__" in header:
            header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        data = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        assert len(data) <= length, (len(data), length)
        f.seek(8)
        f.write(data.ljust(length, b" "))


def clip_file(ckpt_dir: Path, clip: str) -> Path:
    """Path of a voice prompt of a clone checkpoint, e.g. `clips/noise.wav`."""
    return voices_dir(ckpt_dir) / clip


def stt_clip_file(ckpt_dir: Path, clip: str) -> Path:
    """Path of a test clip of an STT checkpoint, e.g. `clips/mid.wav` (checkpoint_stt.STT_CLIPS)."""
    return Path(ckpt_dir) / clip


def _clip_samples(seed: int, clip: str, seconds: float, frequency: float):
    """A mono float32 clip at 24 kHz: a tone with harmonics and a little noise, white noise (0)
    or a noise burst pattern (<0); the same seed gives the same samples."""
    generator = torch.Generator().manual_seed(_sub_seed(seed, "clip/" + clip))
    t = torch.arange(int(seconds * 24_000), dtype=torch.float64) / 24_000
    noise = torch.randn(len(t), generator=generator, dtype=torch.float64)
    if frequency > 0:
        wave = sum(torch.sin(2 * torch.pi * frequency * k * t) / k for k in (1, 2, 3)) + 0.05 * noise
    elif frequency == 0:
        wave = noise
    else:
        wave = noise * (torch.sin(2 * torch.pi * 4 * t) > 0)
    return (0.3 * wave / wave.abs().max()).float().numpy()


def checkpoint_files(ckpt_dir: Path, size: str = "tiny") -> list[Path]:
    """Every file of a checkpoint, config.json first."""
    ckpt_dir = Path(ckpt_dir)
    names = [CONFIG_NAME, LM_WEIGHTS_NAME, MIMI_WEIGHTS_NAME, MIMI_CONFIG_NAME, TOKENIZER_NAME]
    if size in PRESETS and is_stt_size(size):
        voices = [stt_clip_file(ckpt_dir, c) for c, *_ in STT_CLIPS]
    elif size in PRESETS and is_clone_size(size):
        voices = [clip_file(ckpt_dir, c) for c, _, _ in CLIP_NAMES]
    else:
        voices = [voice_file(ckpt_dir, v) for v in VOICE_NAMES]
    return [ckpt_dir / name for name in names] + voices


def is_up_to_date(ckpt_dir: Path, size: str, seed: int) -> bool:
    """True when `ckpt_dir` holds a complete checkpoint of this size, seed and format version."""
    try:
        marker = random_weights_marker(Path(ckpt_dir))
    except (OSError, ValueError):
        return False
    wanted = {"size": size, "seed": seed, "format_version": FORMAT_VERSION}
    if marker is None or any(marker.get(k) != v for k, v in wanted.items()):
        return False
    return all(path.is_file() for path in checkpoint_files(ckpt_dir, size))


def build_checkpoint(out_dir: Path, size: str = "tiny", seed: int = 0) -> Path:
    """Writes a random-weight checkpoint of the given size to `out_dir` (created if needed) and
    returns `out_dir`. Does nothing when it already holds the same size+seed. Files are written
    atomically, config.json last, so a checkpoint with a config.json is complete."""
    if size not in PRESETS:
        raise ValueError(f"unknown size {size!r}, expected one of {SIZES}")
    out_dir = Path(out_dir)
    if is_up_to_date(out_dir, size, seed):
        print(f"{out_dir}: {size} checkpoint with seed {seed} is up to date")
        os.utime(out_dir / CONFIG_NAME)  # keeps make's timestamps happy
        return out_dir

    start = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / CONFIG_NAME
    config_path.unlink(missing_ok=True)  # marks the folder incomplete while we write

    tokenizer = train_tokenizer(PRESETS[size]["vocab_size"])
    _write_bytes(out_dir / TOKENIZER_NAME, tokenizer)
    text_card = sentencepiece.SentencePieceProcessor(model_proto=tokenizer).vocab_size()

    config = make_lm_config(size, text_card, seed)
    mimi_config = make_mimi_config(size)
    _write_json(out_dir / MIMI_CONFIG_NAME, mimi_config)

    # Parse the config with moshi's own loader, exactly as it will be parsed when loading.
    pending_config = _partial(out_dir / CONFIG_NAME)
    _write_json(pending_config, config)
    ci = CheckpointInfo.from_hf_repo(
        str(out_dir), config_path=pending_config,
        moshi_weights=out_dir / LM_WEIGHTS_NAME, mimi_weights=out_dir / MIMI_WEIGHTS_NAME,
        tokenizer=out_dir / TOKENIZER_NAME, mimi_config_path=out_dir / MIMI_CONFIG_NAME)

    metadata = {"random_weights": "true", "size": size, "seed": str(seed)}
    _save_safetensors(out_dir / MIMI_WEIGHTS_NAME, _mimi_state(mimi_config, seed, is_clone_size(size) or is_stt_size(size)), metadata)
    lm_state = _lm_state(ci, seed)
    if is_stt_size(size):
        spm = sentencepiece.SentencePieceProcessor(model_proto=tokenizer)
        spelled = [not (spm.is_byte(i) or spm.is_unused(i) or spm.is_control(i) or spm.is_unknown(i))
                   for i in range(text_card)]
        bias_text_head(lm_state, spelled, STT_BOUNDARY_SCALE, STT_PAD_SCALE)
    n_params = sum(t.numel() for t in lm_state.values())
    _save_safetensors(out_dir / LM_WEIGHTS_NAME, lm_state, metadata)
    del lm_state

    _write_voices(out_dir, size, seed)
    os.replace(pending_config, config_path)
    size_mb = sum(p.stat().st_size for p in checkpoint_files(out_dir, size)) / 1e6
    print(f"{out_dir}: built {size} checkpoint (seed {seed}, random weights): "
          f"LM {n_params / 1e6:.2f}M params, text_card {text_card}, "
          f"{size_mb:.1f} MB in {time.monotonic() - start:.1f}s")
    return out_dir


def _write_voices(out_dir: Path, size: str, seed: int) -> None:
    if is_stt_size(size):
        import sphn

        for index, (clip, seconds, rate, pitch) in enumerate(STT_CLIPS):
            path = stt_clip_file(out_dir, clip)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = _partial(path).with_suffix(".wav")
            sphn.write_wav(str(tmp), clip_samples(seconds, rate, pitch, _sub_seed(seed, clip)).numpy(), 24_000)
            os.replace(tmp, path)
        return
    if is_clone_size(size):
        import sphn

        for clip, seconds, frequency in CLIP_NAMES:
            path = clip_file(out_dir, clip)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = _partial(path).with_suffix(".wav")
            sphn.write_wav(str(tmp), _clip_samples(seed, clip, seconds, frequency), 24_000)
            os.replace(tmp, path)
        return
    for voice in VOICE_NAMES:
        path = voice_file(out_dir, voice)
        path.parent.mkdir(parents=True, exist_ok=True)
        _save_safetensors(path, {"speaker_wavs": _voice_tensor(seed, voice)},
                          {"sig": MODEL_SIG, "epoch": str(MODEL_EPOCH)})


def main(argv: tp.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.checkpoint",
        description="Write a Kyutai DSM TTS checkpoint with random weights (audio is noise).")
    parser.add_argument("--size", choices=SIZES, default="tiny",
                        help="tiny: for tests and the demo; full: the real 1.6B architecture; "
                             "tiny-clone / full-clone: the same for the voice-cloning 0.75B; "
                             "tiny-stt / tiny-stt-novad / full-stt: speech to text (stt-1b-en_fr's shape), "
                             "with and without voice-activity heads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    build_checkpoint(args.out_dir, size=args.size, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
