"""Scripted fake engines, for tests only (setting `test_engine`, never in production), and the
faults a request may stage with markers in its text.

Both fakes implement the engine protocol (base.py) without a model: no torch, no weights, a tick
costs microseconds, and what they do is fixed by their arguments, so a test can assert in steps
and events what the scheduler, the manager or the service do around an engine.

- `FakeTTSEngine`: text in, audio out. Each word is `frames_per_word` frames of silence (or a
  tone), one frame every `steps_per_frame` steps of its row; a streamed text's row is frozen while
  it has no word to say. Markers stage faults (`Staging`): HANG_MARKER, CRASH_MARKER, SLOW_MARKER.
- `FakeSTTEngine`: audio in, text out. Each step consumes one 80 ms frame of a row's audio; the
  words of its script are heard in turn, one every `frames_per_word` frames, `delay_frames` steps
  after their audio; a streamed row is frozen while it has no whole frame.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..protocol import FRAME_SAMPLES, SAMPLE_RATE, SynthesisRequest, WordBegun
from ..settings import EngineSettings
from .base import (InvalidRequest, SlotEngine, SpeechJob, TranscriptionJob, clean_text, listening_input,
                   listening_sizing_request, starting_text, transcription_job)

log = logging.getLogger(__name__)

# ---- staged faults --------------------------------------------------------------------------------
HANG_MARKER = "[[hang]]"    # the tick stops dead, as a stuck CUDA kernel or a deadlock would
CRASH_MARKER = "[[crash]]"  # the tick raises, as a CUDA error would
SLOW_MARKER = "[[slow]]"    # every tick is SLOW_STEP_S slower, as an overloaded device would be
FAULT_MARKERS = (HANG_MARKER, CRASH_MARKER, SLOW_MARKER)
SLOW_STEP_S = 0.05


class StagedCrash(RuntimeError):
    """A tick that fails because a request asked for it."""


class Staging:
    """The faults the admitted requests ask for, played before each tick. A hang lasts until
    `release` is set (never, unless a test sets it); `hanging` tells a test that one began."""

    def __init__(self, markers: tuple[str, ...] = FAULT_MARKERS):
        self.markers = markers
        self.release = threading.Event()
        self.hanging = threading.Event()
        self.slow_ticks = 0

    def before_tick(self, jobs) -> None:
        asked = {marker for job in jobs for marker in self.markers if marker in job.request.text}
        if HANG_MARKER in asked and not self.release.is_set():
            log.warning("staged fault: the generation thread hangs now, as asked by a request")
            self.hanging.set()
            self.release.wait()
        if CRASH_MARKER in asked:
            raise StagedCrash("staged fault: this tick fails, as asked by a request")
        if SLOW_MARKER in asked:
            self.slow_ticks += 1
            time.sleep(SLOW_STEP_S)


class StagedFaults:
    """Mixed into a text-in engine (before it in the bases): plays the faults its requests ask
    for at each tick (`fault_markers`: the ones it honours)."""

    fault_markers: tuple[str, ...] = FAULT_MARKERS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.staging = Staging(self.fault_markers)

    def tick(self) -> bool:
        self.staging.before_tick(list(self._jobs.values()))
        return super().tick()


def spoken_words(text: str) -> list[str]:
    """The words a fake says for `text`: its own, without the fault markers."""
    for marker in FAULT_MARKERS:
        text = text.replace(marker, " ")
    return text.split()


# ---- the fakes --------------------------------------------------------------------------------------
class ScriptedClock:
    """A clock that only moves when told: the engine's clock when a fake scripts its step cost."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class _FakeEngine(SlotEngine):
    """What both fakes share: rows without a model state; the device is only a name.

    `step_cost(rows)`: the seconds a tick advancing `rows` rows costs, as a GPU's would; the
    engine's clock is then a ScriptedClock that each tick moves by that much (no sleep), so pacing
    and the slot sizing (sizing.py) see the scripted device, whatever this CPU's speed."""

    def __init__(self, settings: EngineSettings, device: str, step_cost: Callable[[int], float] | None = None):
        super().__init__(settings, device)
        self._rows = 0
        self.warm_ups = 0           # slot builds (the real engine warms up each)
        self.placements = [device]  # every device the weights went to, in order
        self.step_cost = step_cost
        if step_cost is not None:
            self.clock = ScriptedClock()

    def _count_step(self, rows: list[int]) -> None:
        super()._count_step(rows)
        if self.step_cost is not None:
            self.clock.now += self.step_cost(len(rows))

    @property
    def batch_size(self) -> int:
        return self._rows

    def _build_slots(self, rows: int) -> None:
        self._rows = rows
        self.warm_ups += 1

    def close_slots(self) -> None:
        self._rows = 0

    def _move_weights(self, device: str) -> None:
        self.placements.append(device)

    def _start_row(self, row: int, job) -> None:
        pass  # nothing to reset: the job holds all a fake row knows


@dataclass(kw_only=True, eq=False)
class FakeSpeechJob(SpeechJob):
    to_say: collections.deque  # words not started yet
    frames_left: int = 0       # frames still to come of the word being said


class FakeTTSEngine(StagedFaults, _FakeEngine):
    """Text in, audio out: silence or a tone, word by word, at a pace counted in steps."""

    TONE_LEVEL = 0.1

    def __init__(self, settings: EngineSettings, device: str, *, frames_per_word: int = 2,
                 steps_per_frame: int = 1, tone_hz: float | None = None,
                 step_cost: Callable[[int], float] | None = None):
        super().__init__(settings, device, step_cost)
        self.frames_per_word = frames_per_word
        self.steps_per_frame = steps_per_frame
        self.tone_hz = tone_hz  # None: silence

    def prepare(self, request, sink: Callable, is_cancelled: Callable[[], bool] = lambda: False) -> FakeSpeechJob:
        if not isinstance(request, SynthesisRequest):
            raise InvalidRequest("this engine speaks text: send a SynthesisRequest", param="request")
        words = spoken_words(starting_text(request, self.settings.max_text_chars))
        if not words and not request.stream_text:
            raise InvalidRequest("text has no words to speak")
        voice = "custom" if request.voice_embedding is not None else request.voice or self.settings.default_voice
        return FakeSpeechJob(request=request, sink=sink, is_cancelled=is_cancelled, voice_name=voice,
                             input_complete=not request.stream_text, to_say=collections.deque(words))

    def extend(self, job: FakeSpeechJob, text: str | None, complete: bool = False) -> None:
        words = spoken_words(clean_text(text, self.settings.max_text_chars)) if text and text.strip() else []
        job.feed(words, complete)

    def runnable(self, job: FakeSpeechJob) -> bool:
        return bool(job.to_say or job.frames_left or job.input_complete)

    def _accept_input(self, job: FakeSpeechJob, incoming: list) -> None:
        job.to_say.extend(incoming)

    def _advance(self, rows: list[int]) -> None:
        self._count_step(rows)
        for row in rows:
            job = self._jobs[row]
            if job.steps % self.steps_per_frame:
                continue  # between two of its frames
            if not job.frames_left:
                if not job.to_say:  # runnable with nothing to say: its text is complete
                    self._release(job)
                    job.finish()
                    continue
                job.word_started(job.to_say.popleft(), job.seconds_out)
                job.frames_left = self.frames_per_word
            job.speak(self._frame(job.frames_out), self.ticks)
            job.frames_left -= 1

    def _frame(self, index: int) -> np.ndarray:
        if self.tone_hz is None:
            return np.zeros(FRAME_SAMPLES, np.float32)
        t = (index * FRAME_SAMPLES + np.arange(FRAME_SAMPLES)) / SAMPLE_RATE  # phase runs on across frames
        return (self.TONE_LEVEL * np.sin(2 * np.pi * self.tone_hz * t)).astype(np.float32)


class FakeSTTEngine(_FakeEngine):
    """Audio in, text out: a frame of audio per step, the script's words heard in turn."""

    def __init__(self, settings: EngineSettings, device: str, *, script: tuple[str, ...] = ("fake", "words", "heard"),
                 frames_per_word: int = 3, delay_frames: int = 2, step_cost: Callable[[int], float] | None = None):
        super().__init__(settings, device, step_cost)
        self.script = script
        self.frames_per_word = frames_per_word
        self.delay_frames = delay_frames  # Kyutai's STT models lag 0.5 s or 2.5 s (models.py)

    def prepare(self, request, sink: Callable, is_cancelled: Callable[[], bool] = lambda: False) -> TranscriptionJob:
        return transcription_job(request, sink, is_cancelled)

    def sizing_request(self):
        return listening_sizing_request()

    def extend(self, job: TranscriptionJob, more, complete: bool = False) -> None:
        job.feed(listening_input(more), complete)

    def runnable(self, job: TranscriptionJob) -> bool:
        return job.has_frame() or job.input_complete

    def _accept_input(self, job: TranscriptionJob, incoming: list) -> None:
        job.accept(incoming)

    def _advance(self, rows: list[int]) -> None:
        self._count_step(rows)
        for row in rows:
            job = self._jobs[row]
            job.next_frame()  # None once the input has ended: the text catches up with it
            heard = job.steps - 1 - self.delay_frames  # the frame whose text comes out now
            if 0 <= heard < job.frames_in and heard % self.frames_per_word == 0:
                word = self.script[heard // self.frames_per_word % len(self.script)]
                start_s = heard * FRAME_SAMPLES / SAMPLE_RATE
                job.word_started(word, start_s)
                job.sink(WordBegun(word, start_s))  # as the real engine: its text now, its end later
            job.send_markers(heard + 1)
            if job.input_complete and not job.has_frame() and heard >= job.frames_in - 1:
                self._release(job)
                job.finish()


# `test_engine` (deployments/settings.py) -> the fake the model manager builds.
FAKE_ENGINES: dict[str, type[SlotEngine]] = {"fake-tts": FakeTTSEngine, "fake-stt": FakeSTTEngine}
