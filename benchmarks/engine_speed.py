"""Synthesis speed of TTSEngine: real-time factor (audio seconds per wall second) at batch 1 and 4.

    .venv/bin/python benchmarks/engine_speed.py                       # tiny model, CPU, 1 thread
    .venv/bin/python benchmarks/engine_speed.py --size full --device cuda --n-q 32

Builds (or reuses) a random-weight checkpoint of the given size, loads it through the engine, and
runs the same ~20-word sentence alone and as a batch of 4, best of N runs each, after a warm-up.
The random model stretches every word to moshi's maximum padding, so its audio is longer per word
than a real model's: compare RTFs, not durations, with the real model.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_TORCH_COMPILE", "1")
os.environ.setdefault("NO_CUDA_GRAPH", "1")

SENTENCE = ("The little train climbed the hill slowly, carrying twenty sleepy passengers "
            "and a cat who refused to buy a ticket.")


def timed_run(engine, batch: int) -> dict:
    """One generation of `batch` copies of SENTENCE: wall time, audio produced, first audio."""
    from deployments.synthesis import AudioChunk, SynthesisRequest

    first_audio: list[float] = []

    def sink(event):
        if isinstance(event, AudioChunk) and not first_audio:
            first_audio.append(time.perf_counter())

    started = time.perf_counter()
    jobs = [engine.prepare(SynthesisRequest(SENTENCE), sink) for _ in range(batch)]
    while not all(job.finished for job in jobs):
        engine.run_round(jobs)
    wall = time.perf_counter() - started
    audio = sum(job.seconds_out for job in jobs)
    return {"wall_s": wall, "audio_s": audio, "first_audio_s": first_audio[0] - started,
            "rtf": audio / wall}


def best_of(engine, batch: int, repeats: int) -> dict:
    runs = [timed_run(engine, batch) for _ in range(repeats)]
    return max(runs, key=lambda run: run["rtf"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", choices=["tiny", "full"])
    parser.add_argument("--checkpoint", type=Path, help="checkpoint folder (built there when missing)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--n-q", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from deployments.checkpoint import build_checkpoint
    from deployments.engine import TTSEngine
    from deployments.settings import EngineSettings

    folder = args.checkpoint or Path(tempfile.gettempdir()) / f"kyutai-tts-bench-{args.size}"
    build_checkpoint(folder, size=args.size)
    settings = EngineSettings(model_path=str(folder), device=args.device, cpu_threads=args.threads,
                              n_q=args.n_q)
    started = time.perf_counter()
    engine = TTSEngine(settings, args.device)
    load_s = time.perf_counter() - started
    timed_run(engine, 1)  # warm-up: first-call allocations

    print(f"model {args.size}, device {args.device}, cpu threads {args.threads}, n_q {args.n_q}, "
          f"load {load_s:.2f}s; sentence of {len(SENTENCE.split())} words; best of {args.repeats}")
    results = {batch: best_of(engine, batch, args.repeats) for batch in (1, 4)}
    print(f"{'batch':>5} {'audio s':>8} {'wall s':>7} {'first audio s':>13} {'RTF':>6} {'RTF/stream':>10}")
    for batch, r in results.items():
        print(f"{batch:>5} {r['audio_s']:>8.2f} {r['wall_s']:>7.2f} {r['first_audio_s']:>13.3f} "
              f"{r['rtf']:>6.1f} {r['rtf'] / batch:>10.1f}")
    print(f"batch 4 vs batch 1: {results[4]['rtf'] / results[1]['rtf']:.2f}x the audio per wall second")


if __name__ == "__main__":
    main()
