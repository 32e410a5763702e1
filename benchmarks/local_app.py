"""What the service benchmarks share: measure a running service (`--url`), or start the tiny test
app on a local Ray cluster with one TTSWorker replica, measure it, and shut it down."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # conftest's ServeCluster


def run(measure: Callable[[str, int], None], description: str, default_runs: int, app_args: dict | None = None,
        app_name: str = "bench") -> None:
    """`measure(url, runs)` against `--url`, or against a local one-replica app built with `app_args`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", help="a running service; default: start the tiny app locally")
    parser.add_argument("--runs", type=int, default=default_runs)
    options = parser.parse_args()
    if options.url:
        return measure(options.url.rstrip("/"), options.runs)
    os.environ.setdefault("NO_TORCH_COMPILE", "1")
    os.environ.setdefault("NO_CUDA_GRAPH", "1")
    from conftest import ServeCluster, wait_for_replicas
    from deployments.checkpoint import build_checkpoint

    checkpoint = build_checkpoint(Path(tempfile.mkdtemp()) / "tiny", size="tiny")
    cluster = ServeCluster(checkpoint, Path(tempfile.mkdtemp()))
    url = cluster.deploy(app_name, "/", args=app_args,
                         worker={"autoscaling_config": {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 1}})
    wait_for_replicas(url, 1)
    try:
        measure(url, options.runs)
    finally:
        cluster.shutdown()
