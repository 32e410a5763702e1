"""Measuring the STT slot engine in process: the helpers that benchmarks/stt_streams.py and
benchmarks/gpu_suite.py share (benchmarks/engine_measure.py is their TTS counterpart).

Loading goes through the engine as a worker does: a random-weight STT checkpoint built or reused by
deployments.checkpoint (`tiny-stt`, `full-stt` = stt-1b-en_fr-candle's architecture, voice-activity
heads on, as the production default), `STTEngine`, rows built and warmed up by `ensure_slots`
(moshi's CUDA graphs captured there on CUDA). A step is what the scheduler runs: one
`engine.tick()`, synced on CUDA so the time is the device's.

Every stream here is a real-time client: it streams its audio (`stream_audio`), and before each
tick gets one more 80 ms frame (`feed`, outside the timed tick, as the worker's other threads queue
a client's audio); the tick takes it in and steps the row. So every busy row steps at every tick,
and a tick that stays under 80 ms keeps all of its rows at real time. The audio is the tiny
checkpoint's speech-like test signal, looped, each row at its own offset.
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine_measure import default_checkpoint, sync, timing_parts  # noqa: E402

REAL_TIME_MS = 80.0   # one step hears 80 ms of audio for every busy row
SETTLE_STEPS = 8      # steps before timing: every row past the model's delay (6 steps for the 1B)
WORD_LIMIT = 40       # a newcomer's steps to its first word before it counts as none (3.2 s of audio)


def load_stt_engine(size: str, device: str, checkpoint: Path | None = None, threads: int | None = 1):
    """(engine, facts) for the random-weight STT checkpoint of `size` on `device`, built first when
    missing. `facts`: checkpoint folder, build and load seconds, codebooks heard, voice-activity
    heads, weights GiB."""
    from deployments.checkpoint import build_checkpoint
    from deployments.engine.loading import pick_device
    from deployments.engine.stt import STTEngine
    from deployments.settings import EngineSettings

    pick_device(device)  # on CPU: no torch.compile, no CUDA graphs, as the worker
    folder = Path(checkpoint or default_checkpoint(size))
    started = time.perf_counter()
    build_checkpoint(folder, size=size)
    build_s = time.perf_counter() - started
    settings = EngineSettings(model_path=str(folder), device=device, cpu_threads=threads)
    started = time.perf_counter()
    engine = STTEngine(settings, device)
    sync(engine)
    load_s = time.perf_counter() - started
    weights = sum(t.numel() * t.element_size() for module in (engine.lm, engine.mimi)
                  for t in list(module.parameters()) + list(module.buffers()))
    return engine, {"checkpoint": str(folder), "build_s": build_s, "load_s": load_s,
                    "n_q": engine.lm.n_q, "vad_heads": engine.vad_heads, "delay_s": engine.delay_s,
                    "weights_gib": weights / 2**30}


def speech_like(seed: int = 0) -> np.ndarray:
    """A speech-like signal: the signal of the test checkpoints' third clip (checkpoint_stt.STT_CLIPS)."""
    from deployments.checkpoint_stt import STT_CLIPS, clip_samples

    _, seconds, rate, pitch = STT_CLIPS[2]
    return clip_samples(seconds, rate, pitch, seed).numpy()


class Stream:
    """One real-time client: a streamed TranscriptionRequest, fed a frame of `audio` (looped from
    `offset`) per `feed`, and its words (how many, the step and time of the first)."""

    def __init__(self, engine, audio: np.ndarray, offset: int = 0):
        from deployments.protocol import FRAME_SAMPLES, TranscriptionRequest

        self.engine, self.audio = engine, audio
        self.frames = len(audio) // FRAME_SAMPLES
        self.next = offset % self.frames
        self.words = 0
        self.first_word_step: int | None = None
        self.first_word_at: float | None = None
        self.job = engine.prepare(TranscriptionRequest(stream_audio=True), self.heard)

    def heard(self, event) -> None:
        from deployments.protocol import WordHeard

        if isinstance(event, WordHeard):
            self.words += 1
            if self.first_word_step is None:
                self.first_word_step, self.first_word_at = self.job.steps, time.perf_counter()

    def feed(self) -> None:
        from deployments.protocol import FRAME_SAMPLES

        start = self.next * FRAME_SAMPLES
        self.engine.extend(self.job, self.audio[start:start + FRAME_SAMPLES])
        self.next = (self.next + 1) % self.frames

    def cancel(self) -> None:
        self.job.is_cancelled = lambda: True


def listen(engine, count: int, audio: np.ndarray, settle: bool = True) -> list[Stream]:
    """Admits `count` real-time streams (each fed two frames ahead) and, with `settle`, steps them
    past the model's delay."""
    streams = []
    for _ in range(count):
        stream = Stream(engine, audio, offset=7 * engine.admissions)
        assert engine.admit(stream.job), "no free row"
        stream.feed()
        streams.append(stream)
    if settle and streams:
        for _ in range(SETTLE_STEPS):
            step(engine, streams)
    return streams


def step(engine, streams: list[Stream]) -> bool:
    """One frame more for every stream (untimed, as a client's audio arrives), then one tick."""
    for stream in streams:
        stream.feed()
    return engine.tick()


def timed_steps(engine, streams: list[Stream], steps: int) -> list[float]:
    """Seconds of each of `steps` ticks, every stream fed a frame before each (not timed)."""
    times = []
    sync(engine)
    for _ in range(steps):
        for stream in streams:
            stream.feed()
        started = time.perf_counter()
        engine.tick()
        sync(engine)
        times.append(time.perf_counter() - started)
    return times


def end(engine, streams: list[Stream]) -> None:
    """Cancels `streams` and ticks until their rows are free."""
    for stream in streams:
        stream.cancel()
    for _ in range(3):
        if not engine.busy_rows:
            return
        engine.tick()
    raise RuntimeError(f"{engine.busy_rows} rows still busy after their streams were cancelled")


def newcomers(engine, streams: list[Stream], repeats: int, audio: np.ndarray,
              word_limit: int = WORD_LIMIT) -> list[dict]:
    """At full load: `repeats` times, one busy stream leaves and a new one takes its row while the
    others go on. For each newcomer: the ticks and wall seconds from its admission (between two
    ticks) to the end of its first step (its row's reset included), and its steps and wall seconds
    to its first word (None: none within `word_limit` steps; 0: not waited for). Its audio comes as fast as the steps
    go: at real time, its first word comes `first_word_steps` x 80 ms after its first audio.
    `streams` keeps the newcomers in place of the leavers."""
    results = []
    for _ in range(repeats):
        leaver = streams.pop(0)
        leaver.cancel()
        step(engine, streams)  # frees its row (the others step on)
        newcomer = Stream(engine, audio)
        newcomer.feed()
        started = time.perf_counter()
        assert engine.admit(newcomer.job), "no free row"
        streams.append(newcomer)
        first_step = None
        for ticks in range(1, max(word_limit, SETTLE_STEPS) + 1):
            step(engine, streams)
            sync(engine)
            if first_step is None and newcomer.job.steps:
                first_step = (ticks, time.perf_counter() - started)
            if first_step is not None and (newcomer.first_word_step is not None or ticks >= word_limit):
                break
        if first_step is None:
            raise RuntimeError(f"a newcomer did not step in {ticks} ticks")
        word_s = newcomer.first_word_at - started if newcomer.first_word_at is not None else None
        results.append({"first_step_ticks": first_step[0], "first_step_s": first_step[1],
                        "first_word_steps": newcomer.first_word_step, "first_word_s": word_s})
    return results


def step_parts(engine, streams: list[Stream], steps: int) -> dict[str, float]:
    """Milliseconds per step of each part of `steps` steps of `streams` (each fed a frame before
    each, untimed): Mimi's encoder, the LM's main transformer (a CUDA graph on CUDA) and the rest of
    its step (text head, voice-activity heads, cache writes), host syncs (the frames into the
    pinned buffer and to the device, tokens back in the step's one sync), per-row host work (taking
    the client's audio, cutting frames, the word rule) and the rest (masks, Python). Syncing around
    each part costs a little on its own: `tick_ms` (the instrumented step) runs above a plain one."""
    slots = engine.slots
    lm_step = "step_with_extra_heads" if slots.vad_heads else "step"
    functions = [(slots, "step", "batch_step"),                # everything of the model's step ...
                 (slots.mimi, "encode", "mimi_encode"),        # ... Mimi's encoder
                 (slots.lm_gen, lm_step, "lm_step"),           # ... the LM's step, of which
                 (slots.lm_gen._streaming_state, "graphed_main", "lm_main"),  # its main transformer
                 # per row, on the host only (no device sync around them): the client's audio
                 # taken in, its frame cut, its token read by the word rule
                 (engine, "_accept_input", "accept_input", False),
                 (engine, "_next_frame", "next_frame", False),
                 (engine.rule, "heard", "words", False)]
    spent: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    total = 0.0
    with timing_parts(engine, functions, spent, calls):
        for _ in range(steps):
            for stream in streams:
                stream.feed()
            sync(engine)
            started = time.perf_counter()
            engine.tick()
            sync(engine)
            total += time.perf_counter() - started
    ms = {part: 1000 * seconds / steps for part, seconds in spent.items()}
    parts = {
        "mimi_encode_ms": ms.get("mimi_encode", 0.0),
        "lm_main_ms": ms.get("lm_main", 0.0),
        "lm_rest_ms": ms.get("lm_step", 0.0) - ms.get("lm_main", 0.0),
        "host_sync_ms": ms.get("batch_step", 0.0) - ms.get("mimi_encode", 0.0) - ms.get("lm_step", 0.0),
        "row_host_ms": ms.get("accept_input", 0.0) + ms.get("next_frame", 0.0) + ms.get("words", 0.0),
    }
    parts["other_ms"] = 1000 * total / steps - sum(parts.values())
    parts["tick_ms"] = 1000 * total / steps
    parts["host_syncs_per_tick"] = calls["batch_step"] / steps
    return parts
