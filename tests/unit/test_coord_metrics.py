"""Coordination figures on the daemon's /metrics registry (x0node/coord/metrics.py): a real service on
loopback with a one-member pysyncobj group; a refused datagram, a DNS refusal, a KV read without quorum
and a pool claim through Raft each show up under their `x0node_coord_` family."""

from __future__ import annotations

import asyncio
import random
import socket
import time

import dns.asyncquery
import dns.message
import dns.rcode
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from x0node.coord.group import RaftGroup
from x0node.coord.metrics import LATENCY_BUCKETS_S, Latency
from x0node.coord.service import create_service, validate_config
from x0node.coord.timers import LIBRARY_TIMERS
from x0node.daemon.bus import EventBus
from x0node.daemon.services import ServiceContext
from x0node.proto.identity import Identity
from x0node.proto.router import Router
from x0node.proto.trust import TrustStore

WAIT_S = 30.0  # generous: the machine is loaded; nothing here asserts a duration


def _free_port(kind: int, host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def _until(check, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_latency_buckets_are_cumulative():
    lat = Latency()
    for s in (0.001, 0.003, 0.04, 0.04, 7.0, -1.0):
        lat.observe(s)
    b = dict(lat.buckets())
    assert list(b) == [f"{x:g}" for x in LATENCY_BUCKETS_S] + ["+Inf"]
    assert (b["0.002"], b["0.005"], b["0.05"], b["5"], b["+Inf"]) == (2, 3, 5, 5, 6)
    assert abs(lat.sum_s - 7.084) < 1e-9


async def test_coordination_figures_on_the_daemon_registry(tmp_path):
    identity = Identity.generate(b"\x07" * 32)
    router = Router(identity, TrustStore(allowed_keys={identity.public_key}), None, random.Random(1))
    registry = CollectorRegistry()
    ctx = ServiceContext(router=router, config=None, data_dir=tmp_path, registry=registry, bus=EventBus(),
                         interfaces=[], node_id=identity.node_id.hex(), mesh_addr="::1", provider=None)
    port, dns_port = _free_port(socket.SOCK_DGRAM, "::1"), _free_port(socket.SOCK_STREAM, "127.0.0.1")
    svc = create_service(validate_config({"port": port, "dns_listen": [f"127.0.0.1:{dns_port}"],
                                          "hostname": "metrics-test"}))
    await svc.start(ctx)
    try:
        svc.coordinator.timeout_s = 0.3  # one node never makes a quorum: let its operations fail quickly
        assert _samples(registry)[("x0node_coord_raft_running", ())] == 0.0

        # refused input: a datagram that is no coordination datagram, over the service's own socket
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.sendto(b"junk", ("::1", port))
        await _until(lambda: svc.drops["bad_magic"] == 1, "the drop")
        q = dns.message.make_query("example.com.", "A")
        assert (await dns.asyncquery.udp(q, "127.0.0.1", port=dns_port, timeout=5)).rcode() == dns.rcode.REFUSED
        # a quorum read that cannot succeed on one node: failed, with its latency
        assert not (await svc.kv_get("app/x"))["ok"]

        # a one-member Raft group on loopback, attached as _start_group attaches a member's own
        svc._attach_group(RaftGroup("::1", _free_port(socket.SOCK_STREAM, "::1"), [], b"k" * 32, tmp_path / "raft",
                                    LIBRARY_TIMERS), LIBRARY_TIMERS, time.monotonic())
        await _until(lambda: svc.group.is_leader() and svc.group.view()["layout"] is not None,
                     "the leader to configure the pools")
        await svc._claim_pool()
        assert svc.held_pool() is not None

        m = _samples(registry)
        assert m[("x0node_coord_datagrams_dropped_total", (("reason", "bad_magic"),))] == 1.0
        assert m[("x0node_coord_dns_queries_total", (("result", "refused"),))] == 1.0
        assert m[("x0node_coord_kv_ops_total", (("op", "get"), ("result", "failed")))] >= 1.0
        assert m[("x0node_coord_kv_op_seconds_count", (("op", "get"),))] >= 1.0
        assert m[("x0node_coord_kv_op_seconds_bucket", (("le", "+Inf"), ("op", "get")))] >= 1.0
        assert m[("x0node_coord_raft_proposals_total", (("result", "ok"),))] == 1.0
        assert m[("x0node_coord_raft_propose_seconds_count", ())] == 1.0
        assert m[("x0node_coord_pool_claims_total", (("result", "ok"),))] == 1.0
        assert m[("x0node_coord_pool_held", ())] == 1.0 and m[("x0node_coord_pool_index", ())] == 0.0
        assert m[("x0node_coord_raft_running", ())] == 1.0 and m[("x0node_coord_raft_leader", ())] == 1.0
        assert m[("x0node_coord_raft_has_quorum", ())] == 1.0 and m[("x0node_coord_raft_term", ())] >= 1.0
        assert m[("x0node_coord_leader", (("leader", "::1"),))] == 1.0
        assert m[("x0node_coord_pools_allocated", ())] == 1.0 and m[("x0node_coord_leases_active", ())] == 0.0
        assert m[("x0node_coord_raft_heartbeat_seconds", ())] == LIBRARY_TIMERS.heartbeat_s
        assert m[("x0node_coord_member", ())] == 0.0 and m[("x0node_coord_kv_records", ())] == 0.0
    finally:
        await svc.stop()
    # stopped: its families leave the registry with it
    assert not any(name.startswith("x0node_coord_") for name, _ in _samples(registry))
