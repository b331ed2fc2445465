"""Prometheus figures of the coordination service (`x0node_coord_*`), collected at scrape time.

Rules: counters only grow (they mirror the service's monotonic counters: drops by reason, operations by
result, DNS answers by kind); gauges are read from the service's state when scraped; latencies are
fixed-bucket histograms kept by the service (`Latency`, seconds). A scrape runs on the web UI's
executor thread: it copies the service's dicts (one C-level copy each, atomic under the GIL) before
reading them, reads the Raft group only through its thread-safe status and counts, and never raises —
a group that fails to answer leaves its figures out of that scrape.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("x0node.coord.metrics")

LATENCY_BUCKETS_S = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds of the latency buckets: the goals are p95 <= 50 ms (KV) and <= 150 ms (Raft writes), and
a 3 s deadline ends an operation under loss (docs/coordination.md)."""
# service.counters entries exported as their own families below; the rest are x0node_coord_events
_OPS = {"kv_put_ok": ("put", "ok"), "kv_put_failed": ("put", "failed"),
        "kv_get_ok": ("get", "ok"), "kv_get_failed": ("get", "failed")}
_POOL_CLAIMS = {"pool_claim_ok": "ok", "pool_claim_failed": "failed"}
_PROPOSALS = {"propose_ok": "ok", "propose_failed": "failed"}


class Latency:
    """A histogram of operation latencies in seconds with the LATENCY_BUCKETS_S bounds."""

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS_S) + 1)  # the last one: above every bound
        self.sum_s = 0.0

    def observe(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.sum_s += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs, ending with +Inf, as HistogramMetricFamily takes them."""
        counts = list(self.counts)
        out, acc = [], 0
        for bound, n in zip((*(f"{b:g}" for b in LATENCY_BUCKETS_S), "+Inf"), counts, strict=True):
            acc += n
            out.append((bound, float(acc)))
        return out


class CoordCollector:
    def __init__(self, service: Any) -> None:
        self.service = service

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        svc = self.service
        drops = CounterMetricFamily("x0node_coord_datagrams_dropped", "Coordination datagrams and records "
                                    "refused, by reason", labels=["reason"])
        for reason, n in sorted(dict(svc.drops).items()):
            drops.add_metric([reason], float(n))
        yield drops
        counters = dict(svc.counters)
        ops = CounterMetricFamily("x0node_coord_kv_ops", "Quorum KV operations by this node, by result",
                                  labels=["op", "result"])
        for name, labels in _OPS.items():
            ops.add_metric(list(labels), float(counters.get(name, 0)))
        yield ops
        proposals = CounterMetricFamily("x0node_coord_raft_proposals", "Commands this node proposed to the Raft "
                                        "group (pools, leases, reads), by result", labels=["result"])
        for name, result in _PROPOSALS.items():
            proposals.add_metric([result], float(counters.get(name, 0)))
        yield proposals
        claims = CounterMetricFamily("x0node_coord_pool_claims", "Claims (renewals) of this node's address pool, "
                                     "by result", labels=["result"])
        for name, result in _POOL_CLAIMS.items():
            claims.add_metric([result], float(counters.get(name, 0)))
        yield claims
        events = CounterMetricFamily("x0node_coord_events", "Other coordination service events (member "
                                     "replacements, send errors, log compactions, ...)", labels=["event"])
        for name, n in sorted(counters.items()):
            if name not in _OPS and name not in _POOL_CLAIMS and name not in _PROPOSALS:
                events.add_metric([name], float(n))
        yield events
        hist = HistogramMetricFamily("x0node_coord_kv_op_seconds", "Quorum KV operation latency (until the "
                                     "quorum answered or the deadline passed)", labels=["op"])
        for op in ("put", "get"):
            lat = svc.latency[f"kv_{op}"]
            hist.add_metric([op], lat.buckets(), lat.sum_s)
        yield hist
        lat = svc.latency["propose"]
        prop = HistogramMetricFamily("x0node_coord_raft_propose_seconds", "Raft command latency from this node "
                                     "(proposed until the machine's answer came back)")
        prop.add_metric([], lat.buckets(), lat.sum_s)
        yield prop
        dns = getattr(svc, "dns", None)
        if dns is not None:
            q = CounterMetricFamily("x0node_coord_dns_queries", "Name service queries by outcome "
                                    "(answered, nxdomain, refused, servfail, formerr, busy, oversize, tcp_busy)",
                                    labels=["result"])
            for result, n in sorted(dict(dns.counts).items()):
                q.add_metric([result], float(n))
            yield q
        yield from self._state(GaugeMetricFamily, CounterMetricFamily)

    def _state(self, gauge: Any, counter: Any) -> Iterator[Any]:
        svc = self.service

        def g(name: str, text: str, value: float) -> Any:
            fam = gauge(f"x0node_coord_{name}", text)
            fam.add_metric([], float(value))
            return fam

        members = list(svc.members)
        yield g("member", "1 if this node is a designated member of the Raft group", svc.me_hex in members)
        yield g("members", "Members of the Raft group as this node knows them", len(members))
        leader = svc.leader_hint
        info = gauge("x0node_coord_leader", "The Raft leader as this node last heard (mesh address)",
                     labels=["leader"])
        if leader:
            info.add_metric([leader], 1.0)
        yield info
        pool = svc.held_pool()
        yield g("pool_held", "1 while this node holds its address pool (by its own clock)", pool is not None)
        if pool is not None:
            yield g("pool_index", "Index of the address pool this node holds", pool["index"])
            yield g("pool_valid_seconds", "How much longer this node may use its pool without a renewal",
                    pool["valid_for_s"])
        kv = getattr(svc, "replica", None)
        if svc.cfg.get("kv") and kv is not None:
            yield g("kv_records", "KV records this node holds as a replica", len(kv.records))
            yield g("kv_hints", "KV records held for another replica (hinted handoff)", len(kv.hints))
            repairs = counter("x0node_coord_kv_read_repairs", "Records sent to stale replicas after a read")
            repairs.add_metric([], float(svc.coordinator.repairs))
            yield repairs
        group = svc.group
        yield g("raft_running", "1 while this member runs its Raft instance", group is not None)
        if group is None:
            return
        try:
            st = group.status()
            counts = group.counts()
        except Exception:  # noqa: BLE001 - a scrape never raises; the group may be stopping
            log.debug("raft group status unavailable", exc_info=True)
            return
        yield g("raft_leader", "1 if this member leads the Raft group", st["is_leader"])
        yield g("raft_has_quorum", "1 while this member sees a majority of the group", st["has_quorum"])
        yield g("raft_term", "Current Raft term", st["term"] or 0)
        yield g("raft_commit_index", "Raft commit index", st["commit_index"] or 0)
        timers = getattr(svc, "_timers", None)
        if timers is not None:
            yield g("raft_heartbeat_seconds", "Raft heartbeat interval in use", timers.heartbeat_s)
            yield g("raft_election_timeout_min_seconds", "Smallest Raft election timeout in use",
                    timers.election_min_s)
        yield g("mesh_time_seconds", "The replicated machine's mesh time", counts["mesh_time_s"])
        yield g("pools_allocated", "Address pools allocated in the replicated machine", counts["pools"])
        yield g("leases_active", "Unexpired leases in the replicated machine", counts["leases"])
        reclaimed = counter("x0node_coord_pools_reclaimed", "Pools the machine reclaimed (not renewed in time)")
        reclaimed.add_metric([], float(counts["reclaimed"]))
        yield reclaimed
