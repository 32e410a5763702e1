"""The slot-packing router (deployments/routing.py): its ranking on replica reports as Serve hands them
to a router, and its admission inside Serve's own routing loop (Ray Serve 2.53's RequestRouter, run
here on fake replicas: a replica is only its report and an answer to Serve's queue-length probe).
The same router runs under every Serve test app (configs/demo.yaml); tests/serve/test_serve_app.py
shows it on real replicas."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from ray.serve._private.common import DeploymentHandleSource, DeploymentID, ReplicaID, RequestMetadata
from ray.serve.request_router import PendingRequest

from deployments.routing import SlotPackingRouter, rank_by_slots

WORKER = DeploymentID(name="TTSWorker", app_name="unit")
MAX_ONGOING = 8  # the deployment's cap, above every replica's slots (max_batch_size: auto)


def replica(name: str, active: int = 0, queued: int = 0, slots: int | None = 4, model: str = "ready"):
    stats = {} if slots is None else {"max_batch_size": slots, "active": active, "queued": queued, "model": model}
    return SimpleNamespace(replica_id=name, routing_stats=stats)


def names(ranks) -> list[list[str]]:
    return [[r.replica_id for r in rank] for rank in ranks]


def none_placed(_) -> int:
    return 0


def test_the_busiest_resident_replica_with_a_free_slot_comes_first():
    ranks = rank_by_slots([replica("a", active=1), replica("b", active=3), replica("c")], none_placed)
    assert names(ranks) == [["b"], ["a"], ["c"]]


def test_replicas_without_the_model_come_after_resident_ones_and_full_ones_are_not_offered():
    replicas = [replica("cold", model="offloaded"), replica("full", active=4), replica("warm", active=1),
                replica("new", slots=None), replica("queued-full", active=2, queued=2)]
    assert names(rank_by_slots(replicas, none_placed)) == [["warm"], ["cold"], ["new"]]


def test_every_replica_full_offers_none():
    assert rank_by_slots([replica("a", active=2, slots=2), replica("b", active=1, queued=1, slots=2)], none_placed) == []


def test_requests_the_router_sent_since_the_last_report_count():
    # The report says 1 busy; the router has sent 4 since: that replica is full now.
    ranks = rank_by_slots([replica("a", active=1), replica("b")], {"a": 4, "b": 0}.get)
    assert names(ranks) == [["b"]]


def test_a_replica_that_has_not_reported_gets_one_request_at_a_time():
    assert names(rank_by_slots([replica("new", slots=None)], none_placed)) == [["new"]]
    assert rank_by_slots([replica("new", slots=None)], {"new": 1}.get) == []


def test_ties_break_by_replica_id_so_every_ingress_fills_the_same_replica():
    assert names(rank_by_slots([replica("z"), replica("m"), replica("a")], none_placed)) == [["a"], ["m"], ["z"]]


# ---- inside Serve's routing loop ------------------------------------------------------------------
class FakeReplica:
    """What Serve's router reads of a replica: its id, report, cap and queue-length answer."""

    def __init__(self, name: str, slots: int, active: int = 0):
        self.replica_id = ReplicaID(name, WORKER)
        self.routing_stats = {"max_batch_size": slots, "active": active, "queued": 0, "model": "ready"}
        self.max_ongoing_requests = MAX_ONGOING
        self.is_cross_language = False
        self.node_id, self.availability_zone, self.multiplexed_model_ids = "node", None, set()

    async def get_queue_len(self, *, deadline_s: float) -> int:
        return 0  # Serve's own cap (max_ongoing_requests) never stops a request here


class CountingRouter(SlotPackingRouter):
    """The router, counting how often Serve asks it for replicas."""

    def initialize_state(self, **kwargs) -> None:
        super().initialize_state(**kwargs)
        self.asked = 0

    async def choose_replicas(self, candidate_replicas, pending_request=None):
        self.asked += 1
        return await super().choose_replicas(candidate_replicas, pending_request)


def router(*replicas: FakeReplica) -> CountingRouter:
    built = CountingRouter(WORKER, DeploymentHandleSource.UNKNOWN, use_replica_queue_len_cache=True)
    built.initialize_state()
    built.update_replicas(list(replicas))
    return built


def request(n: int) -> PendingRequest:
    return PendingRequest(args=[], kwargs={}, metadata=RequestMetadata(request_id=str(n), internal_request_id=str(n)))


async def send(routing: SlotPackingRouter, pending: PendingRequest) -> str:
    """What Serve's handle does with a request: wait for a replica, then send it."""
    chosen = await routing._choose_replica_for_request(pending)
    routing.on_send_request(chosen.replica_id)
    return chosen.replica_id.unique_id


async def until_asked(routing: CountingRouter, times: int) -> None:
    async def wait() -> None:
        start = routing.asked
        while routing.asked < start + times:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(wait(), 30)  # a guard against a hang only


def test_a_request_for_full_replicas_waits_in_the_handle_until_a_report_frees_a_row():
    async def scenario():
        routing = router(FakeReplica("a", slots=2, active=2))
        pending = request(1)
        waiting = asyncio.ensure_future(send(routing, pending))
        await until_asked(routing, 3)  # asked, declined, asked again after backoffs
        assert not waiting.done()  # Serve's cap (8) would have taken it: the router did not
        assert pending.routing_context.should_backoff  # asks again after a backoff, not in a busy loop
        routing.update_replicas([FakeReplica("a", slots=2, active=1)])  # the next report: a row freed
        return await asyncio.wait_for(waiting, 10)

    assert asyncio.run(scenario()) == "a"


def test_a_burst_fills_each_replica_to_its_slots_and_the_rest_waits():
    async def scenario():
        routing = router(FakeReplica("a", slots=2), FakeReplica("b", slots=3))
        burst = [asyncio.ensure_future(send(routing, request(n))) for n in range(6)]
        await until_asked(routing, 10)
        placed = sorted(task.result() for task in burst if task.done())
        waiting = [task for task in burst if not task.done()]
        for task in waiting:
            task.cancel()
        return placed, len(waiting)

    # Before any report moves: every replica gets exactly its free rows, one request waits.
    assert asyncio.run(scenario()) == (["a", "a", "b", "b", "b"], 1)


def test_the_routers_own_count_follows_answers_and_finished_requests():
    class Result:
        def add_done_callback(self, callback):
            self.finish = lambda: callback(None)

    async def scenario():
        routing = router(FakeReplica("a", slots=2))
        a = routing.curr_replicas[ReplicaID("a", WORKER)].replica_id
        for _ in range(2):
            routing.on_send_request(a)
        assert routing._ongoing(a) == 2
        routing.on_new_queue_len_info(a, SimpleNamespace(accepted=False, num_ongoing_requests=8))  # refused
        routing.on_new_queue_len_info(a, SimpleNamespace(accepted=True, num_ongoing_requests=1))
        result = Result()
        routing.on_request_routed(request(1), a, result)
        assert routing._ongoing(a) == 1  # the refused one is gone, the accepted one speaks
        result.finish()
        assert routing._ongoing(a) == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("failure", ["on_replica_actor_died", "on_replica_actor_unavailable"])
def test_a_failed_replica_keeps_no_sends_waiting_for_an_answer(failure):
    async def scenario():
        routing = router(FakeReplica("a", slots=2))
        a = ReplicaID("a", WORKER)
        routing.on_send_request(a)
        getattr(routing, failure)(a)
        return routing._ongoing(a)

    assert asyncio.run(scenario()) == 0
