"""The random-weight checkpoint builder: moshi loads its output unchanged and speaks with it."""

import os

# moshi reads these when it is imported: no torch.compile / CUDA graphs on CPU (33 s -> 1.6 s).
os.environ.setdefault("NO_TORCH_COMPILE", "1")
os.environ.setdefault("NO_CUDA_GRAPH", "1")

import hashlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import sentencepiece  # noqa: E402
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from deployments import checkpoint as ck  # noqa: E402
from moshi.models.loaders import CheckpointInfo  # noqa: E402
from moshi.models.tts import TTSModel  # noqa: E402
from moshi.utils.compile import no_compile  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
TEXT = "Hello world, this is a test."

# Top-level keys of kyutai/tts-1.6b-en_fr's config.json, plus our mimi_config_name.
RELEASE_CONFIG_KEYS = {
    "card", "n_q", "dep_q", "delays", "dim", "text_card", "existing_text_padding_id",
    "num_heads", "num_layers", "hidden_scale", "causal", "layer_scale", "context", "max_period",
    "gating", "norm", "positional_embedding", "depformer_dim", "depformer_num_heads",
    "depformer_num_layers", "depformer_dim_feedforward", "depformer_multi_linear",
    "depformer_pos_emb", "depformer_weights_per_step", "depformer_low_rank_embeddings",
    "demux_second_stream", "text_card_out", "cross_attention", "conditioners", "fuser",
    "tts_config", "model_id", "depformer_weights_per_step_schedule", "tokenizer_name",
    "mimi_name", "moshi_name", "model_type", "lm_gen_config", "mimi_config_name",
}


def _hashes(ckpt: Path) -> dict[str, str]:
    return {str(p.relative_to(ckpt)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in ck.checkpoint_files(ckpt)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return ck.build_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", size="tiny", seed=0)


@pytest.fixture(scope="module")
def tts(tiny) -> TTSModel:
    # moshi's own entry points, every file given as a local Path: nothing from a hub.
    config = json.loads((tiny / "config.json").read_text())
    ci = CheckpointInfo.from_hf_repo(
        "kyutai/tts-1.6b-en_fr",
        config_path=tiny / "config.json",
        moshi_weights=tiny / config["moshi_name"],
        mimi_weights=tiny / config["mimi_name"],
        tokenizer=tiny / config["tokenizer_name"],
        mimi_config_path=tiny / config["mimi_config_name"],
    )
    return TTSModel.from_checkpoint_info(ci, n_q=8, temp=0.6, device="cpu", dtype=torch.float32)


def test_tiny_builds_every_file(tiny):
    for path in ck.checkpoint_files(tiny):
        assert path.is_file(), path
    config = json.loads((tiny / "config.json").read_text())
    assert set(config) == RELEASE_CONFIG_KEYS
    assert config["n_q"] == config["dep_q"] == 8
    assert len(config["delays"]) == config["n_q"] + 1  # text stream + audio codebooks
    assert config["depformer_weights_per_step_schedule"] == [0, 1, 2, 2, 3, 3, 4, 4]
    tokenizer = sentencepiece.SentencePieceProcessor(str(tiny / config["tokenizer_name"]))
    assert config["text_card"] == tokenizer.vocab_size()
    assert (tokenizer.unk_id(), tokenizer.bos_id(), tokenizer.eos_id(), tokenizer.pad_id()) == (0, 1, 2, 3)
    mimi_config = json.loads((tiny / config["mimi_config_name"]).read_text())
    assert mimi_config["quantizer"]["bins"] == config["card"]
    assert mimi_config["quantizer"]["n_q"] >= config["n_q"]
    assert config["conditioners"]["speaker_wavs"] == {"type": "tensor", "tensor": {"dim": 512}}
    assert config["conditioners"]["cfg"]["lut"]["possible_values"] == [
        "1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0"]
    assert config["fuser"]["sum"] == ["control", "cfg"] and config["fuser"]["cross"] == ["speaker_wavs"]
    assert config["tts_config"] == {"audio_delay": 1.28, "second_stream_ahead": 2}


def test_config_carries_random_weights_marker(tiny):
    config = json.loads((tiny / "config.json").read_text())
    assert config["model_id"]["sig"] == "1e68beda" and config["model_id"]["epoch"] == 240
    marker = ck.random_weights_marker(tiny)
    assert marker == config["model_id"]["test_model"]
    assert marker["random_weights"] is True
    assert (marker["size"], marker["seed"]) == ("tiny", 0)
    assert "noise" in marker["note"]
    with safe_open(str(tiny / config["moshi_name"]), "pt") as f:
        assert f.metadata()["random_weights"] == "true"


def test_moshi_loads_it_unchanged(tiny, tts):
    assert tts.delay_steps == 16
    assert tts.multi_speaker
    assert tts.valid_cfg_conditionings == {1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0}
    assert tts.voice_suffix == ck.VOICE_SUFFIX == ".1e68beda@240.safetensors"
    assert tts.lm.text_card == tts.tokenizer.vocab_size()
    assert (tts.mimi.sample_rate, tts.mimi.frame_rate) == (24000, 12.5)
    # Every stored tensor made it into the model (attention projections are fused on disk
    # as in the released checkpoint, and split by moshi on load).
    config = json.loads((tiny / "config.json").read_text())
    stored = load_file(tiny / config["moshi_name"])
    loaded = ck.release_layout(tts.lm.state_dict())
    assert stored.keys() == loaded.keys()
    for key, value in stored.items():
        assert torch.equal(value.to(loaded[key].dtype), loaded[key]), key
        assert torch.isfinite(value.float()).all(), key
    stored = load_file(tiny / config["mimi_name"])
    loaded = ck.release_layout(tts.mimi.state_dict())
    assert stored.keys() == loaded.keys()
    assert all(torch.equal(value, loaded[key]) for key, value in stored.items())
    # The service's loader for local checkpoint folders gives the same CheckpointInfo.
    from deployments.engine.loading import local_checkpoint_info

    ci = local_checkpoint_info(tiny)
    assert ci.moshi_weights == tiny / config["moshi_name"]
    assert ci.tts_config == config["tts_config"] and ci.model_type == "tts"


def test_generation_speaks(tiny, tts):
    entries = tts.prepare_script([TEXT], padding_between=1)
    attrs = tts.make_condition_attributes([ck.voice_file(tiny, ck.VOICE_NAMES[0])], cfg_coef=2.0)
    pcms = []

    def on_frame(frame):  # [B, 1 + n_q, 1]
        if (frame != -1).all():
            pcms.append(tts.mimi.decode(frame[:, 1:]).clone())

    with no_compile(), tts.mimi.streaming(1):
        result = tts.generate([entries], [attrs], on_frame=on_frame)
    assert result.end_steps[0] is not None
    assert [word for word, _ in result.all_transcripts[0]] == TEXT.split()
    assert pcms and all(pcm.shape == (1, 1, 1920) for pcm in pcms)
    audio = torch.cat(pcms, dim=-1)
    assert torch.isfinite(audio).all()
    assert 0.01 < audio.std().item() and audio.abs().max().item() < 1.0  # audible noise, no clipping


def test_voices_have_the_release_layout(tiny, tts):
    assert ck.voices_dir(tiny) == tiny / "voices"
    files = sorted(ck.voices_dir(tiny).rglob("*.safetensors"))
    assert len(files) == len(ck.VOICE_NAMES) >= 3
    for name in ck.VOICE_NAMES:
        path = ck.voices_dir(tiny) / (name + tts.voice_suffix)
        assert path in files
        with safe_open(str(path), "pt") as f:
            assert list(f.keys()) == ["speaker_wavs"]
            assert f.metadata() == {"sig": "1e68beda", "epoch": "240"}
            tensor = f.get_tensor("speaker_wavs")
        assert tensor.dtype == torch.float32 and tuple(tensor.shape) == (1, 512, 125)
    assert (ck.voices_dir(tiny) / "expresso/ex03-ex01_happy_001_channel1_334s.wav.1e68beda@240.safetensors").is_file()
    assert (ck.voices_dir(tiny) / "cml-tts/fr/2154_2576_000020.wav.1e68beda@240.safetensors").is_file()
    tts.make_condition_attributes([files[0], files[1]], cfg_coef=1.0)  # moshi accepts them


def test_same_seed_same_bytes_other_seed_other_weights(tiny, tmp_path):
    again = ck.build_checkpoint(tmp_path / "again", size="tiny", seed=0)
    other = ck.build_checkpoint(tmp_path / "other", size="tiny", seed=1)
    assert _hashes(again) == _hashes(tiny)
    hashes, other_hashes = _hashes(tiny), _hashes(other)
    for name in (ck.LM_WEIGHTS_NAME, ck.MIMI_WEIGHTS_NAME, f"voices/{ck.VOICE_NAMES[0]}{ck.VOICE_SUFFIX}"):
        assert hashes[name] != other_hashes[name], name
    sample = "Bonjour ! Ça va ? Hello world, 2025 — 日本."
    encodings = [sentencepiece.SentencePieceProcessor(str(d / ck.TOKENIZER_NAME)).encode(sample)
                 for d in (tiny, again, other)]
    assert encodings[0] == encodings[1] == encodings[2]


def test_rebuild_is_skipped_when_up_to_date(tiny, capsys):
    weights = tiny / ck.LM_WEIGHTS_NAME
    before = weights.stat().st_mtime_ns
    ck.build_checkpoint(tiny, size="tiny", seed=0)
    assert "up to date" in capsys.readouterr().out
    assert weights.stat().st_mtime_ns == before
    assert not ck.is_up_to_date(tiny, "tiny", 1)
    assert not ck.is_up_to_date(tiny, "full", 0)


def test_full_preset_is_the_released_architecture(tmp_path):
    # Parsed and built by moshi on the meta device: no memory, no weights.
    config = ck.make_lm_config("full", text_card=8000, seed=0)
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "mimi.json").write_text(json.dumps(ck.make_mimi_config("full")))
    ci = CheckpointInfo.from_hf_repo(
        "unused", config_path=tmp_path / "config.json", moshi_weights=tmp_path / "lm.safetensors",
        mimi_weights=tmp_path / "mimi.safetensors", tokenizer=tmp_path / "tok.model",
        mimi_config_path=tmp_path / "mimi.json")
    lm = ci.get_moshi(device="meta", dtype=torch.bfloat16, load_weight=False)
    state = ck.release_layout(lm.state_dict())
    assert len(state) == 418  # as dsm_tts_1e68beda@240.safetensors
    assert 1.83e9 < sum(t.numel() for t in state.values()) < 1.85e9
    assert config["delays"] == [0, 0] + [2] * 31
    assert config["depformer_weights_per_step_schedule"] == list(range(8)) + [8] * 8 + [9] * 8 + [10] * 8
    assert config["conditioners"]["control"]["lut"]["dim"] == 2048
    assert ck.make_mimi_config("full")["quantizer"]["bins"] == 2048


def test_command_line(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "deployments.checkpoint", "--size", "tiny", "--seed", "3", str(out)]
    subprocess.run(cmd, cwd=REPO_ROOT, check=True, capture_output=True, text=True, timeout=120)
    assert ck.random_weights_marker(out)["seed"] == 3
    rerun = subprocess.run(cmd, cwd=REPO_ROOT, check=True, capture_output=True, text=True, timeout=120)
    assert "up to date" in rerun.stdout


# ---- the voice-cloning flavour ------------------------------------------------------------------
def test_full_clone_config_is_the_0_75b_architecture(tmp_path):
    """Checked as a config only (building it takes minutes and GBs): moshi's loader reads it."""
    config = ck.make_lm_config("full-clone", 8000, 0)
    assert (config["n_q"], config["dep_q"], config["dim"], config["num_layers"], config["num_heads"]) == (16, 16, 1024, 24, 16)
    assert config["delays"] == [0, 0] + [2] * 15 and config["context"] == 500
    assert (config["depformer_dim"], config["depformer_num_layers"], config["depformer_low_rank_embeddings"]) == (1024, 4, 128)
    assert config["conditioners"] == {} and "fuser" not in config and config["cross_attention"] is False
    assert config["text_card_out"] == 5 and config["tts_config"] == {"audio_delay": 1.28, "second_stream_ahead": 2}
    assert (config["model_id"]["sig"], config["model_id"]["epoch"]) == ("d6ef30c7", 1000)
    assert ck.make_mimi_config("full-clone")["quantizer"]["n_q"] == 16
    path, mimi_path = tmp_path / "config.json", tmp_path / "mimi_config.json"
    path.write_text(json.dumps(config))
    mimi_path.write_text(json.dumps(ck.make_mimi_config("full-clone")))
    info = CheckpointInfo.from_hf_repo(str(tmp_path), config_path=path, moshi_weights=path, mimi_weights=path,
                                       tokenizer=path, mimi_config_path=mimi_path)
    assert info.lm_config["n_q"] == 16 and info.tts_config["audio_delay"] == 1.28


def test_tiny_clone_loads_in_moshi_unchanged_with_distinct_clips(tiny_clone_checkpoint):
    import sphn

    ci = CheckpointInfo.from_hf_repo(
        str(tiny_clone_checkpoint), config_path=tiny_clone_checkpoint / ck.CONFIG_NAME,
        moshi_weights=tiny_clone_checkpoint / ck.LM_WEIGHTS_NAME, mimi_weights=tiny_clone_checkpoint / ck.MIMI_WEIGHTS_NAME,
        tokenizer=tiny_clone_checkpoint / ck.TOKENIZER_NAME, mimi_config_path=tiny_clone_checkpoint / ck.MIMI_CONFIG_NAME)
    tts = TTSModel.from_checkpoint_info(ci, n_q=ci.lm_config["n_q"], device="cpu", dtype=torch.float32)
    assert not tts.multi_speaker and tts.voice_suffix == "" and not tts.valid_cfg_conditionings
    assert tts.lm.condition_provider is not None and tts.lm.fuser is None
    assert ck.is_up_to_date(tiny_clone_checkpoint, "tiny-clone", 0)
    clips = [sphn.read(str(ck.clip_file(tiny_clone_checkpoint, name)), sample_rate=24_000)[0] for name, _, _ in ck.CLIP_NAMES]
    assert all(c.shape[0] == 1 and 0.5 * 24_000 <= c.shape[1] <= 1.5 * 24_000 for c in clips)  # short, mono
    prefixes = [tts.get_prefix(ck.clip_file(tiny_clone_checkpoint, name)) for name, _, _ in ck.CLIP_NAMES[:3]]
    assert all(p.shape[0] == 1 + tts.lm.n_q for p in prefixes)
    assert len({tuple(p[1:, :4].flatten().tolist()) for p in prefixes}) == 3  # three clips, three codes
