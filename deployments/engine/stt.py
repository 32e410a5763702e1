"""The STT engine: Kyutai's speech-to-text models (`kyutai/stt-1b-en_fr`, `kyutai/stt-2.6b-en`)
driven as a slot machine, many streams listened to at once.

`prepare` validates a `TranscriptionRequest` into a `ListeningJob`; `admit` puts it in a free row
of the persistent `ListeningBatch` (stt_slots.py), reset for it; each `tick` then gives every
row that has a whole frame buffered (or whose input ended) one step: one 80 ms frame through
Mimi's encoder and the LM, one text token out. Rows without a frame are frozen (`runnable`), so
the loop is not clocked to real time: a client that sends faster than real time is heard faster.

A row's life, in steps: the model's silence prefix (`audio_silence_prefix_seconds`: 0 for the 1B,
1 s for the 2.6B), the stream's audio frame by frame (the last one padded with silence), then,
once the input has ended, `ceil(audio_delay_seconds * 12.5)` frames of silence that flush the words
still inside the model's delay; then `TranscriptionDone`. Words and their times follow the rule of
Kyutai's Rust server (`WordRule`): `WordBegun` once a word's text is complete, `WordHeard` once its
end is known; models with voice-activity heads also send `PauseHeard` per step. The job is told
`Listening` when it takes its row, and a client's marker (`StreamMarker`, sent between its audio)
comes back once the model has heard every frame before it, delay included.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import loading
from ..protocol import FRAME_RATE, FRAME_SAMPLES, PauseHeard, WordBegun
from ..settings import EngineSettings
from .base import SlotEngine, TranscriptionJob, listening_input, listening_sizing_request, transcription_job
from .placement import move_modules

log = logging.getLogger(__name__)

BOUNDARY_TOKEN = 0  # a word boundary: stamps a time
PAD_TOKEN = 3       # nothing heard; closes a word as a boundary does, without a time


@dataclass(kw_only=True, eq=False)
class ListeningJob(TranscriptionJob):
    """One stream: its audio (TranscriptionJob) and, once admitted, its row's word state."""

    prefix_left: int = 0      # silence frames still to feed before its audio
    flush_left: int = 0       # silence frames still to feed after its audio ended
    pieces: list = None       # text tokens of the word being heard
    last_stop: float = 0.0    # time of the last boundary (model time, prefix included)
    unended: bool = False     # a word was closed and waits for a boundary to end it


class WordRule:
    """Words from a row's text tokens, as Kyutai's Rust server makes them (moshi-server, asr):
    with step k counted from 1 and D = `asr_delay_in_tokens` (int(audio_delay_seconds * 12.5)),
    tokens before step D are ignored; after, a boundary (0) or pad (3) token closes the word whose
    pieces came since the last close, which starts at the last boundary's time; a boundary at step
    k stamps time (k - D) / 12.5 and ends the last closed word if it has no end yet. Times are
    shifted back by the silence prefix, so that they are times in the client's audio."""

    def __init__(self, delay_tokens: int, prefix_s: float, decode: Callable[[list[int]], str]):
        self.delay_tokens = delay_tokens
        self.prefix_s = prefix_s
        self.decode = decode

    def heard(self, job: ListeningJob, token: int) -> None:
        k = job.steps
        if k < self.delay_tokens:
            return
        if token in (BOUNDARY_TOKEN, PAD_TOKEN):
            if job.pieces:
                if job.unended:  # closed before and never ended by a boundary: ends now
                    job._close_pending_word(self._time(k))
                job._pending_word = (self.decode(job.pieces), job.last_stop - self.prefix_s)
                job.pieces, job.unended = [], True
                job.sink(WordBegun(*job._pending_word))  # its end comes with its WordHeard
        else:
            job.pieces.append(token)
        if token == BOUNDARY_TOKEN:
            if job.unended:
                job._close_pending_word(self._time(k))
                job.unended = False
            job.last_stop = (k - self.delay_tokens) / FRAME_RATE

    def _time(self, k: int) -> float:
        return (k - self.delay_tokens) / FRAME_RATE - self.prefix_s


class STTEngine(SlotEngine):
    """An STT model on one device: streams in, words out."""

    def __init__(self, settings: EngineSettings, device: str):
        super().__init__(settings, device)
        import torch

        if device == "cpu" and settings.cpu_threads:
            torch.set_num_threads(settings.cpu_threads)
        info = loading.checkpoint_info(settings)
        if info.lm_config and info.lm_config.get("dep_q", 0) != 0:
            raise ValueError("this checkpoint generates audio (dep_q > 0): it is a TTS model, not STT")
        self.mimi = info.get_mimi(device=device)
        self.lm = info.get_moshi(device=device, dtype=loading.dtype_for(device))
        self.tokenizer = info.get_text_tokenizer()
        stt_config = info.stt_config or {}
        self.delay_s = float(stt_config.get("audio_delay_seconds", 0.0))
        self.prefix_frames = math.ceil(float(stt_config.get("audio_silence_prefix_seconds", 0.0)) * FRAME_RATE)
        self.flush_frames = math.ceil(self.delay_s * FRAME_RATE)
        self.rule = WordRule(int(self.delay_s * FRAME_RATE), self.prefix_frames / FRAME_RATE, self.tokenizer.decode)
        self.vad_heads = len(self.lm.extra_heads)
        self.slots = None
        self._pinned: dict = {}

    # ---- slots and placement -------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return 0 if self.slots is None else self.slots.batch_size

    def _build_slots(self, rows: int) -> None:
        import torch

        from .stt_slots import ListeningBatch

        with torch.no_grad(), self._compile_setting():
            self.slots = ListeningBatch(self.mimi, self.lm, rows)

    def close_slots(self) -> None:
        if self.slots is not None:
            self.slots.close()
            self.slots = None

    def _move_weights(self, device: str) -> None:
        move_modules({"lm": self.lm, "mimi": self.mimi}, device, self._pinned)

    # ---- requests (any thread) -----------------------------------------------------------
    def prepare(self, request, sink: Callable, is_cancelled: Callable[[], bool] = lambda: False) -> ListeningJob:
        return transcription_job(request, sink, is_cancelled, ListeningJob)

    def sizing_request(self):
        return listening_sizing_request()

    def extend(self, job: ListeningJob, more, complete: bool = False) -> None:
        """More audio (float32 PCM), or a StreamMarker after the audio sent so far."""
        job.feed(listening_input(more), complete)

    # ---- the generation thread -----------------------------------------------------------
    def _start_row(self, row: int, job: ListeningJob) -> None:
        self.slots.start_row(row)
        job.prefix_left, job.flush_left = self.prefix_frames, self.flush_frames
        job.pieces, job.last_stop, job.unended = [], 0.0, False

    def runnable(self, job: ListeningJob) -> bool:
        return job.prefix_left > 0 or job.has_frame() or job.input_complete

    def _accept_input(self, job: ListeningJob, incoming: list) -> None:
        job.accept(incoming)

    def _next_frame(self, job: ListeningJob) -> np.ndarray:
        if job.prefix_left:
            job.prefix_left -= 1
            return np.zeros(FRAME_SAMPLES, np.float32)
        frame = job.next_frame()
        if frame is None:  # the input has ended: flushing
            job.flush_left -= 1
            return np.zeros(FRAME_SAMPLES, np.float32)
        return frame

    def _advance(self, rows: list[int]) -> None:
        import torch

        frames = np.stack([self._next_frame(self._jobs[row]) for row in rows])
        # Under the compile setting as the TTS step is: without it moshi's lazy torch.compile ran
        # at a served replica's first step (minutes of inductor work on CPU; the test suite, which
        # sets NO_TORCH_COMPILE before importing moshi, never saw it).
        with torch.no_grad(), self._compile_setting():
            tokens, prs = self.slots.step(rows, torch.from_numpy(frames))
        self._count_step(rows)
        for index, (row, token) in enumerate(zip(rows, tokens)):
            job = self._jobs[row]
            self.rule.heard(job, token)
            if prs is not None:
                job.sink(PauseHeard(job.steps, prs[index], job.buffered_samples))
            # A frame is heard once the model's delay has passed it (the silence prefix first).
            job.send_markers(job.steps - self.prefix_frames - self.flush_frames)
            if job.input_complete and not job.has_frame() and job.flush_left <= 0 and not job.prefix_left:
                self._release(job)
                job.finish()
