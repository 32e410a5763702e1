"""Worker registry: how the ingress sees and steers TTSWorker replicas without waking them.

Calling a deployment through its handle routes to a replica and wakes a deployment that scaled to
zero, and cannot pick a given replica. So each replica reports its status to a small named Ray actor
every `REPORT_PERIOD_S`, and picks up commands (offload) from the answer. The ingress reads the
registry; an empty registry means no replica is running, and nothing is started to find that out.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time

import ray

log = logging.getLogger(__name__)

NAMESPACE = "kyutai-tts"
REPORT_PERIOD_S = 1.0
# A replica that has not reported for this long is gone (scaled down, crashed).
STALE_AFTER_S = 5.0


# Restarted by Ray if its process dies (its state is rebuilt by the next reports, within a second).
@ray.remote(num_cpus=0, max_concurrency=64, max_restarts=-1)
class WorkerRegistry:
    """Async methods only: they all run on the actor's one event loop, never two at once, so the
    dicts below need no lock (sync methods would run on a thread pool)."""

    def __init__(self):
        self._reports: dict[str, dict] = {}
        self._seen_at: dict[str, float] = {}
        self._commands: dict[int, dict] = {}
        self._ids = itertools.count(1)

    async def report(self, replica: str, status: dict, done: dict[int, dict] | None = None) -> list[dict]:
        """Stores a replica's status and results of commands; returns commands for it."""
        now = time.monotonic()
        self._reports[replica] = status
        self._seen_at[replica] = now
        for command_id, result in (done or {}).items():
            if command_id in self._commands:
                self._commands[command_id]["results"][replica] = result
        self._drop_stale(now)
        return [{"id": cid, **cmd["command"]} for cid, cmd in self._commands.items()
                if replica in cmd["pending_for"] and replica not in cmd["results"]]

    async def remove(self, replica: str) -> None:
        self._forget(replica)

    def _forget(self, replica: str) -> None:
        self._reports.pop(replica, None)
        self._seen_at.pop(replica, None)

    def _drop_stale(self, now: float) -> None:
        for replica in [r for r, seen in self._seen_at.items() if now - seen > STALE_AFTER_S]:
            self._forget(replica)
        for cid in [c for c, cmd in self._commands.items() if now - cmd["created"] > 60]:
            self._commands.pop(cid)

    async def snapshot(self) -> list[dict]:
        now = time.monotonic()
        self._drop_stale(now)
        return [{**status, "reported_s_ago": round(now - self._seen_at[r], 2)}
                for r, status in sorted(self._reports.items())]

    async def submit(self, command: dict, replicas: list[str]) -> int:
        command_id = next(self._ids)
        self._commands[command_id] = {"command": command, "pending_for": set(replicas),
                                      "results": {}, "created": time.monotonic()}
        return command_id

    async def results(self, command_id: int) -> dict:
        cmd = self._commands.get(command_id)
        if cmd is None:
            return {"pending": [], "results": {}}
        return {"pending": sorted(cmd["pending_for"] - set(cmd["results"]) & set(self._reports)),
                "results": dict(cmd["results"])}


def registry_name(app_name: str) -> str:
    return f"tts-worker-registry-{app_name}"


# Every Ray head node has this resource (1 unit): a sliver of it keeps an actor on the head, which
# an autoscaler never removes (GPU nodes come and go with the replicas).
HEAD_NODE = {"node:__internal_head__": 0.001}


def get_registry(app_name: str):
    """The app's registry actor, created on first use, on the head node. Detached, so it outlives
    replicas scaling up and down; it holds no CPU (num_cpus=0)."""
    return WorkerRegistry.options(name=registry_name(app_name), namespace=NAMESPACE, resources=HEAD_NODE,
                                  lifetime="detached", get_if_exists=True).remote()


class RegistryReporter:
    """Runs in a TTSWorker replica: reports its status and runs the commands it receives."""

    def __init__(self, app_name: str, replica: str, get_status, run_command):
        self.app_name, self.replica = app_name, replica
        self._get_status, self._run_command = get_status, run_command
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="registry-reporter", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        registry, done = None, {}
        while not self._stop.is_set():
            try:
                registry = registry or get_registry(self.app_name)
                commands = ray.get(registry.report.remote(self.replica, self._get_status(), done), timeout=10)
                done = {cmd["id"]: self._run_command(cmd) for cmd in commands}
                if done:
                    continue  # report the results at once
            except Exception as exc:
                log.warning("status report failed: %s", exc)
                registry = None
            self._stop.wait(REPORT_PERIOD_S)

    def stop(self) -> None:
        self._stop.set()
        try:
            get_registry(self.app_name).remove.remote(self.replica)
        except Exception:
            pass
