"""benchmarks/gpu_suite.py in process on the tiny checkpoint, CPU, two small slot counts and a few
ticks each: what it writes (a JSON line per measurement as it is made, the markdown tables) and
how the time budget stops it. Asserts on what was measured (rows, fields, order), never on how
fast this machine is."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SLOT_FIELDS = ("warmup_s", "tick_1_p50_ms", "tick_1_p95_ms", "tick_all_p50_ms", "tick_all_p95_ms",
               "first_audio_ticks_p50", "first_audio_ticks_p95", "first_audio_s_p50", "first_audio_s_p95",
               "first_audio_wall_s_p50", "first_audio_wall_s_p95")
MEMORY_FIELDS = ("max_allocated_gib", "max_reserved_gib", "device_used_gib", "nvml_used_gib")
PARTS = ("lm_main_ms", "depformer_ms", "codec_ms", "host_sync_ms", "row_host_ms", "other_ms", "tick_ms")


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", REPO / "benchmarks" / "gpu_suite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_suite"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run(suite, tiny_checkpoint, out_dir: Path, *extra: str, engines: str = "tts-1.6b") -> tuple[list[dict], str]:
    argv = ["--size", "tiny", "--device", "cpu", "--checkpoint", str(tiny_checkpoint), "--quick",
            "--out-dir", str(out_dir), "--engines", engines, *extra]
    assert suite.main(argv) == 0
    (jsonl,) = out_dir.glob("*.jsonl")
    (md,) = out_dir.glob("*.md")
    assert md.stem == jsonl.stem and jsonl.stem.split("_")[1] == "cpu"
    assert "_torch" in jsonl.stem and "_moshi" in jsonl.stem
    return [json.loads(line) for line in jsonl.read_text().splitlines()], md.read_text()


def table(md: str, heading: str) -> list[list[str]]:
    """The body rows (cells) of the markdown table under the heading that starts with `heading`."""
    lines = md.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(f"### {heading}"))
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[2:]  # past the header and its separator


def positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_a_row_per_slot_count_with_its_figures(suite, tiny_checkpoint, tmp_path):
    rows, md = run(suite, tiny_checkpoint, tmp_path, "--slots", "2,4")
    kinds = [row["kind"] for row in rows]
    assert kinds == ["environment", "load", "slots", "residency", "slots", "auto", "verdict"]
    env, load = rows[0], rows[1]
    assert env["gpu"] == "cpu" and env["device"] == "cpu" and env["moshi"]
    assert load["n_q"] == 8 and positive(load["load_s"]) and positive(load["weights_gib"])

    slots = [row for row in rows if row["kind"] == "slots"]
    assert [row["slots"] for row in slots] == [2, 4]
    for row in slots:
        assert row["engine"] == "tts-1.6b"
        for field in SLOT_FIELDS:
            assert positive(row[field]), (row["slots"], field, row[field])
        assert row["tick_1_p95_ms"] >= row["tick_1_p50_ms"] and row["tick_all_p95_ms"] >= row["tick_all_p50_ms"]
        assert row["first_audio_ticks_p50"] >= 1 and row["first_audio_ticks_p95"] >= row["first_audio_ticks_p50"]
        assert row["realtime"] == (row["tick_all_p95_ms"] < 80)
        assert row["ticks_timed"] == 3 and row["newcomers"] == 2 and row["rows_ended_early"] == 0
        assert all(row[field] is None for field in MEMORY_FIELDS)  # no GPU here
        for key in ("breakdown_1", "breakdown_all"):
            parts = row[key]
            assert all(isinstance(parts[part], float) for part in PARTS)
            assert parts["tick_ms"] > 0 and parts["lm_main_ms"] > 0 and parts["depformer_ms"] > 0
            assert parts["codec_ms"] > 0 and parts["host_syncs_per_tick"] >= 2
        assert row["t_s"] > 0 and row["duration_s"] > 0
    assert slots[0]["t_s"] < slots[1]["t_s"]  # written in the order measured

    residency = rows[3]
    assert residency["slots"] == 2
    for field in ("offload_first_s", "reload_first_s", "offload_s", "reload_s", "rebuild_s"):
        assert positive(residency[field]), field

    auto = rows[5]  # what max_batch_size: auto picks here, measured as a worker does
    assert auto["slots"] in (2, 4) and [c["slots"] for c in auto["candidates"]][0] == 2
    assert positive(auto["tick_p95_s"]) and auto["tick_budget_s"] == 0.048 and not auto["from_cache"]
    assert f"**Picks {auto['slots']} slots**" in md

    verdict = rows[-1]
    assert verdict["result"] == "undecided" and verdict["realtime_streams"] in (0, 2, 4)
    assert "UNDECIDED" in verdict["text"]

    figures = table(md, "Ticks, first audio and memory")
    assert [cells[0] for cells in figures] == ["2", "4"]
    assert all(len(cells) == 12 and cells[4] in ("yes", "no") and cells[-1] == "-" for cells in figures)
    assert [cells[:2] for cells in table(md, "Where a tick goes")] == [["2", "1"], ["2", "2"], ["4", "1"], ["4", "4"]]
    assert len(table(md, "Offload")) == 1 and "UNDECIDED" in md


def test_a_tiny_time_budget_stops_between_measurements(suite, tiny_checkpoint, tmp_path):
    rows, md = run(suite, tiny_checkpoint, tmp_path, "--slots", "2,3", "--time-budget-s", "0")
    kinds = [row["kind"] for row in rows]
    # The first measurement of an engine kind always runs; the budget stops the suite after it.
    assert kinds == ["environment", "load", "slots", "stopped", "verdict"]
    assert rows[2]["slots"] == 2 and all(positive(rows[2][field]) for field in SLOT_FIELDS)
    assert rows[3]["next"] == "offload and reload" and "time budget" in rows[3]["reason"]
    assert "Stopped before offload and reload" in md
    assert [cells[0] for cells in table(md, "Ticks, first audio and memory")] == ["2"]
    assert "### Offload" not in md


def test_the_file_name_says_gpu_date_and_versions(suite):
    env = {"gpu": "NVIDIA H100 80GB HBM3", "date": "2026-12-04", "torch": "2.10.0+cu130", "cuda": "13.0",
           "moshi": "0.2.13"}
    assert suite.file_stem(env) == "2026-12-04_NVIDIA-H100-80GB-HBM3_torch2.10.0_cu130_moshi0.2.13"
    assert suite.file_stem({**env, "gpu": "cpu", "cuda": None}) == "2026-12-04_cpu_torch2.10.0_nocuda_moshi0.2.13"


def test_the_verdict_reads_the_rows(suite):
    args = type("Args", (), {"device": "cuda", "size": "full"})()
    bench = suite.TTSBench(args)

    def row(slots, tick_p95, first_s):
        return {"kind": "slots", "slots": slots, "tick_all_p95_ms": tick_p95, "realtime": tick_p95 < 80,
                "first_audio_s_p95": first_s, "first_audio_wall_s_p95": first_s}

    (shown,) = bench.verdicts([row(128, 40, 0.2), row(256, 70, 0.29), row(384, 90, 0.4)])
    assert shown["result"] == "shown" and shown["realtime_streams"] == 256
    (slow,) = bench.verdicts([row(128, 40, 0.2), row(256, 70, 0.35)])
    assert slow["result"] == "refuted" and slow["realtime_streams"] == 256
    (full,) = bench.verdicts([row(128, 40, 0.2), {"kind": "slots", "slots": 256, "error": "out of memory"}])
    assert full["result"] == "refuted" and full["realtime_streams"] == 128
    (short,) = bench.verdicts([row(128, 40, 0.2)])
    assert short["result"] == "undecided"


def test_out_of_memory_ends_the_slot_counts_and_keeps_the_rows(suite, tiny_checkpoint, tmp_path, monkeypatch):
    import torch

    from deployments.engine.tts import TTSEngine

    build = TTSEngine.ensure_slots

    def ensure_slots(engine, batch_size):
        if batch_size == 4:  # as a GPU that cannot hold 4 rows
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        build(engine, batch_size)

    monkeypatch.setattr(TTSEngine, "ensure_slots", ensure_slots)
    rows, md = run(suite, tiny_checkpoint, tmp_path, "--slots", "2,4,8")
    assert [row["kind"] for row in rows] == ["environment", "load", "slots", "residency", "slots", "auto", "verdict"]
    assert positive(rows[2]["tick_all_p95_ms"])
    assert rows[4]["slots"] == 4 and rows[4]["error"].startswith("out of memory")
    assert rows[-1]["result"] == "refuted" and "4 slots: out of memory" in rows[-1]["text"]
    assert [cells[0] for cells in table(md, "Ticks, first audio and memory")] == ["2", "4"]


def test_the_cloning_engine_has_its_rows_beside_the_1_6b(suite, tiny_checkpoint, tiny_clone_checkpoint, tmp_path):
    """Both kinds in one run, one after the other, each with its own checkpoint; the cloning model's
    n_q is its own (every codebook of its prompts), whatever --n-q says."""
    rows, md = run(suite, tiny_checkpoint, tmp_path, "--slots", "2", "--clone-checkpoint", str(tiny_clone_checkpoint),
                   engines="tts-1.6b,tts-0.75b-clone")
    by_engine = [(row.get("engine"), row["kind"]) for row in rows]
    each = ["load", "slots", "residency", "auto", "verdict"]
    assert by_engine == [(None, "environment")] + [("tts-1.6b", kind) for kind in each] + [
        ("tts-0.75b-clone", kind) for kind in each]
    tts_load, clone_load = rows[1], rows[6]
    assert clone_load["size"] == "tiny-clone" and clone_load["checkpoint"] == str(tiny_clone_checkpoint)
    assert tts_load["n_q"] == 8  # --n-q's default for the tiny model
    assert clone_load["n_q"] == json.loads((tiny_clone_checkpoint / "config.json").read_text())["n_q"]
    clone_slots = rows[7]
    for field in SLOT_FIELDS:
        assert positive(clone_slots[field]), field
    assert "## tts-0.75b-clone: tiny-clone model" in md and "## tts-1.6b: tiny model" in md


STT_FIELDS = ("warmup_s", "tick_1_p50_ms", "tick_1_p95_ms", "tick_all_p50_ms", "tick_all_p95_ms",
              "first_step_s_p50", "first_step_s_p95", "first_word_steps_p50", "first_word_steps_p95")
STT_PARTS = ("mimi_encode_ms", "lm_main_ms", "lm_rest_ms", "host_sync_ms", "row_host_ms", "other_ms", "tick_ms")


def test_the_stt_rows_report_steps_newcomers_and_streams(suite, tiny_checkpoint, tiny_stt_checkpoint, tmp_path):
    """The speech-to-text kind on the tiny STT checkpoint, two row counts: each row's figures agree
    with each other, newcomers step at the next tick and hear a word past the model's delay, the
    verdict counts the rows that stayed under real time."""
    rows, md = run(suite, tiny_checkpoint, tmp_path, "--stt-rows", "2,3", "--stt-checkpoint", str(tiny_stt_checkpoint),
                   engines="stt-1b")
    assert [(row.get("engine"), row["kind"]) for row in rows] == [(None, "environment")] + [
        ("stt-1b", kind) for kind in ("load", "slots", "residency", "slots", "verdict")]
    load = rows[1]
    config = json.loads((tiny_stt_checkpoint / "config.json").read_text())
    assert load["size"] == "tiny-stt" and load["checkpoint"] == str(tiny_stt_checkpoint)
    assert load["n_q"] == config["n_q"] and load["vad_heads"] == 4 and load["delay_s"] == 0.5
    assert positive(load["load_s"]) and positive(load["weights_gib"])

    slots = [row for row in rows if row["kind"] == "slots"]
    assert [row["slots"] for row in slots] == [2, 3]
    for row in slots:
        for field in STT_FIELDS:
            assert positive(row[field]), (row["slots"], field, row[field])
        assert row["tick_1_p95_ms"] >= row["tick_1_p50_ms"] and row["tick_all_p95_ms"] >= row["tick_all_p50_ms"]
        assert row["realtime"] == (row["tick_all_p95_ms"] < 80)
        assert row["within_auto_margin"] == (row["tick_all_p95_ms"] <= 48)
        assert row["ticks_timed"] == 3 and row["newcomers"] == row["newcomers_with_a_word"] == 1
        assert row["first_step_ticks_max"] == 1  # a newcomer steps at the next tick, whatever the load
        # No word before the model's delay (6 steps): the first one is closed after it.
        assert row["first_word_steps_p50"] > 6 and row["first_word_steps_p95"] >= row["first_word_steps_p50"]
        assert row["words_heard"] > 0 and row["rows_ended_early"] == 0
        assert all(row[field] is None for field in MEMORY_FIELDS)  # no GPU here
        for key in ("breakdown_1", "breakdown_all"):
            parts = row[key]
            assert all(isinstance(parts[part], float) for part in STT_PARTS)
            assert all(parts[part] > 0 for part in ("mimi_encode_ms", "lm_main_ms", "row_host_ms", "tick_ms"))
            assert parts["host_syncs_per_tick"] == 1  # the step's one sync
    residency = rows[3]
    assert residency["slots"] == 2 and all(positive(residency[field]) for field in ("offload_s", "reload_s", "rebuild_s"))

    verdict = rows[-1]
    assert verdict["realtime_streams"] == max((row["slots"] for row in slots if row["realtime"]), default=0)
    assert verdict["auto_margin_streams"] == max((row["slots"] for row in slots if row["within_auto_margin"]), default=0)
    assert "not a GPU figure" in verdict["text"]

    figures = table(md, "Steps, newcomers and memory")
    assert [cells[0] for cells in figures] == ["2", "3"] and all(len(cells) == 14 for cells in figures)
    assert [cells[5] for cells in figures] == ["yes" if row["realtime"] else "no" for row in slots]
    assert [cells[:2] for cells in table(md, "Where a step goes")] == [["2", "1"], ["2", "2"], ["3", "1"], ["3", "3"]]
    assert "## stt-1b: tiny-stt model" in md and len(table(md, "Offload")) == 1


def test_each_kind_has_its_share_of_the_time_budget(suite):
    kinds = [suite.ENGINE_KINDS[name](None) for name in ("tts-1.6b", "tts-0.75b-clone", "stt-1b")]
    assert suite.budgets(kinds, 270) == pytest.approx([108, 189, 270])
    assert suite.budgets(kinds[2:], 270) == pytest.approx([270])  # one kind: the whole budget
