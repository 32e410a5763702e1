"""The TTS engine: moshi's TTSModel driven as a slot machine, many requests streaming at once.

`TTSEngine.prepare()` validates a request and turns it into a `SynthesisJob` (words tokenized,
voice resolved and loaded: everything that may touch the disk or the hub, off the generation
thread). `admit(job)` puts a job in a free row of the persistent `SlotBatch`; from then on every
`tick()` advances all rows that can speak by one step, and each job's sink receives its 80 ms
frames and word timestamps as they are made. A job joins at the next tick, whatever the others are
saying; rows still inside their 16-step audio delay get extra cheap text-only steps so that they
start speaking after a few ticks (`CATCH_UP_STEPS`).

Rows, admission and the order of a tick are the engine protocol's (`SlotEngine`, base.py); what
moshi does in them is here.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import numbers
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from . import loading
from ..settings import EngineSettings
from .base import InvalidRequest, SlotEngine, SpeechJob, clean_text, starting_text
from .placement import move_modules
from ..protocol import AudioChunk, SynthesisDone, SynthesisEvent, SynthesisFailed, SynthesisRequest
from .voices import VoiceCatalog, VoiceError, validate_voice_embedding

if TYPE_CHECKING:  # slots.py imports torch: the ingress imports this module without it
    from .slots import SlotBatch, Voice

log = logging.getLogger(__name__)

# moshi's own decoding drops the first two decoded frames ("a little click at the beginning").
SKIPPED_FRAMES = 2
# Text-only steps given, per tick, to rows still inside their audio delay. They skip the depformer
# (most of a step's cost), so a newcomer reaches its first audio in about 16 / (1 + N) + 5 ticks
# instead of 21, while the rows already speaking wait N cheap steps per tick
# (benchmarks/engine_speed.py measures both sides).
CATCH_UP_STEPS = 2
# Resolved voices kept: name -> file (no hub call per request), file -> embedding (host), and
# embedding -> cross-attention K/V on the device (~80 MB each for the real model in bf16).
VOICE_PATHS_CACHED = 1024
VOICE_EMBEDDINGS_CACHED = 256
VOICE_KV_CACHED = 8


def voice_from_embedding(values: object, shape: object) -> Voice:
    """A client-sent speaker embedding (WebSocket `Voice` message), validated."""
    import torch

    from .slots import Voice

    array = validate_voice_embedding(values, shape)
    key = "embedding:" + hashlib.sha256(array.tobytes()).hexdigest()[:16]
    return Voice(key, torch.from_numpy(array))


@dataclass(kw_only=True, eq=False)
class SynthesisJob(SpeechJob):
    """One request: its words, voice and conditioning, and (once admitted) its row's progress.
    Words streamed in while it runs are moshi `Entry`s (`feed`); `input_complete` is False while
    a streamed text may still grow."""

    request: SynthesisRequest
    sink: Callable[[SynthesisEvent], None]
    voice: Voice
    cfg_coef: float | None
    entries: list  # moshi `Entry`s known when prepared (later words go straight to `state`)
    text_chars: int = 0
    has_words: bool = False
    min_steps: int = 0          # a lower bound on the steps the text needs (for max_audio_s)
    max_steps: int = 0          # a runaway guard: no text needs more steps than this
    state: object = None        # moshi tts.State: the row's text state machine
    # The model step the row started at: 0, or P for a voice prompt of P frames (the cloning
    # model), whose frames are not the request's audio and whose steps do not count in its times.
    prompt_steps: int = 0
    frames_decoded: int = 0
    _words_seen: int = 0


class _LRU(collections.OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or_make(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class TTSEngine(SlotEngine):
    """Kyutai's 1.6B TTS (`kyutai/tts-1.6b-en_fr`: voices are speaker embeddings, cfg a
    conditioning input) on one device."""

    fixed_n_q = False  # `n_q` is a setting: fewer codebooks, faster and rougher

    def __init__(self, settings: EngineSettings, device: str):
        super().__init__(settings, device)
        if device == "cpu" and settings.cpu_threads:
            import torch

            torch.set_num_threads(settings.cpu_threads)
        self.tts = loading.load_tts_model(settings, device, fixed_n_q=self.fixed_n_q)
        self.voices = VoiceCatalog(loading.local_voice_dirs(settings), loading.voice_repo(settings),
                                   suffix=self.tts.voice_suffix, hub_timeout_s=settings.hub_timeout_s,
                                   hub_stall_s=settings.hub_stall_s, clips=not self.tts.multi_speaker)
        self.frame_rate = float(self.tts.mimi.frame_rate)
        self._voice_paths = _LRU(VOICE_PATHS_CACHED)
        self._embeddings = _LRU(VOICE_EMBEDDINGS_CACHED)
        self._host_lock = threading.Lock()  # the two caches above, shared by preparing threads
        self._conditioning = _LRU(VOICE_KV_CACHED)
        self.slots: SlotBatch | None = None
        self._synthesize_lock = threading.Lock()
        # Page-locked host copies of the weights, kept across offloads (CUDA only).
        self._pinned: dict = {}

    # ---- placement -----------------------------------------------------------------------
    def _move_weights(self, device: str) -> None:
        """Moves the LM and the codec (placement.py: through pinned buffers to the host). The
        cached K/V lives on the old device: dropped (the slots, and CUDA graphs with them, were
        closed by `move_to`)."""
        self._conditioning.clear()
        move_modules({"lm": self.tts.lm, "mimi": self.tts.mimi}, device, self._pinned)
        provider = self.tts.lm.condition_provider
        if provider is not None:
            provider.device = device
            for conditioner in provider.conditioners.values():
                conditioner.device = device

    @property
    def batch_size(self) -> int:
        return 0 if self.slots is None else self.slots.batch_size

    def _build_slots(self, rows: int) -> None:
        import torch

        from .slots import SlotBatch

        with torch.no_grad(), self._compile_setting():
            self.slots = SlotBatch(self.tts, rows, self._on_text)

    def close_slots(self) -> None:
        if self.slots is not None:
            self.slots.close()
            self.slots = None

    # ---- requests (any thread) -------------------------------------------------------------
    @property
    def valid_cfg_coefs(self) -> list[float]:
        return sorted(self.tts.valid_cfg_conditionings)

    def _cfg_coef(self, request: SynthesisRequest) -> float | None:
        cfg_coef = self.settings.default_cfg_coef if request.cfg_coef is None else request.cfg_coef
        valid = self.valid_cfg_coefs
        # bool is an int to Python, and a string would fail deep inside the model: refuse both.
        if isinstance(cfg_coef, bool) or not isinstance(cfg_coef, numbers.Real) or (
                valid and float(cfg_coef) not in valid):
            raise InvalidRequest(f"cfg_coef must be one of {', '.join(f'{v:g}' for v in valid)}"
                                 if valid else "cfg_coef must be a number", param="cfg_coef")
        return float(cfg_coef) if valid else None

    def _voice(self, request: SynthesisRequest) -> tuple[str, Voice]:
        if request.voice_embedding is not None:
            return "custom", voice_from_embedding(request.voice_embedding, request.voice_shape)
        name = request.voice or self.settings.default_voice
        path = self._voice_path(name)
        with self._host_lock:
            return name, self._embeddings.get_or_make(str(path), lambda: _load_voice(path))

    def _voice_path(self, name: str):
        """A voice's file, resolved once per name (may download: never on the generation thread)."""
        with self._host_lock:
            path = self._voice_paths.get(name)
        if path is None:
            path = self.voices.resolve(name)
        with self._host_lock:
            self._voice_paths.get_or_make(name, lambda: path)
        return path

    def entries_for(self, text: str, first: bool = True) -> list:
        """moshi entries for `text`. A continuation (`first=False`) gets no speaker token."""
        from moshi.models.tts import script_to_entries

        tts = self.tts
        return script_to_entries(tts.tokenizer, tts.machine.token_ids, tts.mimi.frame_rate, [text],
                                 multi_speaker=tts.multi_speaker and first,
                                 padding_between=self.settings.padding_between)

    def _step_bounds(self, entries: list) -> tuple[int, int]:
        """(at least, at most) the steps these entries take. A word of n tokens takes at least
        max(n, its padding) steps; moshi forces a new word after `max_padding` pads."""
        machine = self.tts.machine
        least = sum(max(len(e.tokens), e.padding, 1) for e in entries)
        most = sum(len(e.tokens) + e.padding + machine.max_padding + 2 for e in entries)
        return least, most

    def _budget(self, job: SynthesisJob, entries: list) -> None:
        least, most = self._step_bounds(entries)
        job.min_steps += least
        job.max_steps += most
        seconds = job.min_steps / self.frame_rate
        if seconds > self.settings.max_audio_s:
            raise InvalidRequest(
                f"text asks for at least {seconds:.0f} s of audio (words and <break> pauses); "
                f"the limit is {self.settings.max_audio_s:g} s (max_audio_s)", param="text")

    def prepare(self, request: SynthesisRequest, sink: Callable[[SynthesisEvent], None],
                is_cancelled: Callable[[], bool] = lambda: False) -> SynthesisJob:
        """Validates the request and builds its job. Raises InvalidRequest / VoiceError."""
        streamed = request.stream_text
        text = starting_text(request, self.settings.max_text_chars)
        cfg_coef = self._cfg_coef(request)
        voice_name, voice = self._voice(request)
        entries = self.entries_for(text) if text else []
        if not entries and not streamed:
            raise InvalidRequest("text has no words to speak")
        machine = self.tts.machine
        job = SynthesisJob(request=request, voice_name=voice_name, voice=voice, cfg_coef=cfg_coef,
                           entries=entries, sink=sink, is_cancelled=is_cancelled, input_complete=not streamed,
                           text_chars=len(text), has_words=bool(entries),
                           max_steps=machine.initial_padding + self.tts.delay_steps + self.tts.final_padding
                           + SKIPPED_FRAMES + 8)
        self._budget(job, entries)
        return job

    def extend(self, job: SynthesisJob, text: str | None, complete: bool = False) -> None:
        """More words for a streamed job (any thread). Raises InvalidRequest for a text that is
        not acceptable or that makes the whole too long."""
        entries = []
        if text is not None and text.strip():
            with job._lock:
                job.text_chars += len(text)
                first, job.has_words = not job.has_words, True
            if job.text_chars > self.settings.max_text_chars:
                raise InvalidRequest(f"the text of one session is limited to {self.settings.max_text_chars} "
                                     f"characters (max_text_chars)")
            entries = self.entries_for(clean_text(text, self.settings.max_text_chars), first=first)
            self._budget(job, entries)
        job.feed(entries, complete)

    # ---- the generation thread ---------------------------------------------------------------
    def _conditioning_for(self, job: SynthesisJob):
        return self._conditioning.get_or_make(
            (job.voice.key, job.cfg_coef),
            lambda: self.slots.conditioning(job.voice, job.cfg_coef))

    def _start_row(self, row: int, job: SynthesisJob) -> None:
        import torch

        with torch.no_grad():
            cond_sum, kv = self._conditioning_for(job)
            self.slots.start_row(row, cond_sum, kv)
        job.state = self.tts.machine.new_state(job.entries)

    def runnable(self, job: SynthesisJob) -> bool:
        """A row steps when its text is complete, or when moshi cannot need a word it lacks:
        it is still feeding a word's tokens or forced pauses, or has its look-ahead words queued."""
        if job.input_complete:
            return True
        state = job.state
        if state.queued or state.forced_padding > 0:
            return True
        ahead = self.tts.machine.second_stream_ahead
        return sum(1 for entry in state.entries if entry.tokens) > ahead

    def _accept_input(self, job: SynthesisJob, incoming: list) -> None:
        job.state.entries.extend(incoming)

    def _advance(self, rows: list[int]) -> None:
        """One step of every runnable row, plus catch-up steps for newcomers."""
        import torch

        delay = self.slots.audio_delay_steps
        with torch.no_grad(), self._compile_setting():
            catching_up = [row for row in rows if self._jobs[row].steps < delay]
            self._step(rows, text_only=len(catching_up) == len(rows))
            for extra in range(self._extra_steps()):
                catching_up = [row for row in catching_up if row in self._jobs and self._needs_extra(row, extra)]
                if not catching_up:
                    break
                self._step(catching_up, text_only=True)

    def _extra_steps(self) -> int:
        """Text-only steps a tick may add after its main step (`_needs_extra` says for whom)."""
        return CATCH_UP_STEPS

    def _needs_extra(self, row: int, extra: int) -> bool:
        """Whether `row`, inside its audio delay at the tick's start, takes extra step `extra`."""
        job = self._jobs[row]
        return extra < CATCH_UP_STEPS and job.steps < self.slots.audio_delay_steps and self.runnable(job)

    def _on_text(self, rows: list[int], tokens: list[int]) -> list[int]:
        """The sampled text tokens of `rows` go through each row's state machine."""
        machine = self.tts.machine
        for row in rows:
            job = self._jobs[row]
            tokens[row], _ = machine.process(job.prompt_steps + job.steps, job.state, tokens[row])
            transcript = job.state.transcript
            for text, step in transcript[job._words_seen:]:
                job.word_started(text, max(0, step - job.prompt_steps - SKIPPED_FRAMES) / self.frame_rate)
            job._words_seen = len(transcript)
        return tokens

    def _step(self, rows: list[int], text_only: bool) -> None:
        frame = self.slots.step(rows, text_only)
        self._count_step(rows)
        if text_only:
            return
        speaking = [row for row in rows if self._jobs[row].steps > self.slots.first_audio_step]
        if not speaking:
            return
        pcm = self.slots.decode(frame, speaking).numpy()
        for index, row in enumerate(speaking):
            self._emit(self._jobs[row], pcm[index])

    def _emit(self, job: SynthesisJob, pcm: np.ndarray) -> None:
        job.frames_decoded += 1
        end_step = job.state.end_step
        if end_step is not None:
            end_step -= job.prompt_steps
        if job.frames_decoded > SKIPPED_FRAMES and (end_step is None or job.frames_out < end_step):
            job.speak(pcm, self.ticks)
        if (end_step is not None and job.frames_out >= end_step) or job.steps >= job.max_steps:
            if end_step is None:
                log.warning("request %s stopped at its step limit (%d)", job.request.request_id, job.max_steps)
            self._release(job)
            job.finish()

    # ---- whole requests, for simple callers (tests, benchmarks) -------------------------------
    def synthesize(self, requests: list[SynthesisRequest], batch_size: int | None = None) -> list[dict]:
        """Runs whole requests (sharing the slots) and returns {audio, words, duration_s, voice}.
        Callers on several threads take turns."""
        with self._synthesize_lock:
            return self._synthesize(requests, batch_size)

    def _synthesize(self, requests: list[SynthesisRequest], batch_size: int | None) -> list[dict]:
        results = [{"audio": [], "done": None} for _ in requests]

        def sink_for(result):
            def sink(event):
                if isinstance(event, AudioChunk):
                    result["audio"].append(event.pcm)
                elif isinstance(event, (SynthesisDone, SynthesisFailed)):
                    result["done"] = event
            return sink

        waiting = [self.prepare(r, sink_for(res)) for r, res in zip(requests, results)]
        if batch_size or self.slots is None:
            self.ensure_slots(batch_size or len(requests))
        while waiting or self._jobs:
            while waiting and self.admit(waiting[0]):
                waiting.pop(0)
            self.tick()
        for result in results:
            if isinstance(result["done"], SynthesisFailed):
                raise RuntimeError(result["done"].message)
        return [{
            "audio": np.concatenate(res["audio"]) if res["audio"] else np.zeros(0, np.float32),
            "words": res["done"].words, "duration_s": res["done"].duration_s, "voice": res["done"].voice,
        } for res in results]


def _load_voice(path) -> Voice:
    from safetensors.torch import load_file

    from .slots import Voice

    embedding = load_file(str(path), device="cpu")["speaker_wavs"].float()
    if embedding.dim() != 3:
        raise VoiceError(f"voice file {path.name} does not hold a speaker embedding")
    return Voice(str(path), embedding)


__all__ = ["TTSEngine", "SynthesisJob", "InvalidRequest", "VoiceError", "clean_text", "voice_from_embedding"]
