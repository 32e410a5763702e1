"""Speed of the slot engine, side by side in one run: newcomer latency, throughput, cost of slots.

    .venv/bin/python benchmarks/engine_speed.py                       # tiny model, CPU, 1 thread
    .venv/bin/python benchmarks/engine_speed.py --size full --device cuda   # production: n_q 24, CUDA graphs

Builds (or reuses) a random-weight checkpoint, loads it through the engine exactly as a worker
does (on CUDA with moshi's CUDA graphs and torch.compile left on, as in production), and prints:
1. a newcomer's time to first audio while N other slots stream, against an idle engine, for
   several numbers of catch-up text-only steps per tick (the engine's CATCH_UP_STEPS);
2. aggregate real-time factor (audio seconds per wall second) with 1, 4, 8, 16 busy slots;
3. the cost of one step with 1 busy slot out of `--slots`, against a 1-slot engine.
The random model stretches every word to moshi's maximum padding: compare ratios, not durations.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SENTENCE = ("The little train climbed the hill slowly, carrying twenty sleepy passengers "
            "and a cat who refused to buy a ticket.")
LONG = " ".join([SENTENCE] * 20)


def sync(engine) -> None:
    if engine.device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def admit(engine, text: str, events: list | None = None):
    from deployments.protocol import AudioChunk, SynthesisRequest

    def sink(event):
        if events is not None and isinstance(event, AudioChunk):
            events.append(time.perf_counter())

    job = engine.prepare(SynthesisRequest(text), sink)
    assert engine.admit(job)
    return job


def drain(engine) -> None:
    while engine.busy_rows:
        engine.tick()


def newcomer(engine, streaming: int, repeats: int) -> tuple[float, float]:
    """(median seconds, median ticks) from admission to a short request's first audio while
    `streaming` long requests speak in other slots."""
    seconds, ticks = [], []
    for _ in range(repeats):
        for _ in range(streaming):
            admit(engine, LONG)
        for _ in range(30):  # the others are well into their speech
            engine.tick()
        first: list[float] = []
        started = time.perf_counter()
        job = admit(engine, SENTENCE, first)
        while not first:
            engine.tick()
        sync(engine)
        seconds.append(first[0] - started)
        ticks.append(job.first_audio_tick - job.admitted_tick)
        for other in list(engine._jobs.values()):
            other.is_cancelled = lambda: True
        drain(engine)
    return statistics.median(seconds), statistics.median(ticks)


def throughput(engine, busy: int) -> float:
    """Audio seconds per wall second with `busy` slots speaking SENTENCE at once."""
    jobs = [admit(engine, SENTENCE) for _ in range(busy)]
    started = time.perf_counter()
    drain(engine)
    sync(engine)
    return sum(job.seconds_out for job in jobs) / (time.perf_counter() - started)


def step_cost(engine, steps: int = 60) -> float:
    """Seconds per full step with one busy slot (past its audio delay)."""
    job = admit(engine, LONG)
    while job.steps <= engine.slots.first_audio_step + 2:
        engine.tick()
    sync(engine)
    started = time.perf_counter()
    for _ in range(steps):
        engine.tick()
    sync(engine)
    elapsed = (time.perf_counter() - started) / steps
    job.is_cancelled = lambda: True
    drain(engine)
    return elapsed


def breakdown(engine, busy: int, ticks: int = 40) -> tuple[float, float, float]:
    """(LM step ms, codec decode ms, everything else ms) per tick with `busy` rows speaking,
    each part timed with a device sync around it (the syncs cost a little on their own)."""
    slots = engine.slots
    spent = {"step": 0.0, "decode": 0.0}

    def timed(name, function):
        def wrapper(*args, **kwargs):
            sync(engine)
            started = time.perf_counter()
            result = function(*args, **kwargs)
            sync(engine)
            spent[name] += time.perf_counter() - started
            return result
        return wrapper

    jobs = [admit(engine, LONG) for _ in range(busy)]
    while min(job.steps for job in jobs) <= slots.first_audio_step + 2:
        engine.tick()
    step, decode = slots.step, slots.decode
    slots.step, slots.decode = timed("step", step), timed("decode", decode)
    try:
        sync(engine)
        started = time.perf_counter()
        for _ in range(ticks):
            engine.tick()
        sync(engine)
        total = time.perf_counter() - started
    finally:
        slots.step, slots.decode = step, decode
    for job in jobs:
        job.is_cancelled = lambda: True
    drain(engine)
    per_tick = {name: 1000 * value / ticks for name, value in spent.items()}
    return per_tick["step"], per_tick["decode"], 1000 * total / ticks - sum(per_tick.values())


def residency(engine, device: str, slots: int) -> tuple[float, float, float]:
    """(offload s, reload s, rebuild + warm-up of the slots s): what a worker pays when it
    gives its GPU memory back when idle and when the next request brings the model back."""
    started = time.perf_counter()
    engine.move_to("cpu")
    offload = time.perf_counter() - started
    started = time.perf_counter()
    engine.move_to(device)
    sync(engine)
    reload = time.perf_counter() - started
    started = time.perf_counter()
    engine.ensure_slots(slots)
    sync(engine)
    return offload, reload, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", choices=["tiny", "full"])
    parser.add_argument("--checkpoint", type=Path, help="checkpoint folder (built there when missing)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--n-q", type=int, help="codebooks (default: 24 for full, as production; 8 for tiny)")
    parser.add_argument("--slots", type=int, default=16, help="max_batch_size of the engine")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torch-compile", action="store_true", help="the torch_compile setting (off by default)")
    parser.add_argument("--sections", default="1,2,3,4,5", help="which of the sections below to run")
    args = parser.parse_args()
    if args.device == "cpu":  # as the worker does (loading.pick_device); CUDA keeps graphs on
        import os

        os.environ.setdefault("NO_TORCH_COMPILE", "1")
        os.environ.setdefault("NO_CUDA_GRAPH", "1")

    from deployments.checkpoint import build_checkpoint
    from deployments.engine.tts import TTSEngine
    from deployments.settings import EngineSettings

    n_q = args.n_q or (24 if args.size == "full" else 8)
    folder = args.checkpoint or Path(tempfile.gettempdir()) / f"kyutai-tts-bench-{args.size}"
    build_checkpoint(folder, size=args.size)
    settings = EngineSettings(model_path=str(folder), device=args.device, cpu_threads=args.threads, n_q=n_q,
                              torch_compile=args.torch_compile)
    started = time.perf_counter()
    engine = TTSEngine(settings, args.device)
    load_s = time.perf_counter() - started
    weights_bytes = sum(t.numel() * t.element_size() for module in (engine.tts.lm, engine.tts.mimi)
                        for t in list(module.parameters()) + list(module.buffers()))
    started = time.perf_counter()
    engine.ensure_slots(args.slots)
    warm_s = time.perf_counter() - started
    throughput(engine, 1)  # first-call allocations
    memory = ""
    if args.device.startswith("cuda"):
        import torch

        memory = (f"; GPU memory: weights {weights_bytes / 2**30:.2f} GiB, with {args.slots} slots "
                  f"{torch.cuda.memory_allocated() / 2**30:.2f} GiB allocated, peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    print(f"model {args.size}, device {args.device}, cpu threads {args.threads}, n_q {n_q}, {args.slots} slots, "
          f"torch_compile {args.torch_compile}{memory}; "
          f"load {load_s:.2f}s, streaming state + warm-up {warm_s:.2f}s; medians of {args.repeats}")

    sections = {int(part) for part in args.sections.split(",")}
    if 1 in sections:
        newcomers(engine, args)
    if 2 in sections:
        rtfs = {busy: throughput(engine, busy) for busy in (1, 4, 8, 16, 32, 64, 128) if busy <= args.slots}
        print("\n2. aggregate real-time factor (audio s per wall s), one sentence per busy slot")
        print("  ".join(f"{busy:>2} busy: {rtf:6.1f}x" for busy, rtf in rtfs.items())
              + f"   ({max(rtfs)} vs 1: {rtfs[max(rtfs)] / rtfs[1]:.2f}x)")
    if 3 in sections:
        step_costs(engine, args)
    if 4 in sections:
        print(f"\n4. where a tick goes with B busy rows ({args.slots} slots; ms, each part synced)")
        for busy in sorted({1, min(16, args.slots), args.slots}):
            lm, codec, rest = breakdown(engine, busy)
            print(f"{busy:>3} busy: LM step {lm:6.2f}   codec decode {codec:6.2f}   host + rest {rest:6.2f}   "
                  f"tick {lm + codec + rest:6.2f}")
    if 5 in sections and args.device != "cpu":
        print("\n5. residency: offload to pinned host memory, reload, rebuild + warm-up of the slots (s)")
        for _ in range(3):
            offload, reload, rebuild = residency(engine, args.device, args.slots)
            print(f"offload {offload:.2f}   reload {reload:.2f}   slots {rebuild:.2f}")


def newcomers(engine, args) -> None:
    from deployments.engine import tts as engine_module

    print("\n1. newcomer: admission -> first audio (seconds / ticks), while N slots stream")
    streams = sorted({n for n in (0, 1, 4, 8, args.slots - 1) if n < args.slots})
    print(f"{'catch-up':>8} " + " ".join(f"{f'N={n}':>15}" for n in streams) + f" {f'N={streams[-1]} vs idle':>12}")
    default = engine_module.CATCH_UP_STEPS
    for catch_up in (0, 1, 2, 4):
        engine_module.CATCH_UP_STEPS = catch_up
        row = [newcomer(engine, n, args.repeats) for n in streams]
        print(f"{catch_up:>8} " + " ".join(f"{s:>8.3f}s {t:>4.0f}t" for s, t in row)
              + f" {row[-1][0] / row[0][0]:>11.2f}x" + ("   <- default" if catch_up == default else ""))
    engine_module.CATCH_UP_STEPS = default



def step_costs(engine, args) -> None:
    print(f"\n3. one full step with 1 busy slot ({args.slots} slots vs a 1-slot engine)")
    wide = statistics.median(step_cost(engine) for _ in range(args.repeats))
    engine.ensure_slots(1)
    narrow = statistics.median(step_cost(engine) for _ in range(args.repeats))
    engine.ensure_slots(args.slots)
    print(f"{args.slots} slots: {wide * 1000:.2f} ms/step   1 slot: {narrow * 1000:.2f} ms/step   "
          f"ratio {wide / narrow:.2f}x   (real time: 80 ms/step)")


if __name__ == "__main__":
    main()
