"""First audio of a cloned voice against a preset 1.6B voice, side by side in one run.

    .venv/bin/python benchmarks/clone_first_audio.py                         # tiny models, CPU, 1 thread
    .venv/bin/python benchmarks/clone_first_audio.py --size full --device cuda   # the real architectures

Loads the 1.6B-style engine (`--size`) and the cloning engine (`<size>-clone`, the 0.75B's
architecture for `full`) from random-weight checkpoints, keeps `--busy` rows of each speaking a
long text, and admits a short request beside them, `--repeats` times per case:
- a preset 1.6B voice (a speaker embedding, its cross-attention K/V cached after the first use);
- a cached cloned voice (its prompt state copied into the row at admission);
- a first-use cloned voice (its prompt cache emptied first: the clip is encoded, and its row hears
  its P prompt steps, `prompt_steps_per_tick` per tick, beside the busy rows);
at cfg 1 and at each model's default (2.0: a conditioning input of the CFG-distilled 1.6B, real
guidance for the 0.75B). Printed: ticks and model steps from admission to the first audio frame,
seconds from prepare to that frame (prepare included: that is where a new clip is encoded), the
longest tick the busy rows lived through meanwhile (what a new voice costs them), and the
prompt's row-steps.
Then the aggregate real-time factor with 8 different cloned voices in one batch, and what real CFG
costs: a tick with every row speaking at cfg 1, with the 2B rows of guidance (what the engine runs,
whatever the rows' cfg) and without (an engine built for cfg 1 only).
The random models stretch every word to moshi's maximum padding: compare ratios, not durations.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_measure import LONG, SENTENCE, cancel, drain, load_engine, sync  # noqa: E402


def first_audio(engine, voice: str | None, cfg: float, forget: bool) -> tuple[int, int, float, float]:
    """(ticks, steps, seconds) from a request's prepare to its first audio frame, and the longest
    tick in between (seconds)."""
    from deployments.protocol import SynthesisRequest

    if forget:
        engine.prompts.clear()
    started = time.perf_counter()
    job = engine.prepare(SynthesisRequest(SENTENCE, voice=voice, cfg_coef=cfg), lambda event: None)
    assert engine.admit(job), "no free row"
    steps, longest = engine.steps, 0.0
    while job.first_audio_tick is None:
        tick_started = time.perf_counter()
        engine.tick()
        sync(engine)
        longest = max(longest, time.perf_counter() - tick_started)
    seconds = time.perf_counter() - started
    ticks = job.first_audio_tick - job.admitted_tick
    job.is_cancelled = lambda: True  # its row is freed at the next tick; the busy rows go on
    engine.tick()
    return ticks, engine.steps - steps, seconds, longest


def busy(engine, rows: int, voice: str | None) -> list:
    from deployments.protocol import SynthesisRequest

    jobs = []
    for _ in range(rows):
        job = engine.prepare(SynthesisRequest(LONG, voice=voice), lambda event: None)
        assert engine.admit(job)
        jobs.append(job)
    for _ in range(30):  # well into their speech
        engine.tick()
    return jobs


def cases(preset, clone, clip: str):
    yield "preset 1.6B voice", preset, None, False
    yield "cached cloned voice", clone, clip, False
    yield "first-use cloned voice", clone, clip, True


def aggregate_rtf(clone, voices: list[str]) -> float:
    from deployments.protocol import SynthesisRequest

    clone.ensure_slots(len(voices))
    started = time.perf_counter()
    results = clone.synthesize([SynthesisRequest(SENTENCE, voice=v) for v in voices])
    sync(clone)
    return sum(r["duration_s"] for r in results) / (time.perf_counter() - started)


def busy_tick_s(engine, rows: int, ticks: int = 30) -> float:
    """Median seconds of a tick with `rows` rows speaking at cfg 1."""
    from deployments.protocol import SynthesisRequest

    engine.ensure_slots(rows)
    jobs = []
    for _ in range(rows):
        job = engine.prepare(SynthesisRequest(LONG, cfg_coef=1.0), lambda event: None)
        assert engine.admit(job)
        jobs.append(job)
    for _ in range(30):  # every row past its audio delay
        engine.tick()
    times = []
    for _ in range(ticks):
        started = time.perf_counter()
        engine.tick()
        sync(engine)
        times.append(time.perf_counter() - started)
    cancel(engine, jobs)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny", choices=["tiny", "full"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--busy", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from deployments.checkpoint import CLIP_NAMES
    from deployments.protocol import SynthesisRequest

    preset, preset_facts = load_engine(args.size, args.device)
    clone, clone_facts = load_engine(f"{args.size}-clone", args.device)
    clip = CLIP_NAMES[2][0]
    print(f"device {args.device}; {args.slots} slots, {args.busy} busy rows speaking beside the newcomer")
    print(f"1.6B-style: n_q {preset_facts['n_q']}, {preset_facts['weights_gib']:.2f} GiB; "
          f"cloning: n_q {clone.tts.n_q}, {clone_facts['weights_gib']:.2f} GiB")
    for engine in (preset, clone):
        engine.ensure_slots(args.slots)
    print(f"{'case':<24} {'cfg':>4} {'ticks':>6} {'steps':>6} {'first audio s':>14} {'longest tick ms':>16} "
          f"{'prompt steps':>13}")
    for cfg in (1.0, 2.0):
        for engine in (preset, clone):
            engine.synthesize([SynthesisRequest("Warm up.", cfg_coef=cfg)])  # caches the default voice at this cfg
        for name, engine, voice, forget in cases(preset, clone, clip):
            others = busy(engine, args.busy, None)
            if not forget:
                first_audio(engine, voice, cfg, forget)  # the voice is known (cached) before it is timed
            side = getattr(engine, "prompt_steps_run", 0)
            runs = [first_audio(engine, voice, cfg, forget) for _ in range(args.repeats)]
            side = (getattr(engine, "prompt_steps_run", 0) - side) / args.repeats
            cancel(engine, others)
            ticks, steps, seconds, longest = (statistics.median(r[i] for r in runs) for i in range(4))
            print(f"{name:<24} {cfg:>4g} {ticks:>6g} {steps:>6g} {seconds:>14.3f} {longest * 1e3:>16.1f} {side:>13g}")
    voices = [name for name, _, _ in CLIP_NAMES]
    drain(clone)
    print(f"aggregate real-time factor, {len(voices)} different cloned voices in one batch (cfg 2): "
          f"{aggregate_rtf(clone, voices):.2f}x")
    guided = busy_tick_s(clone, args.slots)
    clone.close()
    from deployments.engine.clone import CloneEngine

    class Unguided(CloneEngine):
        guided = False

    unguided = busy_tick_s(Unguided(clone.settings, clone.device), args.slots)
    print(f"tick, {args.slots} rows speaking at cfg 1: {guided * 1e3:.1f} ms with guidance rows (2B), "
          f"{unguided * 1e3:.1f} ms without (B): cfg-1 rows cost x{guided / unguided:.2f} inside a CFG batch")


if __name__ == "__main__":
    main()
