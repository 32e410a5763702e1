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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_measure import (LONG, SENTENCE, admit, cancel, drain, load_engine,  # noqa: E402
                            newcomer_first_audio, residency, speak, sync, tick_parts, timed_ticks)


def newcomer(engine, streaming: int, repeats: int) -> tuple[float, float]:
    """(median seconds, median ticks) from admission to a short request's first audio while
    `streaming` long requests speak in other slots."""
    others = [admit(engine, LONG) for _ in range(streaming)]
    for _ in range(30):  # the others are well into their speech
        engine.tick()
    results = newcomer_first_audio(engine, repeats)
    cancel(engine, others)
    return statistics.median(s for _, s in results), statistics.median(t for t, _ in results)


def throughput(engine, busy: int) -> float:
    """Audio seconds per wall second with `busy` slots speaking SENTENCE at once."""
    jobs = [admit(engine, SENTENCE) for _ in range(busy)]
    started = time.perf_counter()
    drain(engine)
    sync(engine)
    return sum(job.seconds_out for job in jobs) / (time.perf_counter() - started)


def step_cost(engine, steps: int = 60) -> float:
    """Seconds per full step with one busy slot (past its audio delay)."""
    jobs = speak(engine, 1)
    elapsed = statistics.fmean(timed_ticks(engine, steps))
    cancel(engine, jobs)
    return elapsed


def breakdown(engine, busy: int, ticks: int = 40) -> dict[str, float]:
    """engine_measure.tick_parts with `busy` rows speaking."""
    jobs = speak(engine, busy)
    parts = tick_parts(engine, ticks)
    cancel(engine, jobs)
    return parts


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
    engine, facts = load_engine(args.size, args.device, args.checkpoint, args.n_q, args.threads,
                                torch_compile=args.torch_compile)
    n_q, load_s, weights_gib = facts["n_q"], facts["load_s"], facts["weights_gib"]
    started = time.perf_counter()
    engine.ensure_slots(args.slots)
    warm_s = time.perf_counter() - started
    throughput(engine, 1)  # first-call allocations
    memory = ""
    if args.device.startswith("cuda"):
        import torch

        memory = (f"; GPU memory: weights {weights_gib:.2f} GiB, with {args.slots} slots "
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
            parts = breakdown(engine, busy)
            print(f"{busy:>3} busy: LM main {parts['lm_main_ms']:6.2f}   depformer {parts['depformer_ms']:6.2f}   "
                  f"codec decode {parts['codec_ms']:6.2f}   host syncs {parts['host_sync_ms']:6.2f}   "
                  f"row host work {parts['row_host_ms']:6.2f}   rest {parts['other_ms']:6.2f}   tick {parts['tick_ms']:6.2f}")
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
