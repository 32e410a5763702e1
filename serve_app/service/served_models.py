"""The app's models as the ingress sees them: for each entry of the model table (AppSettings.models),
its name, the id clients see, its worker deployment, its engine settings and the client of its
workers. Requests choose among them by name; status and readiness report each."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from deployments.engine import loading
from deployments.engine.models import MODELS, ModelKind, ModelSpec, model_kind, spec_for
from deployments.engine.voices import VoiceCatalog
from deployments.engine.random_weights import is_random_weights_checkpoint
from deployments.protocol import CfgRule, worker_deployment
from deployments.settings import EngineSettings

from ..errors import APIError
from ..settings import AppSettings
from .voices import ModelVoices
from .worker_client import WorkerClient


@dataclass
class ServedModel:
    name: str             # its key in the model table, e.g. "default"
    public_id: str        # what clients see: the hub repo, or local/<folder>
    deployment: str       # its worker deployment's name
    settings: EngineSettings
    workers: WorkerClient
    voices: ModelVoices

    @property
    def spec(self) -> ModelSpec:
        """Its row in deployments/engine/models.py: a hub repo's; a local checkpoint's by the kind
        its config describes (`model_kind`); a repo the table does not list is taken for a
        1.6B-style TTS."""
        if self.settings.model_path:
            return LOCAL_CHECKPOINT_SPECS.get(model_kind(self.settings), LOCAL_CHECKPOINT_SPEC)
        return spec_for(self.settings.model_repo) or LOCAL_CHECKPOINT_SPEC

    @property
    def kind(self) -> str:
        """Its engine kind (deployments/engine/models.py)."""
        return self.spec.kind.value

    @property
    def cfg_rule(self) -> CfgRule | None:
        """The cfg coefficients a request may ask of it (None: it takes none)."""
        return self.spec.cfg_rule

    def check_cfg(self, cfg_coef: float | None, param: str = "cfg_coef", status: int = 422) -> float | None:
        """`cfg_coef` when this model takes it (None: its configured default, the worker's); else an
        APIError naming `param` and the values this model takes."""
        rule = self.cfg_rule
        if cfg_coef is None or (rule is not None and rule.allows(cfg_coef)):
            return cfg_coef
        takes = f"takes {rule.describe()}" if rule else "takes no cfg coefficient"
        raise APIError(status, f"{param} {cfg_coef:g} is not a value of model '{self.name}': it {takes}",
                       param=param, code="invalid_cfg")

    @property
    def speaks(self) -> bool:
        """True for a text-to-speech model (either kind), False for speech to text."""
        return self.kind != ModelKind.STT.value

    @property
    def test_model(self) -> bool:
        """True when its audio is noise: a scripted fake engine, or a random-weight checkpoint."""
        engine = self.settings
        return bool(engine.test_engine or engine.build_test_checkpoint or (
            engine.model_path and checkpoint_is_test_model(engine.model_path)))

    def describe(self, default: bool) -> dict:
        """What /api/info says of it."""
        return {"name": self.name, "id": self.public_id, "kind": self.kind, "default": default,
                "test_model": self.test_model, "engine": self.settings.test_engine,
                "default_voice": self.settings.default_voice, "default_cfg_coef": self.settings.default_cfg_coef,
                "cfg_coef": self.cfg_rule.json_schema() if self.cfg_rule else None}


# What a local checkpoint is taken for (ServedModel.spec).
LOCAL_CHECKPOINT_SPEC = MODELS["kyutai/tts-1.6b-en_fr"]
LOCAL_CHECKPOINT_SPECS = {ModelKind.TTS_AUDIO_PROMPT: MODELS["kyutai/tts-0.75b-en-public"],
                          ModelKind.STT: MODELS["kyutai/stt-1b-en_fr"]}


def cfg_rules(models) -> list[CfgRule]:
    """The distinct cfg rules of `models` (ServedModels), in their order: what an app's documents
    state for cfg_coef (several: the field takes their union, each model its own)."""
    return list(dict.fromkeys(m.cfg_rule for m in models if m.cfg_rule is not None))


@lru_cache(maxsize=8)
def checkpoint_is_test_model(model_path: str) -> bool:
    return is_random_weights_checkpoint(model_path)  # read once per folder


def served_models(settings: AppSettings, handles: dict, app_name: str) -> dict[str, ServedModel]:
    """One ServedModel per model of the table, from the worker handles build_app bound by name."""
    missing = set(settings.model_names()) - set(handles)
    if missing:
        raise ValueError(f"no worker deployment bound for models {sorted(missing)}")
    return {name: ServedModel(name, settings.model_name(name), worker_deployment(name, settings.default_model_name),
                              engine, WorkerClient(handles[name], app_name, settings.worker_timeout_s),
                              ModelVoices(_catalog(engine, settings.hub_timeout_s), engine.default_voice))
            for name, engine in settings.model_table().items()}


def _catalog(engine: EngineSettings, hub_timeout_s: float) -> VoiceCatalog:
    """The voices a model's worker can load, as the ingress lists them (any model suffix: the
    ingress does not load the model to learn its own; audio clips for the cloning model)."""
    kind = model_kind(engine)
    if kind is ModelKind.STT:  # it listens: no voices
        return VoiceCatalog([], None, suffix=None, hub_timeout_s=hub_timeout_s)
    return VoiceCatalog(loading.local_voice_dirs(engine), loading.voice_repo(engine), suffix=None,
                        hub_timeout_s=hub_timeout_s, clips=kind is ModelKind.TTS_AUDIO_PROMPT)
