"""The TTS engine: moshi's TTSModel, fed batches of requests, streaming audio frame by frame.

`TTSEngine.prepare()` validates a request and turns it into a `SynthesisJob` (text split in pieces,
voice resolved, conditioning built). `TTSEngine.run_round(jobs)` generates the next piece of every
job in ONE batched `tts.generate` call and pushes 80 ms frames and word timestamps to each job's
sink as they are produced. `synthesize()` runs whole requests to the end for simple callers.
"""

from __future__ import annotations

import logging
import numbers
import threading
import unicodedata
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import loading
from .settings import EngineSettings
from .synthesis import (FRAME_SAMPLES, SAMPLE_RATE, AudioChunk, SynthesisDone, SynthesisEvent,
                        SynthesisRequest, Word, WordSpoken)
from .text_chunks import normalize_breaks, split_text
from .voices import VoiceCatalog, VoiceError

log = logging.getLogger(__name__)

# moshi's own decoding drops the first two decoded frames ("a little click at the beginning").
_SKIPPED_FRAMES = 2


class InvalidRequest(ValueError):
    """The caller's request cannot be synthesized; the message is safe to show to them, and
    `param` names the field at fault."""

    def __init__(self, message: str, param: str = "text"):
        super().__init__(message)
        self.param = param


class _GenerationAborted(Exception):
    """Raised from the frame callback when every job of the batch was cancelled."""


@dataclass
class SynthesisJob:
    request: SynthesisRequest
    voice: str
    pieces: list[list]  # moshi `Entry` lists, one per text piece
    attributes: object  # moshi ConditionAttributes
    sink: Callable[[SynthesisEvent], None]
    is_cancelled: Callable[[], bool] = lambda: False
    next_piece: int = 0
    samples_out: int = 0
    words: list[Word] = field(default_factory=list)
    _pending_word: tuple[str, float] | None = None

    @property
    def finished(self) -> bool:
        return self.next_piece >= len(self.pieces)

    @property
    def seconds_out(self) -> float:
        return self.samples_out / SAMPLE_RATE

    def word_started(self, text: str, start_s: float) -> None:
        self._close_pending_word(start_s)
        self._pending_word = (text, start_s)

    def _close_pending_word(self, end_s: float) -> None:
        if self._pending_word is not None:
            text, start_s = self._pending_word
            word = Word(text, start_s, max(start_s, end_s))
            self.words.append(word)
            self.sink(WordSpoken(word))
            self._pending_word = None

    def piece_finished(self) -> None:
        self._close_pending_word(self.seconds_out)
        self.next_piece += 1


def _recording_state_machine(machine):
    """A copy of moshi's StateMachine that remembers the states of the current generation, so
    words can be time-stamped while it runs (moshi only returns them at the end)."""
    base = type(machine)

    class RecordingStateMachine(base):
        def new_state(self, entries):
            state = super().new_state(entries)
            self.recorded_states.append(state)
            return state

    recording = RecordingStateMachine(
        token_ids=machine.token_ids, second_stream_ahead=machine.second_stream_ahead,
        max_padding=machine.max_padding, initial_padding=machine.initial_padding)
    recording.recorded_states = []
    return recording


def clean_text(text: object, max_chars: int) -> str:
    if not isinstance(text, str):
        raise InvalidRequest("text must be a string")
    if "\x00" in text:
        raise InvalidRequest("text must not contain NUL characters")
    # Control characters (other than whitespace) carry nothing to say.
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text).strip()
    if not text:
        raise InvalidRequest("text must not be empty")
    if len(text) > max_chars:
        raise InvalidRequest(f"text is {len(text)} characters long; the limit is {max_chars}")
    try:
        return normalize_breaks(text)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


class TTSEngine:
    """One loaded model on one device. Not thread-safe: one generation at a time (the worker's
    scheduler thread owns it)."""

    def __init__(self, settings: EngineSettings, device: str):
        self.settings = settings
        self.device = device
        if device == "cpu" and settings.cpu_threads:
            import torch

            torch.set_num_threads(settings.cpu_threads)
        self.tts = loading.load_tts_model(settings, device)
        self.tts.machine = _recording_state_machine(self.tts.machine)
        self.voices = VoiceCatalog(loading.local_voice_dirs(settings), loading.voice_repo(settings),
                                   suffix=self.tts.voice_suffix, hub_timeout_s=settings.hub_timeout_s)
        self.frame_rate = float(self.tts.mimi.frame_rate)
        self._lock = threading.Lock()

    # ---- placement -----------------------------------------------------------------------
    def move_to(self, device: str) -> None:
        """Moves the weights (LM and codec) to `device`; used to offload to host RAM and back."""
        import torch

        with self._lock:
            self.tts.lm.to(device)
            self.tts.mimi.to(device)
            provider = self.tts.lm.condition_provider
            if provider is not None:
                provider.device = device
                for conditioner in provider.conditioners.values():
                    conditioner.device = device
            if device == "cpu" and torch.cuda.is_available():
                torch.cuda.empty_cache()

    # ---- requests ------------------------------------------------------------------------
    @property
    def valid_cfg_coefs(self) -> list[float]:
        return sorted(self.tts.valid_cfg_conditionings)

    def prepare(self, request: SynthesisRequest, sink: Callable[[SynthesisEvent], None],
                is_cancelled: Callable[[], bool] = lambda: False) -> SynthesisJob:
        """Validates the request and builds its job. Raises InvalidRequest / VoiceError."""
        text = clean_text(request.text, self.settings.max_text_chars)
        voice = request.voice or self.settings.default_voice
        voice_path = self.voices.resolve(voice)
        cfg_coef = self.settings.default_cfg_coef if request.cfg_coef is None else request.cfg_coef
        valid = self.valid_cfg_coefs
        # bool is an int to Python, and a string would fail deep inside the scheduler: refuse both.
        if isinstance(cfg_coef, bool) or not isinstance(cfg_coef, numbers.Real) or (
                valid and float(cfg_coef) not in valid):
            raise InvalidRequest(f"cfg_coef must be one of {', '.join(f'{v:g}' for v in valid)}"
                                 if valid else "cfg_coef must be a number", param="cfg_coef")
        cfg_coef = float(cfg_coef)
        pieces = [self.tts.prepare_script([piece], padding_between=self.settings.padding_between)
                  for piece in split_text(text, self.settings.chunk_max_chars)]
        pieces = [entries for entries in pieces if entries]
        if not pieces:
            raise InvalidRequest("text has no words to speak")
        attributes = self.tts.make_condition_attributes(
            [voice_path], cfg_coef=cfg_coef if valid else None)
        return SynthesisJob(request=request, voice=voice, pieces=pieces, attributes=attributes,
                            sink=sink, is_cancelled=is_cancelled)

    def _step_budget(self, entries: list) -> int:
        """Steps after which moshi's state machine has surely consumed every word (it forces a
        new word after `max_padding` pads), plus the audio delay: generation never cuts a text."""
        machine = self.tts.machine
        per_words = sum(len(e.tokens) + e.padding + machine.max_padding + 2 for e in entries)
        return (machine.initial_padding + per_words + self.tts.delay_steps
                + self.tts.final_padding + _SKIPPED_FRAMES + 8)

    # ---- generation ----------------------------------------------------------------------
    def run_round(self, jobs: list[SynthesisJob]) -> None:
        """Generates the next text piece of every job, as one batch."""
        import torch

        jobs = [job for job in jobs if not job.finished]
        if not jobs:
            return
        with self._lock, torch.no_grad():
            self._generate_batch(jobs)
        for job in jobs:
            job.piece_finished()
            if job.finished:
                job.sink(SynthesisDone(request_id=job.request.request_id, voice=job.voice,
                                       duration_s=round(job.seconds_out, 3), words=list(job.words),
                                       text_chunks=len(job.pieces)))

    def _generate_batch(self, jobs: list[SynthesisJob]) -> None:
        tts = self.tts
        batch = len(jobs)
        entries = [job.pieces[job.next_piece] for job in jobs]
        tts.max_gen_length = max(self._step_budget(e) for e in entries)
        tts.machine.recorded_states = []
        states = tts.machine.recorded_states
        words_seen = [0] * batch
        frames_out = [0] * batch
        decoded = 0
        offsets = [job.seconds_out for job in jobs]

        def on_frame(frame):
            nonlocal decoded
            if all(job.is_cancelled() for job in jobs):
                raise _GenerationAborted()
            for b, state in enumerate(states):
                for text, step in state.transcript[words_seen[b]:]:
                    start = offsets[b] + max(0, step - _SKIPPED_FRAMES) / self.frame_rate
                    jobs[b].word_started(text, start)
                words_seen[b] = len(state.transcript)
            if (frame == -1).any():
                return  # audio not started yet (text runs `delay_steps` ahead)
            pcm = tts.mimi.decode(frame[:, 1:]).clamp(-1, 1)
            decoded += 1
            if decoded <= _SKIPPED_FRAMES:
                return
            pcm = pcm[:, 0].float().cpu().numpy()
            for b, job in enumerate(jobs):
                end_step = states[b].end_step
                if job.is_cancelled() or (end_step is not None and frames_out[b] >= end_step):
                    continue
                frames_out[b] += 1
                job.samples_out += FRAME_SAMPLES
                job.sink(AudioChunk(pcm[b].copy()))

        try:
            with tts.mimi.streaming(batch):
                tts.generate(entries, [job.attributes for job in jobs], on_frame=on_frame)
        except _GenerationAborted:
            log.info("generation aborted: every request of the batch was cancelled")

    def synthesize(self, requests: list[SynthesisRequest]) -> list[dict]:
        """Runs whole requests (batched) and returns {audio, words, duration_s, voice} for each."""
        results = [{"audio": [], "words": [], "done": None} for _ in requests]

        def sink_for(result):
            def sink(event):
                if isinstance(event, AudioChunk):
                    result["audio"].append(event.pcm)
                elif isinstance(event, SynthesisDone):
                    result["done"] = event
            return sink

        jobs = [self.prepare(r, sink_for(res)) for r, res in zip(requests, results)]
        while not all(job.finished for job in jobs):
            self.run_round(jobs)
        return [{
            "audio": np.concatenate(res["audio"]) if res["audio"] else np.zeros(0, np.float32),
            "words": res["done"].words, "duration_s": res["done"].duration_s, "voice": res["done"].voice,
        } for res in results]


__all__ = ["TTSEngine", "SynthesisJob", "InvalidRequest", "VoiceError", "clean_text"]
