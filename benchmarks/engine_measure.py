"""Measuring the TTS slot engine in process: the helpers that benchmarks/engine_speed.py and
benchmarks/gpu_suite.py share.

Loading goes through the engine exactly as a worker does (a random-weight checkpoint built or
reused by deployments.checkpoint, `TTSEngine`, slots built and warmed up by `ensure_slots`), and a
tick is what the scheduler runs: one `engine.tick()`. On CUDA every timed section is closed by
`torch.cuda.synchronize()`, so the figures are the device's, not the launch queue's.
"""

from __future__ import annotations

import collections
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SENTENCE = ("The little train climbed the hill slowly, carrying twenty sleepy passengers "
            "and a cat who refused to buy a ticket.")
# 400 words: at least ~1,300 steps (100 s of audio), so a row given it speaks through any
# measurement here; `max_audio_s` is raised in `load_engine` so that it is never refused.
LONG = " ".join([SENTENCE] * 20)
# A row's steps before it is well past its audio delay (its first frames decoded).
SETTLED_STEPS = 2


def default_checkpoint(size: str) -> Path:
    """Where the benchmarks build (and then reuse) the random-weight checkpoint of `size`."""
    return Path(tempfile.gettempdir()) / f"kyutai-tts-bench-{size}"


def default_n_q(size: str) -> int:
    """Codebooks generated: 24 for the full model, as production (serve_config.yaml); 16 for the
    full cloning model (all of its codebooks); 8 for tiny."""
    return {"full": 24, "full-clone": 16}.get(size, 8)


def default_voice(size: str) -> str:
    """A voice the checkpoint of `size` has: a clip for the cloning model."""
    from deployments.checkpoint import CLIP_NAMES
    from deployments.settings import DEFAULT_VOICE

    return CLIP_NAMES[0][0] if size.endswith("-clone") else DEFAULT_VOICE


def load_engine(size: str, device: str, checkpoint: Path | None = None, n_q: int | None = None,
                threads: int | None = 1, torch_compile: bool = False, max_audio_s: float = 3600.0):
    """(engine, facts) for the random-weight checkpoint of `size` on `device`, built first when it is
    missing. `facts`: checkpoint folder, build and load seconds, n_q, weights GiB."""
    from deployments.checkpoint import build_checkpoint
    from deployments.engine.loading import pick_device
    from deployments.engine.clone import CloneEngine
    from deployments.engine.tts import TTSEngine
    from deployments.settings import EngineSettings

    pick_device(device)  # on CPU: no torch.compile, no CUDA graphs, as the worker
    n_q = n_q or default_n_q(size)
    folder = Path(checkpoint or default_checkpoint(size))
    started = time.perf_counter()
    build_checkpoint(folder, size=size)
    build_s = time.perf_counter() - started
    settings = EngineSettings(model_path=str(folder), device=device, cpu_threads=threads, n_q=n_q,
                              torch_compile=torch_compile, max_audio_s=max_audio_s,
                              default_voice=default_voice(size))
    started = time.perf_counter()
    engine = (CloneEngine if size.endswith("-clone") else TTSEngine)(settings, device)
    sync(engine)
    load_s = time.perf_counter() - started
    weights = sum(t.numel() * t.element_size() for module in (engine.tts.lm, engine.tts.mimi)
                  for t in list(module.parameters()) + list(module.buffers()))
    # The codebooks the engine really generates (the cloning model takes its own, whatever n_q says).
    n_q = engine.tts.n_q
    return engine, {"checkpoint": str(folder), "build_s": build_s, "load_s": load_s, "n_q": n_q,
                    "weights_gib": weights / 2**30}


def sync(engine) -> None:
    if str(engine.device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def prepare(engine, text: str, events: list | None = None):
    """A job for `text` (validated and tokenized, as the worker does off the generation thread);
    `events` (if given) receives the time of each of its AudioChunks."""
    from deployments.protocol import AudioChunk, SynthesisRequest

    def sink(event):
        if events is not None and isinstance(event, AudioChunk):
            events.append(time.perf_counter())

    return engine.prepare(SynthesisRequest(text), sink)


def admit(engine, text: str, events: list | None = None):
    """Prepares and admits a request for `text` (see `prepare`)."""
    job = prepare(engine, text, events)
    assert engine.admit(job), "no free row"
    return job


def drain(engine) -> None:
    while engine.busy_rows:
        engine.tick()


def cancel(engine, jobs) -> None:
    """Cancels `jobs` and ticks until every row is free."""
    for job in jobs:
        job.is_cancelled = lambda: True
    drain(engine)


def settle(engine, jobs, limit: int = 1000) -> None:
    """Ticks until every one of `jobs` is past its audio delay (speaking)."""
    for _ in range(limit):
        if min(job.steps for job in jobs) > engine.slots.first_audio_step + SETTLED_STEPS:
            return
        engine.tick()
    raise RuntimeError("rows did not start speaking")


def speak(engine, count: int, text: str = LONG) -> list:
    """Admits `count` requests for `text` at once and ticks until all of them speak."""
    jobs = [admit(engine, text) for _ in range(count)]
    if jobs:
        settle(engine, jobs)
    return jobs


def timed_ticks(engine, ticks: int) -> list[float]:
    """Seconds of each of `ticks` ticks, as the scheduler runs them (one `engine.tick()`)."""
    times = []
    sync(engine)
    for _ in range(ticks):
        started = time.perf_counter()
        engine.tick()
        sync(engine)
        times.append(time.perf_counter() - started)
    return times


def newcomer_first_audio(engine, repeats: int, text: str = SENTENCE, limit: int = 1000) -> list[tuple[int, float]]:
    """(ticks, seconds) from admission to the first audio of `repeats` short requests, one after the
    other, while the rows already speaking go on; each newcomer is cancelled once it spoke."""
    results = []
    for _ in range(repeats):
        first: list[float] = []
        job = prepare(engine, text, first)
        started = time.perf_counter()
        assert engine.admit(job), "no free row"
        ticks = 0
        while not first:
            if ticks == limit:
                raise RuntimeError(f"no audio after {limit} ticks")
            engine.tick()
            ticks += 1
        results.append((job.first_audio_tick - job.admitted_tick, first[0] - started))
        job.is_cancelled = lambda: True
        engine.tick()  # frees its row (the others step on)
    return results


@contextlib.contextmanager
def patched(owner, name: str, wrap):
    """`owner.name` replaced by `wrap(owner.name)` inside the block (nothing when it is absent)."""
    original = getattr(owner, name, None)
    if original is None:
        yield
        return
    own = name in vars(owner)
    setattr(owner, name, wrap(original))
    try:
        yield
    finally:
        if own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)


@contextlib.contextmanager
def timing_parts(engine, functions, spent: collections.Counter, calls: collections.Counter):
    """Inside the block, each of `functions` ((owner, attribute, part) triples) adds its seconds to
    `spent[part]` and its calls to `calls[part]`, with a device sync on both sides; a fourth item
    False times a host-only function without them (a sync per row per tick would be counted in)."""
    def timer(part, synced):
        def wrap(function):
            def timed(*args, **kwargs):
                if synced:
                    sync(engine)
                started = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    if synced:
                        sync(engine)
                    spent[part] += time.perf_counter() - started
                    calls[part] += 1
            return timed
        return wrap

    with contextlib.ExitStack() as stack:
        for owner, name, part, *synced in functions:
            stack.enter_context(patched(owner, name, timer(part, synced != [False])))
        yield


# Where a tick goes: the functions timed (owner, attribute, part), each with a device sync on both
# sides. Nested ones are subtracted from their callers below.
def _timed_functions(engine):
    slots = engine.slots
    state = slots.lm_gen._streaming_state
    return [(state, "graphed_main", "lm_main"),        # the main transformer (a CUDA graph on CUDA)
            (state, "graphed_depth", "depformer"),     # the depformer: one pass per codebook
            (slots.lm_gen, "on_text_hook", "text_hook"),  # sampled text tokens to the host ...
            (slots, "_on_text", "on_text"),            # ... and every row's text state machine
            (slots, "decode", "decode"),               # codec decode and the PCM to the host ...
            (slots.tts.mimi, "decode", "mimi_decode"),  # ... of which Mimi's own decode
            (engine, "_emit", "emit")]                 # per speaking row: frame counting, sink


def tick_parts(engine, ticks: int) -> dict[str, float]:
    """Milliseconds per tick of each part of `ticks` ticks of the rows speaking now: LM main
    transformer, depformer, codec decode, host syncs (tokens and PCM copied to the host, a
    count per tick too), per-row host work (text state machines, emitting frames) and the rest
    (sampling, masks, cache writes, Python). Syncing around each part costs a little on its own:
    `tick_ms` (the instrumented tick) runs above a plain one."""
    spent: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    with timing_parts(engine, _timed_functions(engine), spent, calls):
        sync(engine)
        started = time.perf_counter()
        for _ in range(ticks):
            engine.tick()
        sync(engine)
        total = time.perf_counter() - started
    ms = {part: 1000 * seconds / ticks for part, seconds in spent.items()}
    parts = {
        "lm_main_ms": ms.get("lm_main", 0.0),
        "depformer_ms": ms.get("depformer", 0.0),
        "codec_ms": ms.get("mimi_decode", 0.0),
        "host_sync_ms": (ms.get("text_hook", 0.0) - ms.get("on_text", 0.0)
                         + ms.get("decode", 0.0) - ms.get("mimi_decode", 0.0)),
        "row_host_ms": ms.get("on_text", 0.0) + ms.get("emit", 0.0),
    }
    parts["other_ms"] = 1000 * total / ticks - sum(parts.values())
    parts["tick_ms"] = 1000 * total / ticks
    parts["host_syncs_per_tick"] = (calls["text_hook"] + calls["decode"]) / ticks
    return parts


def residency(engine, device: str, slots: int, on_offloaded=None) -> tuple[float, float, float]:
    """(offload s, reload s, rebuild + warm-up of the slots s): what a worker pays when it gives
    its GPU memory back when idle and when the next request brings the model back.
    `on_offloaded()` runs while the weights are on the host (to read what is left on the GPU)."""
    started = time.perf_counter()
    engine.move_to("cpu")
    offload = time.perf_counter() - started
    if on_offloaded is not None:
        on_offloaded()
    started = time.perf_counter()
    engine.move_to(device)
    sync(engine)
    reload = time.perf_counter() - started
    started = time.perf_counter()
    engine.ensure_slots(slots)
    sync(engine)
    return offload, reload, time.perf_counter() - started
