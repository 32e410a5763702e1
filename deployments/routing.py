"""Which TTSWorker replica gets the next request: fill the GPUs that already speak, let the others rest,
and never give a replica more requests than the rows it has.

Serve's default router spreads requests over every replica (power of two choices), so under a
light load no replica is ever idle long enough to offload its weights or be scaled down, and each
pays a model load. With the slot engine one replica serves many streams for almost the cost of
one (an H100 tick costs the same with 1 or 64 rows speaking), so this router packs: replicas with
the model in GPU memory and a free slot first, the busiest of them first; then replicas that would
have to load.

Admission follows each replica's own slot count, not `max_ongoing_requests`: with
`max_batch_size: auto` every replica chooses its rows on its GPU (engine/sizing.py) and the
deployment's `max_ongoing_requests` is the largest candidate, so Serve's own cap would let a replica
that chose fewer rows queue requests behind its busy ones while another replica has rows free.
When every replica is full, the router offers none: Serve's router then keeps the request in the
handle's queue (where the autoscaler sees it) and asks again after a backoff (25 ms doubling to
0.5 s, Ray Serve 2.53), with the replicas' newest reports.

What a replica holds is the larger of two counts:
- its last report (`TTSWorker.record_routing_stats`, every `request_routing_stats_period_s`: 1 s in
  the configs): its slots, its rows speaking and its requests waiting; the only count that sees
  other ingress replicas' requests;
- this router's own requests on it: sent and not answered yet, or accepted and not finished. A
  burst is routed before any report moves; this count moves at once.
Serve's queue-length cache is not used: it is written when a replica accepts a request and never
when one finishes, so it would keep a replica "full" for seconds after its rows freed.

Between two reports, two ingress replicas may both give the last free row of one replica: the
second request then waits in that replica's own queue (never in a row: the scheduler admits no
more rows than it chose) until the next report stops the others. The window is one report period.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable, Optional

from ray.serve.request_router import FIFOMixin, PendingRequest, RequestRouter, RunningReplica

RESIDENT_STATES = ("ready", "loading")
# The requests this router gives a replica that has not reported its slots yet (just started): one
# at a time, until its first report (a second at most) says how many rows it has.
UNREPORTED_SLOTS = 1
# A replica given to a request is sent it in the next turn of the router's loop; a request whose
# caller was cancelled in between is never sent, and stops counting after this.
CHOSEN_TTL_S = 2.0


def load(replica, ongoing: Callable[[object], int]) -> tuple[int, int]:
    """(requests it holds, requests it may hold) for one replica. `replica.routing_stats` is its
    last report ({"max_batch_size", "active", "queued", "model"}); `ongoing(replica_id)` the
    router's own count of requests on it."""
    stats = replica.routing_stats or {}
    known = ongoing(replica.replica_id)
    slots = stats.get("max_batch_size")
    if slots is None:  # no report yet (a replica just started): one request at a time
        return known, UNREPORTED_SLOTS
    return max(stats.get("active", 0) + stats.get("queued", 0), known), slots


def rank_by_slots(replicas: list, ongoing: Callable[[object], int]) -> list[list]:
    """Ranks of the replicas with a free slot, most preferred first; full ones are left out (an
    empty list: every replica is full)."""
    resident, cold = [], []
    for replica in replicas:
        busy, slots = load(replica, ongoing)
        if busy >= slots:
            continue
        resident_model = (replica.routing_stats or {}).get("model") in RESIDENT_STATES
        (resident if resident_model else cold).append((busy, replica))

    def packed(entries: list) -> list[list]:
        # The busiest first (pack), one replica per rank; replica ids break ties the same way in
        # every ingress replica, so they all fill the same GPU first.
        entries.sort(key=lambda entry: (-entry[0], str(entry[1].replica_id)))
        return [[replica] for _, replica in entries]

    return packed(resident) + packed(cold)


class SlotPackingRouter(FIFOMixin, RequestRouter):
    """Runs in each ingress replica (in its handle to TTSWorker)."""

    def initialize_state(self, **kwargs) -> None:
        # This router's requests per replica: given it and not sent yet (monotonic times), sent and
        # awaiting the replica's accept-or-reject answer, accepted and not finished. Done
        # callbacks come from a Ray thread: a lock.
        self._chosen: dict = collections.defaultdict(collections.deque)
        self._sending: collections.Counter = collections.Counter()
        self._in_flight: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def _ongoing(self, replica_id) -> int:
        with self._lock:
            chosen = self._chosen.get(replica_id)
            while chosen and time.monotonic() - chosen[0] > CHOSEN_TTL_S:
                chosen.popleft()  # its caller was cancelled before sending it
            return len(chosen or ()) + self._sending.get(replica_id, 0) + self._in_flight.get(replica_id, 0)

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: Optional[PendingRequest] = None) -> list[list[RunningReplica]]:
        ranks = rank_by_slots(candidate_replicas, self._ongoing)
        if not ranks and pending_request is not None:
            # Every replica is full: without this flag Serve asks again at once, in a busy loop.
            pending_request.routing_context.should_backoff = True
        return ranks

    def _fulfill_next_pending_request(self, replica: RunningReplica, request_metadata=None) -> None:
        """Where Serve gives the replica it selected to a waiting request (Ray Serve 2.53's routing
        loop; a private method, pinned with Ray and covered by tests/unit/test_routing.py). Several
        routing tasks choose concurrently and a choice is sent one loop turn later, so a burst can
        select a replica another task has just filled: the count is checked again here, and a
        replica full by now is not given (the request stays queued; the next choice sees it full)."""
        busy, slots = load(replica, self._ongoing)
        if busy >= slots:
            return
        with self._lock:
            self._chosen[replica.replica_id].append(time.monotonic())
        super()._fulfill_next_pending_request(replica, request_metadata)

    def on_send_request(self, replica_id) -> None:
        super().on_send_request(replica_id)
        with self._lock:
            chosen = self._chosen.get(replica_id)
            if chosen:
                chosen.popleft()
            self._sending[replica_id] += 1

    def on_new_queue_len_info(self, replica_id, queue_len_info) -> None:
        # The replica's answer to a request sent with rejection (Serve's default): accepted ones
        # move to `_in_flight` in `on_request_routed`, right after this.
        super().on_new_queue_len_info(replica_id, queue_len_info)
        with self._lock:
            _decrement(self._sending, replica_id)

    def on_request_routed(self, pending_request: PendingRequest, replica_id, result) -> None:
        with self._lock:
            self._in_flight[replica_id] += 1

        def finished(_) -> None:
            with self._lock:
                _decrement(self._in_flight, replica_id)

        result.add_done_callback(finished)

    def on_replica_actor_unavailable(self, replica_id) -> None:
        # A send to it failed before its answer: Serve routes that request again (a new send).
        super().on_replica_actor_unavailable(replica_id)
        with self._lock:
            self._sending.pop(replica_id, None)

    def on_replica_actor_died(self, replica_id) -> None:
        super().on_replica_actor_died(replica_id)
        with self._lock:
            for counts in (self._chosen, self._sending, self._in_flight):
                counts.pop(replica_id, None)


def _decrement(counter: collections.Counter, key) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
