"""One row per Kyutai model this service serves or is about to: what kind of engine it needs and
the facts that engine must respect, so that a new model is a new row and a new engine, not a
branch in an existing one. Served: `kyutai/tts-1.6b-en_fr` (deployments/engine/tts.py),
`kyutai/tts-0.75b-en-public` (deployments/engine/clone.py) and `kyutai/stt-1b-en_fr` (its release
with voice-activity heads too; deployments/engine/stt.py); the other rows hold what the next
engines must honour. `model_kind` tells which engine a model's settings need.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from dataclasses import dataclass

from ..protocol import CFG_COEFS, FRAME_RATE, REAL_CFG, SAMPLE_RATE, CfgRule


class ModelKind(str, enum.Enum):
    # Text in, audio out; a voice is a speaker embedding (`kyutai/tts-voices` files made for the
    # model), cfg a conditioning input of a CFG-distilled model.
    TTS_EMBEDDING_VOICES = "tts-embedding-voices"
    # Text in, audio out; a voice is an audio prompt the model continues, cfg is real
    # classifier-free guidance (a null-conditioned pass next to each row's).
    TTS_AUDIO_PROMPT = "tts-audio-prompt"
    # Audio in, text out: one text token per row per 80 ms frame, lagging the audio by a delay.
    STT = "stt"


@dataclass(frozen=True)
class ModelSpec:
    repo: str
    kind: ModelKind
    sample_rate: int = SAMPLE_RATE  # Mimi's, audio in or out
    frame_rate: float = FRAME_RATE  # model steps per second of audio
    # The cfg coefficients a CFG-distilled model takes as a conditioning input; None: none (no
    # cfg, or `real_cfg`).
    cfg_coefs: tuple[float, ...] | None = None
    real_cfg: bool = False
    # Audio codebooks generated per frame (TTS): the default, and the values the model accepts.
    n_q_default: int | None = None
    n_q_allowed: tuple[int, ...] | None = None
    voice_id: str | None = None     # the form of a voice id, in words; None: no voices
    delay_s: float | None = None    # STT: how far the text lags the audio
    languages: tuple[str, ...] = ("en",)
    served: bool = False            # an engine for it exists
    # What must be said where its voices are listed (its licence asks for attribution).
    attribution: str | None = None

    @property
    def cfg_rule(self) -> CfgRule | None:
        """The cfg coefficients a request may ask of it: its distilled set, the bounded range of
        real guidance (deployments/protocol.py says why those bounds), or None (no cfg)."""
        if self.real_cfg:
            return REAL_CFG
        return CfgRule.one_of(self.cfg_coefs) if self.cfg_coefs else None


MODELS: dict[str, ModelSpec] = {spec.repo: spec for spec in (
    ModelSpec(
        "kyutai/tts-1.6b-en_fr", ModelKind.TTS_EMBEDDING_VOICES, cfg_coefs=CFG_COEFS,
        # 24 of its 32: what Kyutai's own server generates (EngineSettings.n_q's default).
        n_q_default=24, n_q_allowed=tuple(range(1, 33)),
        voice_id="a path in kyutai/tts-voices (expresso/ex03-ex01_happy_001_channel1_334s.wav); the engine "
                 "loads its speaker embedding, the path + '.<sig>@<epoch>.safetensors' of the checkpoint's model_id",
        languages=("en", "fr"), served=True),
    ModelSpec(
        # moshi's PUBLIC_DATA_DSM_TTS_REPO: trained on public data only, English; no speaker
        # embeddings and no cfg conditioner (moshi's TTSModel then uses no voice suffix, and
        # applies cfg_coef as real CFG).
        "kyutai/tts-0.75b-en-public", ModelKind.TTS_AUDIO_PROMPT, real_cfg=True,
        n_q_default=16, n_q_allowed=(16,),
        voice_id="an audio file in kyutai/tts-voices (a .wav path, no suffix): its audio is the prompt",
        served=True, attribution="Voices spoken by kyutai/tts-0.75b-en-public, by Kyutai, licensed CC-BY 4.0 "
                                 "(https://creativecommons.org/licenses/by/4.0/)"),
    ModelSpec("kyutai/stt-1b-en_fr", ModelKind.STT, delay_s=0.5, languages=("en", "fr"), served=True),
    # The same model with its 4 semantic voice-activity heads (Kyutai's Rust server loads this
    # release; moshi's loader takes its config and weights as they are): the production default,
    # since voice agents read the pause probabilities (Kyutai's `Step` messages).
    ModelSpec("kyutai/stt-1b-en_fr-candle", ModelKind.STT, delay_s=0.5, languages=("en", "fr"), served=True),
    ModelSpec("kyutai/stt-2.6b-en", ModelKind.STT, delay_s=2.5),
)}


# The widest cfg_coef any model takes: what a request may carry before its model is known (each
# model's own rule, ModelSpec.cfg_rule, is checked once it is).
CFG_BOUNDS = (min(spec.cfg_rule.low for spec in MODELS.values() if spec.cfg_rule),
              max(spec.cfg_rule.high for spec in MODELS.values() if spec.cfg_rule))


def spec_for(repo: str) -> ModelSpec | None:
    """The row of a hub repo; None for a repo not listed (a local checkpoint, another model)."""
    return MODELS.get(repo)


def model_kind(settings) -> ModelKind:
    """The kind of model an engine's settings name. A hub repo: its row (a repo not listed is taken
    for a 1.6B-style TTS). A local checkpoint: its config.json (or, before it is built, the test
    size asked for) says whether voices are speaker embeddings (cross-attention) or audio prompts."""
    if not settings.model_path:
        spec = spec_for(settings.model_repo)
        return spec.kind if spec else ModelKind.TTS_EMBEDDING_VOICES
    config_path = Path(settings.model_path).expanduser() / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        config = None
    if config is None:
        built = settings.build_test_checkpoint or ""
        if "-stt" in built:
            return ModelKind.STT
        return ModelKind.TTS_AUDIO_PROMPT if built.endswith("-clone") else ModelKind.TTS_EMBEDDING_VOICES
    if config.get("model_type") == "stt" or config.get("dep_q") == 0:
        return ModelKind.STT
    if not config.get("cross_attention", True) and not config.get("conditioners"):
        return ModelKind.TTS_AUDIO_PROMPT
    return ModelKind.TTS_EMBEDDING_VOICES
