"""Request and response models of the service's own REST API, with the examples Swagger UI shows.

The request models carry every constraint a client can check before sending (bounds, enums,
steps, lengths; the text rule from protocols/text.py), so that a request the OpenAPI document
allows is one the service takes, except for what depends on the data (an unknown voice: 400) or
on the model (more than `max_audio_s` of audio: 422). The response models only document (routes
return plain dicts): tests/unit/test_contract.py checks every answer against them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, RootModel, StrictStr, model_validator

from deployments.engine.voices import MAX_NAME_LEN
from deployments.engine.models import CFG_BOUNDS

from ..audio.captions import FORMATS as CAPTION_FORMATS
from ..audio.formats import AudioFormatName
from ..audio.tempo import MAX_SPEED, MIN_SPEED
from .error_shape import ErrorDetail
from .text import CFG_RULES, MODEL_NAMES, speech_text

VOICE_ID_EXAMPLE = "unmute-prod-website/default_voice.wav"


# A voice name as the schema can state it (the catalog refuses an empty or longer one with 400);
# which names exist is data (GET /api/voices): an unknown one is a 400 too.
VoiceName = Annotated[StrictStr, Field(json_schema_extra={"minLength": 1, "maxLength": MAX_NAME_LEN})]


# A GPU index, an integer as JSON Schema counts them: 2 and 2.0 alike, never "2" or true (the
# models are strict).
GpuIndex = Annotated[int, Field(ge=0), BeforeValidator(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)]


def voice_field(description: str):
    return Field(None, description=description, examples=[VOICE_ID_EXAMPLE])


# Request models are strict: JSON's types as the schema states them ("true" is not a boolean, "2"
# not a number), so that a body the schema refuses is one the service refuses.
class TTSRequest(BaseModel):
    # `stream` and `save` exclude each other: the schema says so too.
    model_config = {"extra": "forbid", "strict": True, "json_schema_extra": {
        "not": {"required": ["stream", "save"], "properties": {"stream": {"const": True}, "save": {"const": True}}}}}

    text: StrictStr = speech_text("Text to speak.", "Hello from the cluster.")
    model: Annotated[StrictStr, Field(json_schema_extra={MODEL_NAMES: True})] | None = Field(
        None, description="A model's name or id from GET /v1/models (default: the "
                                    "default model); an unknown one is a 400.")
    voice: VoiceName | None = voice_field("Voice id from GET /api/voices (default: the configured voice).")
    format: AudioFormatName = Field("wav", description="Audio format of the response.")
    # Bounded here by every model's rule; each model takes its own values (checked where the
    # request is built, 422 invalid_cfg), and the document states the app's models' rules.
    cfg_coef: float | None = Field(None, ge=CFG_BOUNDS[0], le=CFG_BOUNDS[1], json_schema_extra={CFG_RULES: True}, description=(
        "Voice adherence (default: the model's configured one). The values depend on the model: "
        "Kyutai's 1.6B takes 1 to 4 in steps of 0.5 (a conditioning input), a model with real "
        "classifier-free guidance any number in a range; GET /api/info lists each model's."))
    save: bool = Field(False, description="Also store the file under the outputs directory and return its URL.")
    stream: bool = Field(False, description="Send the audio while it is generated (chunked body); with timestamps "
                         "or captions: Server-Sent Events (audio, word, done). Not with save.")
    timestamps: bool = Field(False, description="Return JSON: the audio in base64 and words [{word, start_s, end_s}].")
    captions: Literal[tuple(CAPTION_FORMATS)] | None = Field(None, description="Also return WebVTT or SRT captions of the "
                                                   "words (in the JSON answer, or the final SSE event).")
    speed: float = Field(1.0, ge=MIN_SPEED, le=MAX_SPEED, description="Time-stretch factor (pitch kept): 2.0 speaks twice as fast.")

    @model_validator(mode="after")
    def _stream_not_saved(self):
        if self.stream and self.save:
            raise ValueError("save cannot be combined with stream: request the file without stream")
        return self


# What Swagger UI offers to try on POST /api/tts (Schemathesis sends each one too).
TTS_EXAMPLES = {
    "audio": {"summary": "A WAV file", "value": {"text": "Hello from the cluster."}},
    "voice": {"summary": "Another voice, as MP3", "value": {
        "text": "Bonjour à tous.", "voice": "expresso/ex03-ex01_happy_001_channel1_334s.wav", "format": "mp3"}},
    "timestamps": {"summary": "JSON: base64 audio, word times and captions", "value": {
        "text": "Hello there.", "timestamps": True, "captions": "vtt"}},
    "stream": {"summary": "Server-Sent Events while it speaks", "value": {
        "text": 'A pause <break time="0.5s"/> then more.', "stream": True, "timestamps": True}},
    "save": {"summary": "Saved on the server: a download URL", "value": {"text": "Keep this.", "save": True}},
}


class OffloadRequest(BaseModel):
    model_config = {"extra": "forbid", "strict": True}

    gpu: GpuIndex | None = Field(None, description="Only replicas on this GPU index.")
    replica: str | None = Field(None, max_length=128, description="Only this replica id.")


OFFLOAD_EXAMPLES = {"all": {"summary": "Every replica", "value": {}},
                    "gpu": {"summary": "The replicas on GPU 0", "value": {"gpu": 0}}}


# ---- responses (documentation) ------------------------------------------------------------------
class SpokenWord(BaseModel):
    word: str
    start_s: float = Field(description="When the word starts in the audio, in seconds.")
    end_s: float = Field(description="When the word ends in the audio, in seconds.")


class SpeechFacts(BaseModel):
    """What every JSON answer of POST /api/tts says about the audio."""
    format: AudioFormatName
    duration_s: float = Field(description="Length of the audio in seconds (after `speed`).")
    voice: str = Field(description="The voice id that was used.")
    gpu: int | None = Field(description="GPU index of the replica that spoke it (null on CPU).")
    replica: str | None = Field(description="The TTSWorker replica that spoke it.")
    words: list[SpokenWord]
    captions: str | None = Field(None, description="WebVTT or SRT, with `captions`.")


class SpeechFile(SpeechFacts):
    """timestamps / captions: the audio itself; save: its download URL instead."""
    audio: str | None = Field(None, description="The audio file in base64 (timestamps or captions, not save).")
    media_type: str | None = Field(None, description="MIME type of `audio`.")
    url: str | None = Field(None, description="Where to download the saved file (save).")


SPEECH_FILE_EXAMPLE = {"audio": "UklGRiQAAABXQVZF...", "media_type": "audio/wav", "format": "wav",
                       "duration_s": 0.96, "voice": VOICE_ID_EXAMPLE, "gpu": 0, "replica": "abc123",
                       "words": [{"word": "Hello", "start_s": 0.08, "end_s": 0.4},
                                 {"word": "there.", "start_s": 0.4, "end_s": 0.8}]}


class AudioEvent(BaseModel):
    type: Literal["audio"]
    audio: str = Field(description="The next piece of the audio file, base64.")


class WordEvent(SpokenWord):
    type: Literal["word"]


class DoneEvent(SpeechFacts):
    type: Literal["done"]


class ErrorEvent(BaseModel):
    type: Literal["error"]
    error: ErrorDetail


class TTSEvent(RootModel[Annotated[AudioEvent | WordEvent | DoneEvent | ErrorEvent, Field(discriminator="type")]]):
    """The `data` of one Server-Sent Event of POST /api/tts (stream with timestamps or captions),
    by `type`: audio, word (as soon as the word is known, usually before its audio), then done,
    or error if the synthesis fails midway."""


class Health(BaseModel):
    status: Literal["ok"]


class WorkerDeployment(BaseModel):
    model_config = {"extra": "allow"}  # under worker_deployments: also `deployment` and `model`

    status: str = Field(description="Serve's status of the TTSWorker deployment (HEALTHY, UPDATING, ...).")
    message: str
    replicas: dict[str, int] = Field(description="Replica count by state.")


class ModelReadiness(BaseModel):
    ready: bool
    reason: str | None
    deployment: str = Field(description="The model's worker deployment.")
    model: str = Field(description="The model's id (its repo, or local/<folder>).")
    replicas: int


class Readiness(BaseModel):
    """The default model's answer, and each model's under `models`."""
    ready: bool
    reason: str | None = Field(description="Why not ready (the last model-load error, ...).")
    worker_deployment: WorkerDeployment
    replicas: int | None = Field(description="Replicas reporting (null: the registry does not answer).")
    models: dict[str, ModelReadiness] | None = Field(description="Each model's answer, by name (null: the "
                                                                 "registry does not answer).")


class NodeFacts(BaseModel):
    age_s: float
    reads: int
    ttl_s: float


class ReplicaStatus(BaseModel):
    """A TTSWorker replica as its last report says (every second)."""
    model_config = {"extra": "allow"}

    replica: str | None
    node: str | None
    node_id: str | None
    gpu: int | None
    model_name: str = Field(description="The model it serves (its name in the model table).")
    deployment: str = Field(description="Its worker deployment.")
    state: Literal["unloaded", "loading", "ready", "offloaded", "failed"]
    error: str | None
    device: str | None
    idle_seconds: float | None
    offload_after_s: float | None
    active: int | None
    queued: int | None
    max_batch_size: int | None = Field(description="Slots it admits: the configured count, or what `auto` chose.")
    free_slots: int | None
    recent_busy_slots: list[int] | None
    slot_sizing: dict[str, Any] | None = Field(None, description="With `max_batch_size: auto`: the chosen slots, "
                                               "their p95 tick, the tick budget (realtime_margin x 80 ms), the "
                                               "memory bound and each candidate measured.")
    audio_underruns: int | None = Field(None, description="Streams whose generated audio fell behind their "
                                        "real-time playback, since the replica started.")


class GpuStatus(BaseModel):
    nodes: list[dict[str, Any]] = Field(description="Every alive node: its GPUs (NVML facts where available).")
    total_gpus: int
    total_ray_gpus: float
    node_facts: NodeFacts = Field(description="How fresh `nodes` is (shared by every caller for a few seconds).")
    worker_deployment: WorkerDeployment = Field(description="The default model's worker deployment.")
    worker_deployments: dict[str, WorkerDeployment] = Field(description="Each model's, by name (with its "
                                                                        "`deployment` and `model` id).")
    replicas: list[ReplicaStatus]


class OffloadResult(BaseModel):
    requested: int = Field(description="Replicas asked to offload.")
    results: list[dict[str, Any]] = Field(description="Each replica's answer (gpu, replica, result).")
    pending: list[str] | None = Field(None, description="Replicas that had not answered in time.")
    note: str | None = None


class Voice(BaseModel):
    id: str = Field(description="The value to pass as `voice`.")
    group: str | None = Field(description="Collection the voice comes from (e.g. expresso, vctk).")
    language: str | None = Field(description="Language code when known (e.g. en, fr).")
    source: str = Field(description="'local' (a directory of the service) or 'repo' (the voice repository).")


class UploadedVoice(BaseModel):
    id: str = Field(description="`clip:` and 16 hex digits: a value for `voice` with its model.")
    name: str
    model: str = Field(description="The cloning model it speaks with (its name).")
    duration_s: float = Field(description="Seconds of the clip kept as the model's prompt.")
    created: int = Field(description="Unix seconds.")


class VoiceList(BaseModel):
    default: str = Field(description="The voice used when a request names none.")
    voices: list[Voice]
    model: str = Field(description="The model these voices are for (its name).")
    models: list[str] = Field(description="Every model of the service, the default one first: a value for "
                                          "`model`.")
    uploaded: list[UploadedVoice] = Field(default_factory=list, description="Your uploaded voices of this model "
                                          "(POST /api/voices); other keys' voices are never listed.")
    uploads_allowed: bool = Field(True, description="Whether this service takes voice uploads (POST /api/voices): "
                                                    "false when it has no API keys and does not allow anonymous "
                                                    "uploads (an upload is then a 403 uploads_disabled).")
    attribution: str | None = Field(None, description="The model's licence attribution, where it asks for one.")


class VoiceListing(VoiceList):
    warning: str | None = Field(None, description="Why the voice repository could not be listed, if so.")


class ModelInfo(BaseModel):
    name: str = Field(description="Its name in the app's model table: a value for `model`.")
    id: str = Field(description="The hub repo, or local/<folder>: a value for `model` too.")
    kind: str = Field(description="tts-embedding-voices, tts-audio-prompt or stt.")
    default: bool = Field(description="The model a request naming none gets.")
    test_model: bool
    engine: str | None
    default_voice: str
    default_cfg_coef: float
    cfg_coef: dict[str, Any] | None = Field(description="The cfg_coef values it takes, as JSON Schema keywords of a "
                                                        "number (minimum, maximum, multipleOf or enum); null: none.")


class Info(BaseModel):
    model: str = Field(description="The hub repo, or local/<folder>.")
    test_model: bool = Field(description="A random-weight test model (its audio is noise) or a scripted fake.")
    engine: str | None = Field(description="A scripted fake engine runs (tests only), else null.")
    version: str
    default_voice: str
    default_cfg_coef: float
    max_text_chars: int
    models: list[ModelInfo] = Field(description="Every model of the service (the fields above are the default one's).")
