"""`python -m serve_app.run CONFIG`: what `make serve` and `make demo` run.

Starts (or joins, with RAY_ADDRESS) a Ray cluster, deploys the config, prints the URL and stays up
until Ctrl-C, then shuts Serve down. RAY_NUM_GPUS=N starts a local Ray with N logical GPUs (to see
one replica per GPU on a machine without them).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from .launch import deploy, fit_to_cluster, read_config


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
    init = {"address": os.environ["RAY_ADDRESS"]} if os.environ.get("RAY_ADDRESS") else {}
    if not init and os.environ.get("RAY_NUM_GPUS"):
        init["num_gpus"] = int(os.environ["RAY_NUM_GPUS"])
    ray.init(namespace="serve", **init)
    gpus = ray.cluster_resources().get("GPU", 0.0)
    config, warnings = fit_to_cluster(read_config(options.config), gpus)
    for warning in warnings:
        print(f"\n\033[1;33m!!! WARNING: {warning}\033[0m\n", file=sys.stderr, flush=True)
    address = deploy(config)
    host = "127.0.0.1" if address["host"] in ("0.0.0.0", "::") else address["host"]
    print(f"\nKyutai TTS is up: http://{host}:{address['port']}/   (API docs: /docs, MCP: /mcp)\n"
          f"Ray dashboard: http://127.0.0.1:8265   Stop with Ctrl-C.\n", flush=True)

    stop = threading.Event()
    # Handled explicitly: a shell that started us in the background may have told us to ignore SIGINT.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    print("Shutting down Serve...", flush=True)
    serve.shutdown()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
