"""What every engine is, whatever goes in and comes out: the protocol the scheduler and the model
manager are written against (scheduler.py, model_manager.py know no other engine type).

An engine is one loaded model on one device, run as a slot machine: requests share one streaming
batch, one row each, and every `tick()` gives each row that can run one model step (80 ms of
audio, made or heard). Its life, in order:

- load: the constructor, `Engine(settings, device)` (seconds; on the manager's thread);
- warm-up: `ensure_slots(n)` builds n rows and runs every kind of step on them before any request
  (CUDA graphs are captured there); `close_slots()` drops them;
- requests: `prepare` and `extend` (more input while it runs) on any thread, then `admit` and
  `tick` on the one generation thread that owns the engine;
- `move_to(device)` offloads the weights to host RAM and brings them back (the slots go with the
  old placement: `ensure_slots` again); `fail_all`, `close` when something broke or it goes away.

Each row has a runnable flag (`runnable(job)`): a row waiting for words, audio or its client is
frozen and costs no step; a tick in which no row can run is not a tick. On top of it, `tick` paces
streamed output (pacing.py): a row more than the lead ahead of its real-time playback is frozen
too, and one that fell too far behind it is ended (`FailureKind.EXPIRED`).

Two kinds of jobs, one per direction: `SpeechJob` (text in, audio out: SynthesisRequest ->
AudioChunk, WordSpoken, SynthesisDone) and `TranscriptionJob` (audio in, text out:
TranscriptionRequest -> WordHeard, TranscriptionDone). Both fail with `RequestFailed`.
"""

from __future__ import annotations

import abc
import contextlib
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np

from ..protocol import (FRAME_SAMPLES, SAMPLE_RATE, AudioChunk, FailureKind, Listening, RequestFailed, StreamMarker,
                        SynthesisDone, SynthesisRequest, TranscriptionDone, Word, WordHeard, WordSpoken)
from ..settings import EngineSettings
from .pacing import Pacing
from .text import normalize_breaks


class InvalidRequest(ValueError):
    """The caller's request cannot be served; the message is safe to show to them, and `param`
    names the field at fault."""

    def __init__(self, message: str, param: str = "text"):
        super().__init__(message)
        self.param = param


# What the text of a request must hold to be spoken, as a regular expression that reads the same
# in Python and in JSON Schema's ECMA-262 (explicit code points only): no NUL, and one character
# at least that is neither a control character (Cc, read as a space) nor whitespace. `clean_text`
# applies the rule; the OpenAPI document publishes it, so that a client (or Schemathesis) knows
# which texts are refused (tests/unit/test_text_properties.py checks that both agree on any text).
_NOT_SPOKEN = "\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
SPEAKABLE_TEXT_PATTERN = f"^[^\\u0000]*[^{_NOT_SPOKEN}][^\\u0000]*$"


def unicode_problem(text: str) -> str | None:
    """Why `text` is not Unicode text, or None. A lone UTF-16 surrogate (JSON's `"\\udcff"`, a
    Python str may hold one) cannot be written in UTF-8, so no tokenizer can take it: every
    surface refuses it before a worker is involved (the ingress's IngressContext.check_text, the
    WebSocket session) and the engine again (`clean_text`)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"must be Unicode text: it holds a lone surrogate (U+{ord(text[exc.start]):04X}) at "
                f"character {exc.start}")
    return None


def clean_text(text: object, max_chars: int) -> str:
    """A text to speak, validated (InvalidRequest) and with its <break> tags normalized."""
    if not isinstance(text, str):
        raise InvalidRequest("text must be a string")
    problem = unicode_problem(text)
    if problem:
        raise InvalidRequest(f"text {problem}")
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


def starting_text(request, max_chars: int) -> str:
    """A request's text, validated; a streamed one may start empty (its words come by `extend`)."""
    if request.stream_text and isinstance(request.text, str) and not request.text.strip():
        return ""
    return clean_text(request.text, max_chars)


def clean_audio(audio: object) -> np.ndarray:
    """Audio to transcribe, validated: mono float PCM (one dimension), finite samples."""
    try:
        pcm = np.asarray(audio, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidRequest("audio must be float PCM samples", param="audio") from None
    if pcm.ndim != 1:
        raise InvalidRequest("audio must be mono: one dimension of samples", param="audio")
    if not np.isfinite(pcm).all():
        raise InvalidRequest("audio must not hold NaN or infinite samples", param="audio")
    return pcm


# ---- jobs ---------------------------------------------------------------------------------------
@dataclass(kw_only=True, eq=False)
class Job:
    """One request inside an engine: built by `prepare`, then (once admitted) one row's progress.
    Its input may keep coming while it runs (`feed`, any thread); the row takes it at a tick."""

    request: object
    sink: Callable[[object], None]
    is_cancelled: Callable[[], bool] = lambda: False
    # False while the client may still send input; the row's view, updated at each tick (so a
    # row never sees "complete" before it has the last input).
    input_complete: bool = True
    row: int | None = None
    steps: int = 0              # model steps this row executed
    admitted_tick: int | None = None
    first_output_at: float | None = None  # the engine's clock at the row's first output (pacing)
    behind: bool = False        # its playback has caught up with its output (pacing.underran)
    underruns: int = 0          # times that began
    _incoming: list = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self._input_ended = self.input_complete  # the client's side of `input_complete`

    @property
    def output_s(self) -> float:
        """Seconds of media the row has put out (what a real-time player plays); 0 for text."""
        return 0.0

    @property
    def playback_rate(self) -> float | None:
        """Seconds of output its client plays per second when it is streamed (pacing.py); None:
        not paced. Requests that stream say so (`SynthesisRequest.playback_rate`)."""
        return getattr(self.request, "playback_rate", None)

    def admitted(self) -> None:
        """Called when the job takes its row (`SlotEngine.admit`); a kind that tells its client so
        says it here."""

    def feed(self, items: list, complete: bool = False) -> None:
        with self._lock:
            self._incoming.extend(items)
            self._input_ended = self._input_ended or complete

    def take_incoming(self) -> tuple[list, bool]:
        with self._lock:
            incoming, self._incoming = self._incoming, []
            return incoming, self._input_ended


@dataclass(kw_only=True, eq=False)
class _WordsOut(Job):
    """A job that reports words with times: a word is sent once the next one starts (or the job
    ends), when its end is known."""

    word_event: ClassVar[type]  # WordSpoken or WordHeard
    words: list[Word] = field(default_factory=list)
    _pending_word: tuple[str, float] | None = None

    def word_started(self, text: str, start_s: float) -> None:
        self._close_pending_word(start_s)
        self._pending_word = (text, start_s)

    def _close_pending_word(self, end_s: float) -> None:
        if self._pending_word is not None:
            text, start_s = self._pending_word
            word = Word(text, start_s, max(start_s, end_s))
            self.words.append(word)
            self.sink(self.word_event(word))
            self._pending_word = None


@dataclass(kw_only=True, eq=False)
class SpeechJob(_WordsOut):
    """Text in, audio out: the frames sent so far and the words spoken in them."""

    word_event = WordSpoken
    voice_name: str
    frames_out: int = 0
    first_audio_tick: int | None = None

    @property
    def seconds_out(self) -> float:
        return self.frames_out * FRAME_SAMPLES / SAMPLE_RATE

    @property
    def output_s(self) -> float:
        return self.seconds_out

    def speak(self, pcm: np.ndarray, tick: int) -> None:
        """Sends one frame of audio, made at engine tick `tick`."""
        self.frames_out += 1
        if self.first_audio_tick is None:
            self.first_audio_tick = tick
        self.sink(AudioChunk(pcm.copy()))

    def finish(self) -> None:
        self._close_pending_word(self.seconds_out)
        self.sink(SynthesisDone(request_id=self.request.request_id, voice=self.voice_name,
                                duration_s=round(self.seconds_out, 3), words=list(self.words)))


@dataclass(kw_only=True, eq=False)
class TranscriptionJob(_WordsOut):
    """Audio in, text out: audio waits here until a step consumes it, one 80 ms frame at a time."""

    word_event = WordHeard
    frames_in: int = 0          # frames the row has consumed
    _audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    # The client's markers not yet reached: (frames of its audio before the marker, its id).
    _markers: list = field(default_factory=list)

    def admitted(self) -> None:
        self.sink(Listening())

    @property
    def buffered_samples(self) -> int:
        """Audio the row holds and has not heard yet."""
        return len(self._audio)

    def accept(self, incoming: list) -> None:
        """What `extend` queued (`listening_input`), in order: audio, and markers after it."""
        for item in incoming:
            if isinstance(item, StreamMarker):
                self.add_marker(item.marker_id)
            else:
                self.add_audio(item)

    def add_marker(self, marker_id: int) -> None:
        """A marker after the audio received so far (a part frame counts as the whole frame it
        will be padded to)."""
        self._markers.append((self.frames_in + -(-len(self._audio) // FRAME_SAMPLES), marker_id))

    def send_markers(self, frames_heard: int) -> None:
        """Sends the markers whose audio the model has heard: `frames_heard` of the stream's frames
        are out of its delay (every marker, at the end of the stream)."""
        while self._markers and self._markers[0][0] <= frames_heard:
            self.sink(StreamMarker(self._markers.pop(0)[1]))

    @property
    def seconds_in(self) -> float:
        return self.frames_in * FRAME_SAMPLES / SAMPLE_RATE

    def add_audio(self, pcm: np.ndarray) -> None:
        """Audio for the row, validated (`clean_audio`): by `prepare`, then by the generation
        thread (other threads `feed` it)."""
        self._audio = np.concatenate([self._audio, pcm])

    def has_frame(self) -> bool:
        """A whole frame is waiting, or the input has ended with a part of one."""
        return len(self._audio) >= FRAME_SAMPLES or (self.input_complete and len(self._audio) > 0)

    def next_frame(self) -> np.ndarray | None:
        """The next frame to consume (the last one padded with silence), or None."""
        if not self.has_frame():
            return None
        frame, self._audio = self._audio[:FRAME_SAMPLES], self._audio[FRAME_SAMPLES:]
        self.frames_in += 1
        return np.pad(frame, (0, FRAME_SAMPLES - len(frame)))

    def finish(self) -> None:
        self._close_pending_word(self.seconds_in)
        self.send_markers(self.frames_in)  # the whole stream has been heard: every marker is due
        self.sink(TranscriptionDone(request_id=self.request.request_id, duration_s=round(self.seconds_in, 3),
                                    words=list(self.words)))


def listening_input(more) -> list:
    """A streamed transcription's next input as its job queues it: audio (validated,
    `clean_audio`), a StreamMarker, or None (nothing, e.g. only the end of the input)."""
    if more is None:
        return []
    if isinstance(more, StreamMarker):
        if isinstance(more.marker_id, bool) or not isinstance(more.marker_id, int):
            raise InvalidRequest("a marker's id must be an integer", param="marker")
        return [more]
    return [clean_audio(more)]


def transcription_job(request, sink: Callable[[object], None], is_cancelled: Callable[[], bool],
                      job_class: type = TranscriptionJob) -> TranscriptionJob:
    """A `TranscriptionRequest` validated into its job (every STT engine's `prepare`)."""
    from ..protocol import TranscriptionRequest

    if not isinstance(request, TranscriptionRequest):
        raise InvalidRequest("this engine transcribes audio: send a TranscriptionRequest", param="request")
    job = job_class(request=request, sink=sink, is_cancelled=is_cancelled, input_complete=not request.stream_audio)
    if request.audio is not None:
        job.add_audio(clean_audio(request.audio))
    if not request.stream_audio and not job.has_frame():
        raise InvalidRequest("audio must not be empty", param="audio")
    return job


# ---- engines ------------------------------------------------------------------------------------
class SlotEngine(abc.ABC):
    """One loaded model on one device, its rows and their jobs. `prepare` and `extend` may run on
    any thread; everything else runs on the one generation thread that owns the engine."""

    def __init__(self, settings: EngineSettings, device: str):
        self.settings = settings
        self.device = device
        self._jobs: dict[int, Job] = {}  # row -> its job
        # Counters, for status pages and tests: ticks that stepped, model steps, requests admitted.
        self.ticks = 0
        self.steps = 0
        self.admissions = 0
        self.pacing = Pacing(settings.stream_lead_s, settings.stream_grace_s)
        self.clock: Callable[[], float] = time.monotonic  # pacing's clock (tests pass their own)
        self.buffered_s = 0.0  # streamed output made and not yet played, all rows (at the last tick)
        self.stream_leads: tuple[float, ...] = ()  # each paced row's lead at the last tick (pacing.lead)
        self.underruns = 0  # streams whose playback ran dry (pacing.underran), all rows so far

    def _compile_setting(self):
        """Every model step and warm-up runs under it (TTS, cloning and STT engines alike): moshi
        compiles a few small functions with torch.compile, lazily at their first call, unless told
        not to (NO_TORCH_COMPILE is read when moshi is imported, so only this is sure). On an H100
        (full model, 64 slots) that saves ~6 ms a tick (31 -> 25 ms, real time is 80 ms) and costs
        ~17 s at a new process's first warm-up (1.6 s without; 7.6 s with a warm inductor cache).
        Off by default: a replica woken from zero answers sooner. `torch_compile: true` trades
        that for throughput."""
        if self.settings.torch_compile:
            return contextlib.nullcontext()
        from moshi.utils.compile import no_compile

        return no_compile()

    # ---- slots -------------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def batch_size(self) -> int:
        """Rows built now; 0 before `ensure_slots`, after `close_slots` or a move."""

    def ensure_slots(self, rows: int) -> None:
        """Builds (and warms up) `rows` rows; a different size is applied once no row is busy."""
        if self.batch_size and (self.batch_size == rows or self._jobs):
            return
        self.close_slots()
        self._build_slots(rows)

    @abc.abstractmethod
    def _build_slots(self, rows: int) -> None:
        """Builds the streaming state of `rows` rows and warms it up."""

    @abc.abstractmethod
    def close_slots(self) -> None:
        """Drops the rows' streaming state (`ensure_slots` rebuilds it)."""

    @property
    def busy_rows(self) -> int:
        return len(self._jobs)

    @property
    def free_rows(self) -> int:
        return max(0, self.batch_size - len(self._jobs))

    # ---- placement and end -------------------------------------------------------------------
    def move_to(self, device: str) -> None:
        """Moves the weights to `device` (host RAM to offload, and back). The rows' state lives
        on the old device: it is dropped, and rebuilt by the next `ensure_slots`."""
        if self._jobs:
            raise RuntimeError("cannot move the model while rows are busy")
        self.close_slots()
        self._move_weights(device)

    @abc.abstractmethod
    def _move_weights(self, device: str) -> None:
        """Moves the weights (the slots are already closed)."""

    def fail_all(self, message: str) -> None:
        """Tells every admitted job that generation failed, and frees their rows."""
        for job in list(self._jobs.values()):
            job.sink(RequestFailed(message))
        self._jobs.clear()

    def close(self) -> None:
        """Fails what still runs and drops the slots; the weights go with the engine."""
        self.fail_all("the engine was closed; retry the request")
        self.close_slots()

    def health(self) -> str | None:
        """What the engine knows to be wrong with itself, for the worker's health check; None
        when nothing. (A generation thread that stopped making progress is the scheduler's
        business: `SlotScheduler.stalled_s`.)"""
        return None

    # ---- requests (any thread) ---------------------------------------------------------------
    @abc.abstractmethod
    def prepare(self, request, sink: Callable[[object], None],
                is_cancelled: Callable[[], bool] = lambda: False) -> Job:
        """Validates the request and builds its job, doing everything that may touch the disk or
        the network here, off the generation thread. Raises InvalidRequest (or VoiceError)."""

    @abc.abstractmethod
    def extend(self, job: Job, more, complete: bool = False) -> None:
        """More input for a running job (words, audio); `complete`: the last of it."""

    def sizing_request(self):
        """A request that keeps a row speaking through the slot sizing's ticks (sizing.py):
        long, not paced. An engine whose requests differ (audio in, a voice prompt) says its own."""
        return SynthesisRequest(" ".join(["The quick brown fox jumps over the lazy dog."] * 12))

    # ---- the generation thread ---------------------------------------------------------------
    def admit(self, job: Job) -> bool:
        """Puts the job in a free row (it runs from the next tick); False when none is free."""
        if not self.free_rows:
            return False
        row = next(r for r in range(self.batch_size) if r not in self._jobs)
        self._start_row(row, job)
        job.row, job.admitted_tick = row, self.ticks
        self._jobs[row] = job
        self.admissions += 1
        job.admitted()
        return True

    @abc.abstractmethod
    def _start_row(self, row: int, job: Job) -> None:
        """Resets `row` for `job` (its conditioning written in place)."""

    @abc.abstractmethod
    def runnable(self, job: Job) -> bool:
        """Whether the job's row can take a step now; False while it waits for input."""

    def tick(self) -> bool:
        """Frees cancelled and overdue rows, hands each row its new input, and advances the rows
        that are runnable and not ahead of their playback. Returns False when no row could run
        (all free, waiting, or ahead)."""
        now = self.clock()
        ready = []
        for job in list(self._jobs.values()):
            if job.is_cancelled():
                self._release(job)
                continue
            if not self.runnable(job):  # it waited for input until now: so did its player
                self.pacing.wait_for_input(job, now)
            incoming, job.input_complete = job.take_incoming()
            if incoming:
                self._accept_input(job, incoming)
            if not self.runnable(job):
                self.pacing.wait_for_input(job, now)
            elif self.pacing.overdue(job, now):
                self._expire(job, now)
            else:
                if self.pacing.underran(job, self.pacing.lead(job, now)):
                    job.underruns += 1
                    self.underruns += 1
                if not self.pacing.ahead(job, now):
                    ready.append(job.row)
        self.buffered_s = sum(self.pacing.buffered_s(job, now) for job in self._jobs.values())
        leads = (self.pacing.lead(job, now) for job in self._jobs.values())
        self.stream_leads = tuple(lead for lead in leads if lead is not None)
        if not ready:
            return False
        self.ticks += 1
        self._advance(ready)
        self._start_clocks(ready)
        return True

    def _start_clocks(self, rows: list[int]) -> None:
        """Pacing starts at a row's first output: its time to first audio is never paced."""
        for row in rows:
            job = self._jobs.get(row)
            if job is not None and job.first_output_at is None and job.output_s > 0:
                job.first_output_at = self.clock()

    def _expire(self, job: Job, now: float) -> None:
        """Ends a stream that fell too far behind its playback (pacing.py), freeing its row."""
        behind = (self.pacing.played_s(job, now) - job.output_s) / job.playback_rate
        self._release(job)
        job.sink(RequestFailed(f"the stream fell {behind:.0f} s behind real-time playback (more than "
                               f"stream_lead_s + stream_grace_s = {self.pacing.lead_s + self.pacing.grace_s:g} s) "
                               "and was stopped; retry the request", kind=FailureKind.EXPIRED))

    @abc.abstractmethod
    def _accept_input(self, job: Job, incoming: list) -> None:
        """Gives a row the input `extend` queued for it since the last tick."""

    @abc.abstractmethod
    def _advance(self, rows: list[int]) -> None:
        """One tick of the runnable `rows`: their model step(s) (each counted by `_count_step`),
        the events it makes, and `_release` + `finish` of the jobs that end."""

    def _count_step(self, rows: list[int]) -> None:
        self.steps += 1
        for row in rows:
            self._jobs[row].steps += 1

    def _release(self, job: Job) -> None:
        self._jobs.pop(job.row, None)


# How the model manager builds an engine: load it, on `device`.
EngineFactory = Callable[[EngineSettings, str], SlotEngine]


def listening_sizing_request():
    """What an audio-in engine is sized with (`SlotEngine.sizing_request`): a minute of audio,
    750 steps, all sent at once (not clocked)."""
    from ..protocol import TranscriptionRequest

    return TranscriptionRequest(np.zeros(60 * SAMPLE_RATE, np.float32))
