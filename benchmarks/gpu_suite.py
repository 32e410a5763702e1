"""The GPU suite: every GPU figure of the project in one command, each written as soon as it is measured.

    python benchmarks/gpu_suite.py                      # a GPU box: full model, CUDA, 32 .. 512 slots
    python benchmarks/gpu_suite.py --size tiny --device cpu --slots 2,4 --quick   # CPU, seconds
    python benchmarks/gpu_suite.py --engines stt-1b --stt-rows 64,128,256,512,768   # STT only

No Ray, no hub, nothing beyond torch and the wheels of benchmarks/gather_wheels.py. It builds the
full-size random-weight checkpoint (or reuses the one already there), loads it through the engine
as a worker does, with production settings (CUDA graphs on, n_q 24 as serve_config.yaml,
torch_compile off, slots built and warmed up by `ensure_slots`), then measures, for each slot count
(ascending; larger ones while memory and the time budget allow):
- the tick (one `engine.tick()`, as the scheduler runs it) with 1 busy row and with every row
  busy, p50 / p95, and whether the all-busy p95 stays under real time (80 ms of audio a tick);
- a newcomer's first audio at full load: a short request admitted while every other row speaks,
  in ticks to its first AudioChunk, in seconds (those ticks times the all-busy tick p50) and as
  measured (wall clock, its catch-up steps included);
- GPU memory (torch max allocated / reserved, the device's used memory, NVML's when available);
- where a tick goes (LM main transformer, depformer, codec decode, host syncs, per-row host work);
then, once, the offload and reload of the weights (`move_to("cpu")` and back) and the GPU memory
left after offload; and last the verdict on the goal: 256 or more real-time streams on one GPU
with p95 first audio at or under 300 ms.

Results: `--out-dir` (benchmarks/results/) gets `<date>_<gpu>_torch<v>_cu<v>_moshi<v>.jsonl`, one
JSON object per measurement appended as it is made, and a `.md` of the same name with the tables,
rewritten after each. `--time-budget-s` stops the suite between measurements (the first one of
each engine kind always runs), so a run cut short still leaves its figures.

Each engine kind is a class with its own list of measurements (`ENGINE_KINDS`): the 1.6B TTS engine
and the 0.75B voice-cloning engine (the same figures on its own checkpoint, n_q 16, real CFG at its
default 2.0; its newcomers speak with a clip voice, cached after the first), and the 1B
speech-to-text engine (`full-stt`: per row count, the step with 1 and with all rows busy, each row
a real-time client, and where it goes, newcomers' first step and first word at full load, memory,
real-time streams per GPU; offload and reload). Each kind gets its `share` of `--time-budget-s` (TTS 0.4, cloning
0.3, STT 0.3 when all three run: by 108, 189 and 270 s of the default), what a kind leaves unspent
passed on to the next.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.metadata
import json
import os
import platform
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_measure import (cancel, load_engine, newcomer_first_audio, residency, speak,  # noqa: E402
                            sync, tick_parts, timed_ticks)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REAL_TIME_MS = 80.0          # one tick makes 80 ms of audio for every speaking row
AUTO_MARGIN = 0.6           # settings.realtime_margin's default: the share of it `max_batch_size: auto` allows
GOAL_STREAMS = 256
GOAL_FIRST_AUDIO_S = 0.300
DEFAULT_SLOTS = "32,64,128,256,384,512"
GiB = 2**30


# ---- the runner ---------------------------------------------------------------------------------
@dataclasses.dataclass
class Measurement:
    """One step of an engine kind's list. `run()` measures and returns its row (a JSON object with
    a "kind"); the runner adds "engine", "duration_s" and "t_s" to that same dict and writes it.
    `estimate_s`: a guess of its seconds (None: unknown), to stop before the budget is spent."""
    label: str
    run: Callable[[], dict]
    estimate_s: float | None = None


class EngineBench:
    """An engine kind's part of the suite. `setup()` loads the engine and returns its "load" row;
    `measurements()` yields Measurements lazily (each runs before the next is asked for, so a
    later one may depend on what came before); `markdown(rows)` renders this kind's rows;
    `verdicts(rows)` returns rows that judge them; `close()` frees the device for the next kind.
    `share`: its weight in `--time-budget-s` against the other kinds of the run."""
    name = "engine"
    share = 1.0

    def __init__(self, args):
        self.args = args

    def setup(self) -> dict:
        raise NotImplementedError

    def measurements(self) -> Iterator[Measurement]:
        raise NotImplementedError

    def markdown(self, rows: list[dict]) -> list[str]:
        return []

    def verdicts(self, rows: list[dict]) -> list[dict]:
        return []

    def close(self) -> None:
        pass


class Results:
    """The run's JSON lines and markdown files; every row is written (and the markdown redone)
    as soon as it is added."""

    def __init__(self, out_dir: Path, stem: str, render: Callable[[list[dict]], str]):
        out_dir.mkdir(parents=True, exist_ok=True)
        taken = 1
        name = stem
        while (out_dir / f"{name}.jsonl").exists() or (out_dir / f"{name}.md").exists():
            taken += 1
            name = f"{stem}_{taken}"
        self.jsonl = out_dir / f"{name}.jsonl"
        self.md = out_dir / f"{name}.md"
        self.rows: list[dict] = []
        self._render = render

    def add(self, row: dict) -> dict:
        row = _clean(row)
        self.rows.append(row)
        with self.jsonl.open("a") as out:
            out.write(json.dumps(row) + "\n")
            out.flush()
            os.fsync(out.fileno())
        partial = self.md.with_suffix(".md.partial")
        partial.write_text(self._render(self.rows))
        os.replace(partial, self.md)
        return row


def _clean(value):
    """Floats rounded for reading; tuples as lists."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    return value


def environment(device: str) -> dict:
    import torch

    row = {"kind": "environment", "date": time.strftime("%Y-%m-%d"), "time": time.strftime("%H:%M:%S"),
           "device": device, "gpu": "cpu", "torch": torch.__version__, "cuda": torch.version.cuda,
           "moshi": _version("moshi"), "python": platform.python_version(), "platform": platform.platform(),
           "cpu_count": os.cpu_count(), "gpu_total_gib": None, "driver": None,
           "cuda_graphs": device.startswith("cuda") and not os.environ.get("NO_CUDA_GRAPH")}
    if device.startswith("cuda"):  # CUDA only (never run on this project's CPU machines)
        properties = torch.cuda.get_device_properties(torch.device(device))
        row["gpu"] = properties.name
        row["gpu_total_gib"] = properties.total_memory / GiB
        row["driver"] = _nvml_driver()
    return row


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        module = __import__(package)
        return getattr(module, "__version__", "unknown")


def _nvml_driver() -> str | None:
    try:  # nvidia-ml-py, when installed (gather_wheels.py brings it)
        import pynvml

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        return driver.decode() if isinstance(driver, bytes) else driver
    except Exception:
        return None


def file_stem(env: dict) -> str:
    """`<date>_<gpu>_torch<v>_cu<v>_moshi<v>`, e.g. 2026-12-04_NVIDIA-H200_torch2.9.1_cu128_moshi0.2.13."""
    gpu = re.sub(r"[^A-Za-z0-9.]+", "-", env["gpu"]).strip("-") or "gpu"
    torch_version = env["torch"].split("+")[0]
    cuda = "cu" + env["cuda"].replace(".", "") if env["cuda"] else "nocuda"
    return f"{env['date']}_{gpu}_torch{torch_version}_{cuda}_moshi{env['moshi']}"


def render(rows: list[dict], benches: list[EngineBench]) -> str:
    env = next(row for row in rows if row["kind"] == "environment")
    lines = [f"# GPU suite: {env['gpu']}, {env['date']} {env['time']}", "",
             f"torch {env['torch']}, CUDA {env['cuda']}, moshi {env['moshi']}, Python {env['python']}, "
             f"device `{env['device']}`" + (f", {env['gpu_total_gib']:.1f} GiB" if env["gpu_total_gib"] else "")
             + (f", driver {env['driver']}" if env["driver"] else "")
             + f", CUDA graphs {'on' if env['cuda_graphs'] else 'off'}; {env['cpu_count']} CPUs; "
             f"`{env['command']}`", ""]
    for bench in benches:
        lines += bench.markdown([row for row in rows if row.get("engine") == bench.name])
    for row in rows:
        if row["kind"] == "stopped":
            lines += [f"Stopped before {row['next']} of {row['engine']}: {row['reason']}.", ""]
        elif row["kind"] == "error":
            lines += [f"**Error** in {row['measurement']} of {row['engine']}: `{row['error']}`", ""]
    return "\n".join(lines)


def budgets(benches: list[EngineBench], total_s: float) -> list[float]:
    """The suite's second by which each kind must be done: its `share` of `total_s` after those of
    the kinds before it (so what one leaves unspent passes on to the next)."""
    shares = [bench.share for bench in benches]
    return [total_s * sum(shares[:number]) / sum(shares) for number in range(1, len(shares) + 1)]


def run_suite(args) -> int:
    started = time.monotonic()
    env = environment(args.device)
    env["command"] = " ".join(["python benchmarks/gpu_suite.py"] + args.argv)
    benches = [ENGINE_KINDS[name](args) for name in args.engines]
    results = Results(args.out_dir, file_stem(env), lambda rows: render(rows, benches))
    results.add(env)
    print(f"results: {results.jsonl} and {results.md}")
    failed = False

    def add(bench, row, since):
        row.update(engine=bench.name, duration_s=time.monotonic() - since, t_s=time.monotonic() - started)
        results.add(row)
        print(f"[{row['t_s']:6.1f}s] {bench.name} {summary(row)}", flush=True)

    for bench, budget_s in zip(benches, budgets(benches, args.time_budget_s)):
        label = "setup"
        try:
            since = time.monotonic()
            add(bench, bench.setup(), since)
            for index, measurement in enumerate(bench.measurements()):
                label = measurement.label
                elapsed = time.monotonic() - started
                over = elapsed >= budget_s or (
                    measurement.estimate_s is not None and elapsed + measurement.estimate_s > budget_s)
                if index and over:
                    estimate = f" (~{measurement.estimate_s:.0f} s)" if measurement.estimate_s is not None else ""
                    add(bench, {"kind": "stopped", "next": label, "next_estimate_s": measurement.estimate_s,
                                "reason": f"time budget: {elapsed:.0f} s of {budget_s:g} s spent, "
                                          f"{label}{estimate} would pass it"}, time.monotonic())
                    break
                since = time.monotonic()
                add(bench, measurement.run(), since)
        except Exception as exc:  # the engine's state is unknown: on to the next kind
            traceback.print_exc()
            add(bench, {"kind": "error", "measurement": label, "error": f"{type(exc).__name__}: {exc}"},
                time.monotonic())
            failed = True
        for verdict in bench.verdicts([row for row in results.rows if row.get("engine") == bench.name]):
            add(bench, verdict, time.monotonic())
        bench.close()
    print(f"done in {time.monotonic() - started:.0f} s: {results.jsonl}, {results.md}")
    return 1 if failed else 0


def summary(row: dict) -> str:
    """One line of a row for the console."""
    if row["kind"] == "verdict":
        return f"VERDICT: {row['text']}"
    skip = {"kind", "engine", "t_s", "breakdown_1", "breakdown_all", "first_audio_samples", "newcomer_samples"}
    return row["kind"] + ": " + ", ".join(
        f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
        for key, value in row.items() if key not in skip and value is not None)


# ---- the 1.6B TTS engine ------------------------------------------------------------------------
def percentile(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def gpu_memory(device: str, peak: bool) -> dict:
    """GiB: torch's allocated and reserved (their peaks since the last reset when `peak`), the
    device's used memory (cudaMemGetInfo: every process on it) and NVML's (when available)."""
    if not device.startswith("cuda"):
        return {"allocated_gib": None, "reserved_gib": None, "device_used_gib": None, "nvml_used_gib": None}
    # CUDA only (never run on this project's CPU machines).
    import torch

    where = torch.device(device)
    free, total = torch.cuda.mem_get_info(where)
    try:
        nvml = torch.cuda.device_memory_used(where) / GiB  # needs pynvml (nvidia-ml-py)
    except Exception:
        nvml = None
    allocated = torch.cuda.max_memory_allocated(where) if peak else torch.cuda.memory_allocated(where)
    reserved = torch.cuda.max_memory_reserved(where) if peak else torch.cuda.memory_reserved(where)
    return {"allocated_gib": allocated / GiB, "reserved_gib": reserved / GiB,
            "device_used_gib": (total - free) / GiB, "nvml_used_gib": nvml}


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


class SlotBench(EngineBench):
    """What every slot engine's part shares: a row per slot count (ascending; `slot_row`, each
    kind its own), counts skipped once memory is full, offload and reload once after the first."""
    MEMORY_MARGIN = 0.92  # a slot count whose predicted reserved memory passes this share is skipped
    SIZES: dict[str, str] = {}  # --size -> this kind's checkpoint size

    @property
    def size(self) -> str:
        return self.SIZES[self.args.size]

    def loaded(self, engine) -> None:
        """Keeps the engine just loaded and starts the bookkeeping of its slot counts."""
        self.engine = engine
        self.slot_rows: list[dict] = []
        self.memory_full = False
        self.total_gib = None
        if self.args.device.startswith("cuda"):  # CUDA only
            import torch

            self.total_gib = torch.cuda.get_device_properties(torch.device(self.args.device)).total_memory / GiB

    def slot_counts(self) -> list[int]:
        return self.args.slots

    def slot_row(self, count: int) -> dict:
        """The row of `count` slots: skipped when it would not fit, else built, warmed up and
        measured (`measure_rows`); out of memory ends the counts."""
        row, skip = self.start_row(count)
        if skip:
            return row
        try:
            self.build_rows(row, count)
            self.measure_rows(row, count)
        except Exception as exc:
            return self.out_of_memory(row, exc)
        return row

    def measure_rows(self, row: dict, count: int) -> None:
        """Measures `count` rows, built and warmed up, into `row` (each kind its figures)."""
        raise NotImplementedError

    def measurements(self) -> Iterator[Measurement]:
        for index, count in enumerate(self.slot_counts()):
            if self.memory_full:
                break
            previous = self.slot_rows[-1] if self.slot_rows else None
            estimate = None
            if previous is not None and "duration_s" in previous:
                estimate = previous["duration_s"] * count / previous["slots"]
            yield Measurement(f"slots={count}", lambda count=count: self.slot_row(count), estimate)
            if index == 0 and not self.memory_full:
                yield Measurement("offload and reload", lambda count=count: self.residency_row(count))

    def _free_slots(self) -> None:
        self.engine.close_slots()
        gc.collect()
        if self.args.device.startswith("cuda"):  # CUDA only
            import torch

            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(torch.device(self.args.device))

    def _would_not_fit(self, count: int) -> str | None:
        """Why `count` slots would not fit, from the reserved memory of the counts measured."""
        measured = [row for row in self.slot_rows if row.get("max_reserved_gib")]
        if self.total_gib is None or not measured:
            return None
        last = measured[-1]
        if len(measured) > 1:
            before = measured[-2]
            per_slot = (last["max_reserved_gib"] - before["max_reserved_gib"]) / (last["slots"] - before["slots"])
        else:
            per_slot = last["max_reserved_gib"] / last["slots"]
        predicted = last["max_reserved_gib"] + per_slot * (count - last["slots"])
        if predicted > self.MEMORY_MARGIN * self.total_gib:
            return f"would not fit: ~{predicted:.0f} GiB predicted of {self.total_gib:.0f} GiB"
        return None

    def start_row(self, count: int) -> tuple[dict, str | None]:
        """The row of `count` slots, its predecessors' slots freed, and why it is skipped (None: measure it)."""
        row = {"kind": "slots", "slots": count}
        self.slot_rows.append(row)
        self._free_slots()
        skip = self._would_not_fit(count)
        if skip:
            self.memory_full = True
            row["skipped"] = skip
        return row, skip

    def build_rows(self, row: dict, count: int) -> None:
        """Builds and warms up `count` rows as the worker does (moshi's CUDA graphs are captured
        there on CUDA), into `row`'s "warmup_s"."""
        started = time.perf_counter()
        self.engine.ensure_slots(count)
        sync(self.engine)
        row["warmup_s"] = time.perf_counter() - started

    def out_of_memory(self, row: dict, exc: Exception) -> dict:
        """`row` after `exc` in its measurement: out of memory ends the slot counts (CUDA only: never
        run here; the rows are failed and the slots dropped); anything else is raised again."""
        if not _is_out_of_memory(exc):
            raise exc
        self.engine.fail_all("out of memory")
        self._free_slots()
        self.memory_full = True
        row["error"] = f"out of memory: {exc}".splitlines()[0][:300]
        return row

    # ---- offload and reload, once
    def residency_row(self, count: int) -> dict:
        device = self.args.device
        left: dict = {}
        # The first offload allocates the pinned host buffers (seconds); later ones reuse them.
        first_offload, first_reload, _ = residency(self.engine, device, count)
        offload, reload, rebuild = residency(self.engine, device, count,
                                             on_offloaded=lambda: left.update(gpu_memory(device, peak=False)))
        return {"kind": "residency", "slots": count, "offload_first_s": first_offload, "reload_first_s": first_reload,
                "offload_s": offload, "reload_s": reload, "rebuild_s": rebuild,
                **{f"offloaded_{key}": value for key, value in left.items()}}

    def close(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close_slots()
            self.engine = None
            gc.collect()
            if self.args.device.startswith("cuda"):  # CUDA only
                import torch

                torch.cuda.empty_cache()


class TTSBench(SlotBench):
    """Kyutai's 1.6B TTS (deployments/engine/tts.py) on the random-weight checkpoint."""
    name = "tts-1.6b"
    share = 0.4
    SIZES = {"tiny": "tiny", "full": "full"}

    def checkpoint_and_n_q(self) -> tuple[Path | None, int | None]:
        return self.args.checkpoint, self.args.n_q

    def setup(self) -> dict:
        args = self.args
        checkpoint, n_q = self.checkpoint_and_n_q()
        engine, facts = load_engine(self.size, args.device, checkpoint, n_q, args.threads,
                                    torch_compile=False, max_audio_s=36_000)
        self.loaded(engine)
        return {"kind": "load", "size": self.size, "torch_compile": False, **facts,
                **gpu_memory(args.device, peak=False)}

    def measurements(self) -> Iterator[Measurement]:
        yield from super().measurements()
        warmups = sum(row.get("warmup_s", 0.0) for row in self.slot_rows)
        yield Measurement("max_batch_size auto", self.auto_row, warmups or None)

    # ---- what `max_batch_size: auto` picks here (deployments/engine/sizing.py), as a worker runs it
    def auto_row(self) -> dict:
        from deployments.engine import sizing

        engine = self.engine
        self._free_slots()
        production = engine.settings
        # The suite's slot counts as the candidates, its ticks, no cache: always measured here.
        engine.settings = production.model_copy(update={
            "slot_candidates": self.args.slots, "sizing_ticks": self.args.ticks, "slot_sizing_cache_dir": None})
        try:
            started = time.perf_counter()
            chosen = sizing.choose_slots(engine)
            took = time.perf_counter() - started
        finally:
            engine.settings = production
            self._free_slots()
        return {"kind": "auto", "sizing_s": took, **chosen.report(),
                "candidates": [dataclasses.asdict(c) for c in chosen.candidates]}

    # ---- one slot count
    def measure_rows(self, row: dict, count: int) -> None:
        args, engine = self.args, self.engine
        # 1 busy row (a long request, well past its audio delay), in a batch of `count` rows.
        speaking = speak(engine, 1)
        one = timed_ticks(engine, args.ticks)
        parts_one = tick_parts(engine, args.breakdown_ticks)
        # Every other row speaks: newcomers, one after the other, take the last row.
        speaking += speak(engine, count - 2)
        firsts = newcomer_first_audio(engine, args.newcomers)
        # Every row speaks.
        speaking += speak(engine, 1)
        full = timed_ticks(engine, args.ticks)
        parts_full = tick_parts(engine, args.breakdown_ticks)
        ended = count - engine.busy_rows  # long requests that ended mid-measurement (none expected)
        memory = gpu_memory(args.device, peak=True)
        cancel(engine, speaking)
        tick_s = percentile(full, 50)
        ticks = [t for t, _ in firsts]
        row.update({
            "tick_1_p50_ms": 1000 * percentile(one, 50), "tick_1_p95_ms": 1000 * percentile(one, 95),
            "tick_all_p50_ms": 1000 * tick_s, "tick_all_p95_ms": 1000 * percentile(full, 95),
            "realtime": 1000 * percentile(full, 95) < REAL_TIME_MS,
            "first_audio_ticks_p50": percentile(ticks, 50), "first_audio_ticks_p95": percentile(ticks, 95),
            "first_audio_s_p50": percentile(ticks, 50) * tick_s, "first_audio_s_p95": percentile(ticks, 95) * tick_s,
            "first_audio_wall_s_p50": percentile([s for _, s in firsts], 50),
            "first_audio_wall_s_p95": percentile([s for _, s in firsts], 95),
            "max_allocated_gib": memory["allocated_gib"], "max_reserved_gib": memory["reserved_gib"],
            "device_used_gib": memory["device_used_gib"], "nvml_used_gib": memory["nvml_used_gib"],
            "ticks_timed": len(full), "newcomers": len(firsts), "rows_ended_early": ended,
            "first_audio_samples": firsts,
            "breakdown_1": parts_one, "breakdown_all": parts_full,
        })

    # ---- reading the rows
    def verdicts(self, rows: list[dict]) -> list[dict]:
        measured = [row for row in rows if row["kind"] == "slots" and "tick_all_p95_ms" in row]
        realtime = [row["slots"] for row in measured if row["realtime"]]
        streams = max(realtime, default=0)

        def first_audio(row):  # the larger of the two ways to count it
            return max(row["first_audio_s_p95"], row["first_audio_wall_s_p95"])

        good = [row for row in measured
                if row["slots"] >= GOAL_STREAMS and row["realtime"] and first_audio(row) <= GOAL_FIRST_AUDIO_S]
        big = [row for row in measured if row["slots"] >= GOAL_STREAMS]
        cut = [row for row in rows if row["kind"] == "slots" and ("error" in row or "skipped" in row)
               and row["slots"] <= GOAL_STREAMS]
        goal = f"{GOAL_STREAMS}+ real-time streams on one GPU with p95 first audio <= {GOAL_FIRST_AUDIO_S * 1000:.0f} ms"
        if good:
            best = max(good, key=lambda row: row["slots"])
            result = "shown"
            text = (f"SHOWN: {best['slots']} streams, all-busy tick p95 {best['tick_all_p95_ms']:.1f} ms "
                    f"(< {REAL_TIME_MS:.0f}), p95 first audio {first_audio(best) * 1000:.0f} ms")
        elif big or cut:
            result = "refuted"
            reasons = [f"{row['slots']} slots: all-busy tick p95 {row['tick_all_p95_ms']:.1f} ms, "
                       f"p95 first audio {first_audio(row) * 1000:.0f} ms" for row in big]
            reasons += [f"{row['slots']} slots: {row.get('error') or row.get('skipped')}" for row in cut]
            text = f"REFUTED: {'; '.join(reasons)}; real-time streams: {streams}"
        else:
            result = "undecided"
            text = (f"UNDECIDED: no count of {GOAL_STREAMS} slots or more was measured "
                    f"(largest: {max((row['slots'] for row in measured), default=0)}); real-time streams: {streams}")
        if not self.args.device.startswith("cuda") or self.args.size != "full":
            text += f" ({self.size} model on {self.args.device}: not a GPU figure)"
        return [{"kind": "verdict", "goal": goal, "result": result, "realtime_streams": streams, "text": text}]

    def markdown(self, rows: list[dict]) -> list[str]:
        load = next((row for row in rows if row["kind"] == "load"), None)
        if load is None:
            return []
        lines = [f"## {self.name}: {load['size']} model, n_q {load['n_q']}, torch_compile off", "",
                 f"Checkpoint `{load['checkpoint']}` built or checked in {load['build_s']:.1f} s, model loaded in "
                 f"{load['load_s']:.1f} s, weights {load['weights_gib']:.3g} GiB"
                 + (f", {load['device_used_gib']:.1f} GiB used on the GPU once loaded" if load["device_used_gib"] else "")
                 + ".", "",
                 f"### Ticks, first audio and memory per slot count (real time: a tick under {REAL_TIME_MS:.0f} ms)", "",
                 "| slots | warm-up s | tick 1 busy p50 / p95 ms | tick all busy p50 / p95 ms | real time "
                 "| first audio ticks p50 / p95 | first audio s p50 / p95 (ticks x tick) | measured s p50 / p95 "
                 "| max allocated GiB | max reserved GiB | GPU used GiB | NVML used GiB |",
                 "|---:|---:|---:|---:|:---:|---:|---:|---:|---:|---:|---:|---:|"]
        slot_rows = [row for row in rows if row["kind"] == "slots"]
        for row in slot_rows:
            if "tick_all_p95_ms" not in row:
                lines.append(f"| {row['slots']} | {row.get('error') or row.get('skipped')} |" + " |" * 10)
                continue
            lines.append(
                f"| {row['slots']} | {row['warmup_s']:.2f} | {_pair(row, 'tick_1', '.1f')} | {_pair(row, 'tick_all', '.1f')} "
                f"| {'yes' if row['realtime'] else 'no'} | {row['first_audio_ticks_p50']:.0f} / {row['first_audio_ticks_p95']:.0f} "
                f"| {_pair(row, 'first_audio_s', '.3f', '')} | {_pair(row, 'first_audio_wall_s', '.3f', '')} "
                f"| {_num(row['max_allocated_gib'])} | {_num(row['max_reserved_gib'])} "
                f"| {_num(row['device_used_gib'])} | {_num(row['nvml_used_gib'])} |")
        lines += ["", "First audio counts from admission at a tick boundary (a request arriving mid-tick also "
                  "waits for the running tick); 'ticks x tick' uses the all-busy tick p50, 'measured' the wall "
                  "clock with the newcomer's catch-up steps.", "",
                  "### Where a tick goes (ms per tick, each part synced on both sides)", "",
                  "| slots | busy | LM main | depformer | codec decode | host syncs (per tick) | per-row host work "
                  "| rest | instrumented tick | plain tick p50 |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += breakdown_lines(slot_rows, ("lm_main_ms", "depformer_ms", "codec_ms"))
        for row in rows:
            if row["kind"] == "residency":
                lines += residency_lines(row)
            elif row["kind"] == "auto":
                measured = ", ".join(f"{c['slots']}: {c['tick_p95_s'] * 1000:.1f} ms" if c["tick_p95_s"] is not None
                                     else f"{c['slots']}: {c['why_not']}" for c in row["candidates"])
                lines += ["", "### max_batch_size: auto (deployments/engine/sizing.py)", "",
                          f"**Picks {row['slots']} slots**: p95 tick {_num(row['tick_p95_s'] and row['tick_p95_s'] * 1000, '.1f')} ms "
                          f"within {row['tick_budget_s'] * 1000:.1f} ms ({row['realtime_margin']:g} x 80 ms)"
                          + ("" if row["within_margin"] else " (NOT within: the smallest candidate, taken anyway)")
                          + f"; memory bound: {row['memory_bound']}; p95 tick per candidate: {measured}; "
                          f"measured in {row['sizing_s']:.1f} s."]
            elif row["kind"] == "verdict":
                lines += ["", f"### Verdict: {row['goal']}", "", f"**{row['text']}**"]
        return lines + [""]


def breakdown_lines(slot_rows: list[dict], model_parts: tuple[str, ...]) -> list[str]:
    """The rows of a "where a tick goes" table: per slot count, 1 busy and all busy, the kind's
    `model_parts` then the host syncs (and their count), per-row host work, the rest, the
    instrumented tick and the plain tick's p50."""
    lines = []
    for row in slot_rows:
        for busy, key, plain in ((1, "breakdown_1", "tick_1_p50_ms"), (row["slots"], "breakdown_all", "tick_all_p50_ms")):
            parts = row.get(key)
            if parts:
                model = " | ".join(f"{parts[name]:.2f}" for name in model_parts)
                lines.append(
                    f"| {row['slots']} | {busy} | {model} | {parts['host_sync_ms']:.2f} ({parts['host_syncs_per_tick']:.0f}) "
                    f"| {parts['row_host_ms']:.2f} | {parts['other_ms']:.2f} | {parts['tick_ms']:.2f} | {row[plain]:.2f} |")
    return lines


def residency_lines(row: dict) -> list[str]:
    """The markdown of a "residency" row (offload and reload), for every engine kind."""
    return ["", f"### Offload to pinned host memory and reload ({row['slots']} slots rebuilt after)", "",
            "| offload s (first: pins) | reload s (first) | offload s | reload s | slots rebuilt s "
            "| GPU after offload: allocated / reserved / used / NVML GiB |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {row['offload_first_s']:.3f} | {row['reload_first_s']:.3f} | {row['offload_s']:.3f} "
            f"| {row['reload_s']:.3f} | {row['rebuild_s']:.2f} | {_num(row['offloaded_allocated_gib'])} / "
            f"{_num(row['offloaded_reserved_gib'])} / {_num(row['offloaded_device_used_gib'])} / "
            f"{_num(row['offloaded_nvml_used_gib'])} |"]


def _num(value, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _pair(row: dict, prefix: str, spec: str, unit: str = "_ms") -> str:
    return f"{row[f'{prefix}_p50{unit}']:{spec}} / {row[f'{prefix}_p95{unit}']:{spec}}"


class CloneBench(TTSBench):
    """Kyutai's 0.75B voice-cloning TTS (deployments/engine/clone.py) on its random-weight checkpoint:
    the same figures. Its n_q is the model's (16); every row runs real CFG (a null twin per row)."""
    name = "tts-0.75b-clone"
    share = 0.3
    SIZES = {"tiny": "tiny-clone", "full": "full-clone"}

    def checkpoint_and_n_q(self) -> tuple[Path | None, int | None]:
        return self.args.clone_checkpoint, None


class STTBench(SlotBench):
    """Kyutai's 1B speech-to-text (deployments/engine/stt.py) on the random-weight `full-stt`
    checkpoint: stt-1b-en_fr-candle's architecture, 32 codebooks heard, the 4 voice-activity heads
    of the production default. Every busy row is a real-time client: 80 ms of a speech-like signal
    before each step (benchmarks/stt_measure.py), so every row steps at every tick. Per row count:
    the step with 1 busy row and with all rows busy and where it goes (Mimi encoder, LM, host
    syncs, per-row host work), newcomers at full load (a busy stream leaves, a new one takes its
    row: its first step, and its first word in steps of its audio), memory; offload and reload
    once. No `auto` row (it would time every count again)."""
    name = "stt-1b"
    share = 0.3  # 81 s of the default 270 s: build ~20 s, load, 6 counts of ~140 steps, offload and reload
    SIZES = {"tiny": "tiny-stt", "full": "full-stt"}

    def setup(self) -> dict:
        from stt_measure import load_stt_engine, speech_like

        engine, facts = load_stt_engine(self.size, self.args.device, self.args.stt_checkpoint, self.args.threads)
        self.loaded(engine)
        self.audio = speech_like()
        return {"kind": "load", "size": self.size, **facts, **gpu_memory(self.args.device, peak=False)}

    def slot_counts(self) -> list[int]:
        return self.args.stt_rows or self.args.slots

    def measure_rows(self, row: dict, count: int) -> None:
        from stt_measure import WORD_LIMIT, end, listen, newcomers, step_parts, timed_steps

        args, engine = self.args, self.engine
        streams = listen(engine, 1, self.audio)
        one = timed_steps(engine, streams, args.ticks)
        parts_one = step_parts(engine, streams, args.breakdown_ticks)
        streams += listen(engine, count - 1, self.audio)
        full = timed_steps(engine, streams, args.ticks)
        parts_full = step_parts(engine, streams, args.breakdown_ticks)
        words = sum(stream.words for stream in streams)
        # A random model may say no word at all (full-stt's random weights did not, on CPU): then
        # newcomers are timed to their first step only, not held for a word that will not come.
        firsts = newcomers(engine, streams, self.stt_newcomers(), self.audio, WORD_LIMIT if words else 0)
        ended = count - engine.busy_rows  # streams that ended mid-measurement (none expected)
        memory = gpu_memory(args.device, peak=True)
        end(engine, streams)
        heard = [first for first in firsts if first["first_word_steps"] is not None]
        row.update({
            "tick_1_p50_ms": 1000 * percentile(one, 50), "tick_1_p95_ms": 1000 * percentile(one, 95),
            "tick_all_p50_ms": 1000 * percentile(full, 50), "tick_all_p95_ms": 1000 * percentile(full, 95),
            "realtime": 1000 * percentile(full, 95) < REAL_TIME_MS,
            "within_auto_margin": 1000 * percentile(full, 95) <= AUTO_MARGIN * REAL_TIME_MS,
            "first_step_ticks_max": max(first["first_step_ticks"] for first in firsts),
            "first_step_s_p50": percentile([first["first_step_s"] for first in firsts], 50),
            "first_step_s_p95": percentile([first["first_step_s"] for first in firsts], 95),
            "first_word_steps_p50": percentile([f["first_word_steps"] for f in heard], 50) if heard else None,
            "first_word_steps_p95": percentile([f["first_word_steps"] for f in heard], 95) if heard else None,
            "max_allocated_gib": memory["allocated_gib"], "max_reserved_gib": memory["reserved_gib"],
            "device_used_gib": memory["device_used_gib"], "nvml_used_gib": memory["nvml_used_gib"],
            "ticks_timed": len(full), "newcomers": len(firsts), "newcomers_with_a_word": len(heard),
            "words_heard": words, "rows_ended_early": ended, "newcomer_samples": firsts,
            "breakdown_1": parts_one, "breakdown_all": parts_full,
        })

    def stt_newcomers(self) -> int:
        """A third of --newcomers: each one listens until its first word (~9 steps), not one step."""
        return max(1, self.args.newcomers // 3)

    def verdicts(self, rows: list[dict]) -> list[dict]:
        measured = [row for row in rows if row["kind"] == "slots" and "tick_all_p95_ms" in row]
        streams = max((row["slots"] for row in measured if row["realtime"]), default=0)
        margin = max((row["slots"] for row in measured if row["within_auto_margin"]), default=0)
        cut = next((row for row in rows if row["kind"] == "slots" and ("error" in row or "skipped" in row)), None)
        largest = max((row["slots"] for row in measured), default=0)
        text = (f"{streams} real-time STT streams per GPU (all-busy step p95 < {REAL_TIME_MS:.0f} ms), {margin} within "
                f"max_batch_size auto's margin ({AUTO_MARGIN:g} x {REAL_TIME_MS:.0f} ms); largest count measured {largest}")
        if streams == largest and largest:
            text += ", still real time: the GPU may hold more" + (
                f" (next count, {cut['slots']}: {cut.get('error') or cut.get('skipped')})" if cut else "")
        if not self.args.device.startswith("cuda") or self.args.size != "full":
            text += f" ({self.size} model on {self.args.device}: not a GPU figure)"
        return [{"kind": "verdict", "goal": "real-time speech-to-text streams per GPU", "result": "measured",
                 "realtime_streams": streams, "auto_margin_streams": margin, "text": text}]

    def markdown(self, rows: list[dict]) -> list[str]:
        load = next((row for row in rows if row["kind"] == "load"), None)
        if load is None:
            return []
        lines = [f"## {self.name}: {load['size']} model, {load['n_q']} codebooks heard, "
                 f"{load['vad_heads']} voice-activity heads, delay {load['delay_s']:g} s", "",
                 f"Checkpoint `{load['checkpoint']}` built or checked in {load['build_s']:.1f} s, model loaded in "
                 f"{load['load_s']:.1f} s, weights {load['weights_gib']:.3g} GiB"
                 + (f", {load['device_used_gib']:.1f} GiB used on the GPU once loaded" if load["device_used_gib"] else "")
                 + ".", "",
                 f"### Steps, newcomers and memory per row count (real time: a step under {REAL_TIME_MS:.0f} ms; "
                 f"auto: {AUTO_MARGIN:g} of it)", "",
                 "| rows | warm-up s | step 1 busy p50 / p95 ms | step all busy p50 / p95 ms | all / 1 | real time "
                 "| auto | newcomer first step s p50 / p95 | first word, steps of audio p50 / p95 | words heard "
                 "| max allocated GiB | max reserved GiB | GPU used GiB | NVML used GiB |",
                 "|---:|---:|---:|---:|---:|:---:|:---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in (row for row in rows if row["kind"] == "slots"):
            if "tick_all_p95_ms" not in row:
                lines.append(f"| {row['slots']} | {row.get('error') or row.get('skipped')} |" + " |" * 12)
                continue
            words = ("-" if row["first_word_steps_p50"] is None
                     else f"{row['first_word_steps_p50']:.0f} / {row['first_word_steps_p95']:.0f}")
            lines.append(
                f"| {row['slots']} | {row['warmup_s']:.2f} | {_pair(row, 'tick_1', '.1f')} | {_pair(row, 'tick_all', '.1f')} "
                f"| {row['tick_all_p50_ms'] / row['tick_1_p50_ms']:.2f} | {'yes' if row['realtime'] else 'no'} "
                f"| {'yes' if row['within_auto_margin'] else 'no'} | {_pair(row, 'first_step_s', '.3f', '')} | {words} "
                f"| {row['words_heard']} | {_num(row['max_allocated_gib'])} | {_num(row['max_reserved_gib'])} "
                f"| {_num(row['device_used_gib'])} | {_num(row['nvml_used_gib'])} |")
        lines += ["", "Every busy row gets 80 ms of audio before each step (a real-time client). A newcomer takes "
                  "the row a busy stream left, between two steps: its first step is the next one (its row's reset "
                  "included); its first word comes that many steps of its audio later (x 80 ms at real time, the "
                  "model's delay included; random weights: the words are not words). '-': the rows heard no word "
                  "(full-stt's random weights heard none on CPU), so newcomers were timed to their first step only."]
        lines += ["", "### Where a step goes (ms per step, each part synced on both sides)", "",
                  "| rows | busy | Mimi encode | LM main | LM rest (heads, sampling) | host syncs (per step) "
                  "| per-row host work | rest | instrumented step | plain step p50 |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += breakdown_lines([row for row in rows if row["kind"] == "slots"],
                                 ("mimi_encode_ms", "lm_main_ms", "lm_rest_ms"))
        for row in rows:
            if row["kind"] == "residency":
                lines += residency_lines(row)
            elif row["kind"] == "verdict":
                lines += ["", f"### Verdict: {row['goal']}", "", f"**{row['text']}**"]
        return lines + [""]


ENGINE_KINDS: dict[str, type[EngineBench]] = {TTSBench.name: TTSBench, CloneBench.name: CloneBench,
                                              STTBench.name: STTBench}


# ---- command line ---------------------------------------------------------------------------------
def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="full", choices=["tiny", "full"], help="random-weight checkpoint (full: the real 1.6B architecture)")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint folder (built there when missing; default: the temp dir)")
    parser.add_argument("--clone-checkpoint", type=Path, help="the cloning model's checkpoint folder (as --checkpoint)")
    parser.add_argument("--stt-checkpoint", type=Path, help="the speech-to-text model's checkpoint folder (as --checkpoint)")
    parser.add_argument("--device", default="auto", help="cuda, cuda:N or cpu (auto: cuda when torch sees one)")
    parser.add_argument("--slots", default=DEFAULT_SLOTS, help=f"slot counts, ascending (default {DEFAULT_SLOTS})")
    parser.add_argument("--stt-rows", help="the speech-to-text model's row counts, ascending (default: --slots)")
    parser.add_argument("--n-q", type=int, help="codebooks (default: 24 for full, as production; 8 for tiny)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU only)")
    parser.add_argument("--ticks", type=int, help="ticks timed per figure (default 40; --quick 3)")
    parser.add_argument("--newcomers", type=int, help="newcomers timed per slot count (default 12; --quick 2)")
    parser.add_argument("--breakdown-ticks", type=int, help="ticks of each breakdown (default 20; --quick 2)")
    parser.add_argument("--quick", action="store_true", help="a few ticks per figure: checks the suite, not the GPU")
    parser.add_argument("--time-budget-s", type=float, default=270.0,
                        help="stop between measurements once this is spent (default 270: the run ends within ~5 min)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where the .jsonl and .md go")
    parser.add_argument("--engines", default=",".join(ENGINE_KINDS), help=f"engine kinds, of {', '.join(ENGINE_KINDS)}")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    quick = args.quick
    args.ticks = args.ticks or (3 if quick else 40)
    args.newcomers = args.newcomers or (2 if quick else 12)
    args.breakdown_ticks = args.breakdown_ticks or (2 if quick else 20)
    for name in ("slots", "stt_rows"):
        text = getattr(args, name)
        counts = [int(part) for part in text.split(",") if part.strip()] if text is not None else None
        if counts is not None and (not counts or min(counts) < 2 or counts != sorted(set(counts))):
            parser.error(f"--{name.replace('_', '-')}: ascending counts of 2 or more")
        setattr(args, name, counts)
    args.engines = [name.strip() for name in args.engines.split(",") if name.strip()]
    unknown = [name for name in args.engines if name not in ENGINE_KINDS]
    if unknown:
        parser.error(f"--engines: unknown {', '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from deployments.engine.loading import pick_device

    args.device = pick_device(args.device)
    if args.device.startswith("cuda") and os.environ.pop("NO_CUDA_GRAPH", None) is not None:
        print("NO_CUDA_GRAPH was set: unset, CUDA graphs stay on as in production")
    return run_suite(args)


if __name__ == "__main__":
    sys.exit(main())
