"""Which TTSWorker replica gets the next request: fill the GPUs that already speak, let the others rest.

Serve's default router spreads requests over every replica (power of two choices), so under a
light load no replica is ever idle long enough to offload its weights or be scaled down, and each
pays a model load. With the slot engine one replica serves many streams for almost the cost of
one (an H100 tick costs the same with 1 or 64 rows speaking), so this router packs: replicas with
the model in GPU memory and a free slot first, the busiest of them first; then replicas that would
have to load; only when every slot is taken does it fall back to the shortest queue.

Replicas report their slots through Serve's routing stats (`TTSWorker.record_routing_stats`,
every `request_routing_stats_period_s`); between two reports the router's own count of requests it
placed keeps it from over-filling a replica. A burst is routed before any of those counts moves,
so the configs also set each replica's `max_ongoing_requests` to its slots: a full replica refuses,
and Serve sends the request on to the next rank (or keeps it queued in the ingress).
"""

from __future__ import annotations

import collections
import threading
from typing import Callable, Optional

from ray.serve.request_router import FIFOMixin, PendingRequest, RequestRouter, RunningReplica

RESIDENT_STATES = ("ready", "loading")


def rank_by_slots(replicas: list, ongoing: Callable[[object], Optional[int]]) -> list[list]:
    """Ranks of replicas, most preferred first. `replica.routing_stats` holds the replica's last
    report ({"max_batch_size", "active", "queued", "model"}); `ongoing(replica_id)` is the router's
    own count of requests on it (None when unknown)."""
    resident, cold, full = [], [], []
    for replica in replicas:
        stats = replica.routing_stats or {}
        slots = stats.get("max_batch_size")
        if slots is None:  # no report yet (a replica just started): treat it as empty and cold
            cold.append((0, replica))
            continue
        reported = stats.get("active", 0) + stats.get("queued", 0)
        known = ongoing(replica.replica_id)
        busy = max(reported, known) if known is not None else reported
        if busy >= slots:
            full.append(replica)
        elif stats.get("model") in RESIDENT_STATES:
            resident.append((busy, replica))
        else:
            cold.append((busy, replica))

    def packed(entries: list) -> list[list]:
        # The busiest first (pack), one replica per rank; replica ids break ties the same way in
        # every ingress replica, so they all fill the same GPU first.
        entries.sort(key=lambda entry: (-entry[0], str(entry[1].replica_id)))
        return [[replica] for _, replica in entries]

    return packed(resident) + packed(cold) + ([full] if full else [])


class SlotPackingRouter(FIFOMixin, RequestRouter):
    """Runs in each ingress replica (in its handle to TTSWorker)."""

    def initialize_state(self, **kwargs) -> None:
        # Requests this router placed that have not finished, per replica. Serve's queue-length
        # cache is overwritten by each replica's count at the moment it accepted a request, which
        # lags behind a burst: this count does not.
        self._in_flight: collections.Counter = collections.Counter()
        self._in_flight_lock = threading.Lock()  # done callbacks come from a Ray thread

    def _busy(self, replica_id) -> Optional[int]:
        cached = self.replica_queue_len_cache.get(replica_id)
        with self._in_flight_lock:
            placed = self._in_flight.get(replica_id, 0)
        return placed if cached is None else max(cached, placed)

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: Optional[PendingRequest] = None) -> list[list[RunningReplica]]:
        return rank_by_slots(candidate_replicas, self._busy)

    def on_request_routed(self, pending_request: PendingRequest, replica_id, result) -> None:
        with self._in_flight_lock:
            self._in_flight[replica_id] += 1

        def finished(_) -> None:
            with self._in_flight_lock:
                self._in_flight[replica_id] -= 1
                if self._in_flight[replica_id] <= 0:
                    del self._in_flight[replica_id]

        result.add_done_callback(finished)
