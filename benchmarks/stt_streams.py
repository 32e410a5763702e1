"""Real-time speech-to-text streams per replica, and the cost of a step against its busy rows, side
by side in one run.

    .venv/bin/python benchmarks/stt_streams.py                     # tiny-stt, CPU, 1 thread
    .venv/bin/python benchmarks/stt_streams.py --size full-stt --device cuda --rows 1,32,64,128,256,512

Builds (or reuses) a random-weight STT checkpoint (`full-stt` is stt-1b-en_fr-candle's
architecture: 32 codebooks heard, 4 voice-activity heads), loads it through `STTEngine` as a worker
does (CUDA graphs on CUDA, rows built and warmed up by `ensure_slots`) and, for each row count
(ascending), streams a speech-like signal at real time into 1 row and then into every row (one
80 ms frame per stream per step: benchmarks/stt_measure.py). It prints:
1. per row count: the step (one `engine.tick()`) with 1 busy row and with every row busy, p50 /
   p95, their ratio, the 1-busy step against the 1-row engine's, the cost per busy row, and the
   audio heard per wall second;
2. the real-time streams per replica: the most rows whose all-busy p95 step stays under 80 ms
   (the GPU suite's rule; `max_batch_size: auto` takes 0.6 of it, 48 ms, also shown). The search
   stops after the first count whose all-busy p50 passes 80 ms (a p95 alone may be one stall of a
   shared machine) unless `--all`;
3. newcomers at that count, every other row busy: the steps and wall time to their first step and
   first word;
4. where a step goes at that count, 1 and all rows busy (Mimi encoder, LM, host syncs, per-row host
   work).
The random model's words are not words: compare steps and ratios, not the transcript.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stt_measure import (REAL_TIME_MS, WORD_LIMIT, end, listen, load_stt_engine, newcomers, speech_like,  # noqa: E402
                         step_parts, timed_steps)

AUTO_MARGIN = 0.6  # settings.realtime_margin's default: what `max_batch_size: auto` allows


def p(values, q: float) -> float:
    return 1000 * float(np.percentile(values, q))


def measure(engine, rows: int, steps: int, audio) -> dict:
    """The figures of one row count (see the module's text)."""
    engine.close_slots()
    started = time.perf_counter()
    engine.ensure_slots(rows)
    warm_s = time.perf_counter() - started
    streams = listen(engine, 1, audio)
    one = timed_steps(engine, streams, steps)
    streams += listen(engine, rows - 1, audio)
    every = timed_steps(engine, streams, steps)
    end(engine, streams)
    row = {"rows": rows, "warm_s": warm_s, "one_p50": p(one, 50), "one_p95": p(one, 95),
           "all_p50": p(every, 50), "all_p95": p(every, 95), "words": sum(stream.words for stream in streams)}
    if engine.device.startswith("cuda"):  # CUDA only: reviewed, never run on this project's CPUs
        import torch

        row["gib"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny-stt", choices=["tiny-stt", "tiny-stt-novad", "full-stt"])
    parser.add_argument("--checkpoint", type=Path, help="checkpoint folder (built there when missing)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--rows", default="1,2,4,8,16,32,64,128", help="row counts, ascending (1: the 1-row engine)")
    parser.add_argument("--steps", type=int, default=30, help="steps timed per figure")
    parser.add_argument("--newcomers", type=int, default=3, help="newcomers timed at the real-time count")
    parser.add_argument("--all", action="store_true", help="measure every count, past real time too")
    args = parser.parse_args()
    counts = sorted({int(part) for part in args.rows.split(",") if part.strip()} | {1})
    if args.device.startswith("cuda") and os.environ.pop("NO_CUDA_GRAPH", None) is not None:
        print("NO_CUDA_GRAPH was set: unset, CUDA graphs stay on as in production")
    engine, facts = load_stt_engine(args.size, args.device, args.checkpoint, args.threads)
    audio = speech_like()
    print(f"model {args.size} (n_q {facts['n_q']}, {facts['vad_heads']} voice-activity heads, delay "
          f"{facts['delay_s']} s), device {args.device}, cpu threads {args.threads}; load {facts['load_s']:.2f} s; "
          f"{args.steps} steps timed per figure, each busy row fed 80 ms of audio per step")

    print(f"\n1. one step (ms) with 1 busy row and with every row busy; real time: all-busy p95 < {REAL_TIME_MS:.0f} ms")
    print(f"{'rows':>5} {'warm-up s':>9} {'1 busy p50/p95':>15} {'all busy p50/p95':>17} {'all/1':>6} "
          f"{'1 busy vs 1-row':>15} {'ms/row':>7} {'audio s/s':>9} {'real time':>9}" +
          (f" {'GiB':>6}" if args.device.startswith("cuda") else ""))
    measured = []
    for rows in counts:
        row = measure(engine, rows, args.steps, audio)
        measured.append(row)
        base = measured[0]["one_p50"]
        realtime = row["all_p95"] < REAL_TIME_MS
        print(f"{rows:>5} {row['warm_s']:>9.2f} {row['one_p50']:>7.1f}/{row['one_p95']:<7.1f} "
              f"{row['all_p50']:>8.1f}/{row['all_p95']:<8.1f} {row['all_p50'] / row['one_p50']:>6.2f} "
              f"{row['one_p50'] / base:>14.2f}x {row['all_p50'] / rows:>7.2f} "
              f"{rows * REAL_TIME_MS / row['all_p50']:>9.1f} {'yes' if realtime else 'no':>9}"
              + (f" {row['gib']:>6.2f}" if "gib" in row else ""), flush=True)
        if row["all_p50"] > REAL_TIME_MS and not args.all:
            break

    fitting = [row for row in measured if row["all_p95"] < REAL_TIME_MS]
    within = [row for row in measured if row["all_p95"] <= AUTO_MARGIN * REAL_TIME_MS]
    streams = max((row["rows"] for row in fitting), default=0)
    print(f"\n2. real-time streams per replica: {streams} (all-busy p95 < {REAL_TIME_MS:.0f} ms); within "
          f"max_batch_size auto's margin ({AUTO_MARGIN:g} x 80 = {AUTO_MARGIN * REAL_TIME_MS:.0f} ms): "
          f"{max((row['rows'] for row in within), default=0)}")

    if args.newcomers and streams:
        engine.ensure_slots(streams)
        others = listen(engine, streams, audio)
        # A random model may say no word at all: then only the first step is waited for.
        word_limit = WORD_LIMIT if any(row["words"] for row in measured) else 0
        results = newcomers(engine, others, args.newcomers, audio, word_limit)
        end(engine, others)
        words = [r["first_word_steps"] for r in results if r["first_word_steps"] is not None]
        print(f"\n3. newcomers at {streams} rows, every other row busy (medians of {len(results)}): first step "
              f"after {statistics.median(r['first_step_ticks'] for r in results):.0f} tick(s), "
              f"{1000 * statistics.median(r['first_step_s'] for r in results):.1f} ms (its row's reset included); "
              + (f"first word after {statistics.median(words):.0f} steps of its audio "
                 f"({statistics.median(words) * REAL_TIME_MS / 1000:.2f} s of audio at real time, model delay "
                 f"{facts['delay_s']} s included; {statistics.median(r['first_word_s'] for r in results if r['first_word_s']):.2f} s "
                 "wall here, its audio sent as fast as the steps go)" if words else "no word within the step limit"))
    if streams:
        breakdown(engine, streams, audio)
    engine.close_slots()


def breakdown(engine, rows: int, audio, steps: int = 20) -> None:
    print(f"\n4. where a step goes at {rows} rows (ms per step, each part synced)")
    engine.ensure_slots(rows)
    for busy in sorted({1, rows}):
        streams = listen(engine, busy, audio)
        parts = step_parts(engine, streams, steps)
        end(engine, streams)
        print(f"{busy:>4} busy: Mimi encode {parts['mimi_encode_ms']:6.2f}   LM main {parts['lm_main_ms']:6.2f}   "
              f"LM rest {parts['lm_rest_ms']:6.2f}   host syncs {parts['host_sync_ms']:6.2f}   "
              f"row host work {parts['row_host_ms']:6.2f}   rest {parts['other_ms']:6.2f}   step {parts['tick_ms']:6.2f}")


if __name__ == "__main__":
    main()
