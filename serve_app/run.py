"""`python -m serve_app.run CONFIG`: what `make serve` and `make demo` run.

Starts a local Ray cluster (or joins one, with RAY_ADDRESS), deploys the config (fitted to a local
cluster's GPUs and CPUs), prints the URL and stays up until Ctrl-C, then shuts Serve and Ray down.
RAY_NUM_GPUS=N starts a local Ray with N logical GPUs (to see one replica per GPU on a machine
without them). Before any of that, every hub model of the config and its default voice are fetched
into the Hugging Face cache, with a progress bar (serve_app/prefetch.py; TTS_PREFETCH=0 skips it).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from .launch import deploy, fit_to_cluster, ray_init_options, read_config
from .prefetch import prefetch


def _warn(text: str) -> None:
    print(f"\n\033[1;33m!!! WARNING: {text}\033[0m\n", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="Serve config file, e.g. serve_config.yaml or configs/demo.yaml")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import ray
    from dotenv import load_dotenv
    from ray import serve

    # .env settings (PORT, HF_REPO, ...) reach this process and, through it, every local Ray
    # worker; the environment still wins over the file.
    load_dotenv(".env", override=False)
    config = read_config(options.config)
    try:
        # Before Ray starts: a replica then finds the files in the cache, and a download shows here.
        for warning in prefetch(config):
            _warn(warning)
    except KeyboardInterrupt:
        print("\nStopped during the model prefetch; the next start resumes it.", file=sys.stderr, flush=True)
        return 130
    # A cluster joined with RAY_ADDRESS keeps the config as written (its autoscaler provides the
    # GPUs and CPUs); a local Ray of our own gets the config fitted to this machine.
    init, fit = ray_init_options(os.environ)
    context = ray.init(namespace="serve", **init)
    config, warnings = fit_to_cluster(config, ray.cluster_resources() if fit else None, port=os.environ.get("PORT"))
    for warning in warnings:
        _warn(warning)

    stop = threading.Event()
    # Handled explicitly: a shell that started us in the background may have told us to ignore
    # SIGINT. Installed before deploying, so that Ctrl-C during start-up stops cleanly too.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        address = deploy(config, stop=stop)
        if address:
            host = "127.0.0.1" if address["host"] in ("0.0.0.0", "::") else address["host"]
            dashboard = f"http://{context.dashboard_url}" if context.dashboard_url else "not running"
            print(f"\nKyutai TTS is up: http://{host}:{address['port']}/   (API docs: /docs, MCP: /mcp)\n"
                  f"Ray dashboard: {dashboard}   Stop with Ctrl-C.\n", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        print("Shutting down Serve...", flush=True)
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
