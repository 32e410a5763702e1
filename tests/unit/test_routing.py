"""The slot-packing router's ranking (deployments/routing.py), on replica reports as Serve hands them
to a router. The same router runs under every Serve test app (configs/demo.yaml); tests/serve/test_serve_app.py
shows it on real replicas."""

from types import SimpleNamespace

from deployments.routing import rank_by_slots


def replica(name: str, active: int = 0, queued: int = 0, slots: int | None = 4, model: str = "ready"):
    stats = {} if slots is None else {"max_batch_size": slots, "active": active, "queued": queued, "model": model}
    return SimpleNamespace(replica_id=name, routing_stats=stats)


def names(ranks) -> list[list[str]]:
    return [[r.replica_id for r in rank] for rank in ranks]


def test_the_busiest_resident_replica_with_a_free_slot_comes_first():
    ranks = rank_by_slots([replica("a", active=1), replica("b", active=3), replica("c")], lambda _: None)
    assert names(ranks) == [["b"], ["a"], ["c"]]


def test_replicas_without_the_model_come_after_resident_ones_and_full_ones_last():
    replicas = [replica("cold", model="offloaded"), replica("full", active=4), replica("warm", active=1),
                replica("new", slots=None), replica("queued-full", active=2, queued=2)]
    assert names(rank_by_slots(replicas, lambda _: None)) == [["warm"], ["cold"], ["new"], ["full", "queued-full"]]


def test_requests_the_router_sent_since_the_last_report_count():
    # The report says 1 busy; the router has sent 4 since: that replica is full now.
    ranks = rank_by_slots([replica("a", active=1), replica("b")], {"a": 4, "b": None}.get)
    assert names(ranks) == [["b"], ["a"]]


def test_ties_break_by_replica_id_so_every_ingress_fills_the_same_replica():
    assert names(rank_by_slots([replica("z"), replica("m"), replica("a")], lambda _: None)) == [["a"], ["m"], ["z"]]
