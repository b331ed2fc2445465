"""Seeded generator of labelled per-node telemetry on mesh graphs (training and held-out evaluation).

Rules and invariants:
- A scenario is fully determined by its integer seed (numpy PCG64); the same seed gives the same graph,
  telemetry and labels on every machine with the pinned numpy.
- A scenario is a connected random geometric mesh of 16..64 nodes observed for `WINDOWS_PER_DAY`
  windows of one day (diurnal load with a random phase and amplitude, per-scenario link technology so
  absolute RTT and background loss differ between meshes) with 0..MAX_FAULTS injected faults.
- Labels per (window, node): 1 = the node is the source or an endpoint of a fault, 0 = normal,
  -1 = "don't care" (onset of a gradual degradation whose added loss is still below
  `DEGRADATION_LABEL_LOSS`); -1 rows are excluded from training and from every metric.
- The split is by whole scenarios and fixed: scenario i of the suite is held-out test when
  i % 8 == 0, validation (threshold choice) when i % 8 == 1, training otherwise.
- Raw features follow `features.FEATURES` (units in the names); normalisation is done by callers.
- Link loss is what a node measures: binomial over LOSS_PROBES_PER_WINDOW hellos around the link's
  true loss (calibrated against the testbed, like the RTT range).

Pure numpy; no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from x0node.anomaly.features import K_NEIGHBOURS, N_FEATURES, gather_neighbours, normalise, sample_neighbours

WINDOWS_PER_DAY = 48
SUITE_SEED = 6006
SUITE_SIZE = 160
DEGRADATION_LABEL_LOSS = 0.06
MAX_FAULTS = 10
# Calibration against the namespace testbed (models/calibration/, see models/MODEL_CARD.md):
LOSS_PROBES_PER_WINDOW = 300  # hellos behind one loss figure: 30 s evaluation / 0.1 s hello interval
RTT_SCALE_MS = (0.05, 40.0)  # veth/wired links measure ~0.02-0.1 ms; long-range radio tens of ms
FAULT_KINDS: tuple[str, ...] = (
    "congestion",
    "link_degradation",
    "link_flapping",
    "lossy_link",
    "cpu_exhaustion",
    "memory_exhaustion",
    "interface_errors",
    "blackhole",
)


@dataclass(frozen=True)
class Fault:
    kind: str
    nodes: tuple[int, ...]  # labelled nodes (source node, or both endpoints of a link)
    start: int  # first window
    end: int  # one past the last window


@dataclass
class Scenario:
    seed: int
    n_nodes: int
    neighbours: list[list[int]]
    raw: np.ndarray  # [T, n, 8] raw feature values
    labels: np.ndarray  # [T, n] int8: 1 anomalous, 0 normal, -1 don't care
    faults: list[Fault] = field(default_factory=list)


def split_of(index: int) -> str:
    """The fixed split of suite scenario `index`: 'test', 'val' or 'train'."""
    return "test" if index % 8 == 0 else "val" if index % 8 == 1 else "train"


def suite_seed(index: int, suite_seed_base: int = SUITE_SEED) -> int:
    return suite_seed_base * 100_003 + index


def suite_indices(split: str, size: int = SUITE_SIZE) -> list[int]:
    return [i for i in range(size) if split_of(i) == split]


def _combine(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Overlapping labels: 1 wins over -1 (don't care), which wins over 0."""
    return np.where((old == 1) | (new == 1), 1, np.where((old == -1) | (new == -1), -1, 0)).astype(np.int8)


def _graph(rng: np.random.Generator, n: int) -> tuple[list[tuple[int, int]], list[list[int]]]:
    pos = rng.random((n, 2))
    mean_degree = rng.uniform(3.0, 6.0)
    radius = float(np.sqrt(mean_degree / (n * np.pi)))
    d = np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1))
    adj = (d < radius) & ~np.eye(n, dtype=bool)
    # join components: link the closest pair between the component of node 0 and the rest
    while True:
        seen = np.zeros(n, dtype=bool)
        stack = [0]
        seen[0] = True
        while stack:
            u = stack.pop()
            for v in np.nonzero(adj[u] & ~seen)[0]:
                seen[v] = True
                stack.append(int(v))
        if seen.all():
            break
        sub = np.where(seen[:, None] & ~seen[None, :], d, np.inf)
        u, v = np.unravel_index(np.argmin(sub), sub.shape)
        adj[u, v] = adj[v, u] = True
    edges = [(int(u), int(v)) for u, v in zip(*np.nonzero(np.triu(adj)), strict=True)]
    neighbours = [[int(v) for v in np.nonzero(adj[u])[0]] for u in range(n)]
    return edges, neighbours


def generate_scenario(seed: int, n_faults: int | None = None) -> Scenario:
    """One labelled scenario. `n_faults` overrides the random fault count (tests use 0)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(16, 65))
    t_n = WINDOWS_PER_DAY
    edges, neighbours = _graph(rng, n)
    e_n = len(edges)
    eu = np.array([u for u, _ in edges])
    ev = np.array([v for _, v in edges])

    # scenario-level environment: link technology (RTT scale), RF background loss, load amplitude
    rtt_scale_ms = float(np.exp(rng.uniform(np.log(RTT_SCALE_MS[0]), np.log(RTT_SCALE_MS[1]))))
    bg_loss = rng.uniform(0.0, 0.04)
    amp = rng.uniform(0.3, 0.75)
    phase = rng.uniform(0.0, 1.0)
    t = np.arange(t_n)
    diurnal = 0.5 - 0.5 * np.cos(2 * np.pi * (t / t_n + phase))  # [T]

    role = rng.uniform(0.5, 1.3, n)
    cpu_base = rng.uniform(0.05, 0.2, n)
    mem_base = rng.uniform(0.2, 0.5, n)
    base_rtt = rtt_scale_ms * rng.uniform(0.5, 1.5, e_n)
    base_loss = rng.uniform(0.0, bg_loss, e_n)

    load_add = np.zeros((t_n, n))
    rtt_mult = np.ones((t_n, e_n))
    loss_add = np.zeros((t_n, e_n))
    changes_add = np.zeros((t_n, n))
    err_add = np.zeros((t_n, n))
    cpu_force = np.full((t_n, n), np.nan)
    mem_force = np.full((t_n, n), np.nan)
    fwd_force = np.full((t_n, n), np.nan)
    labels = np.zeros((t_n, n), dtype=np.int8)
    faults: list[Fault] = []

    if n_faults is None:
        n_faults = 0 if rng.random() < 0.1 else int(min(MAX_FAULTS, 2 + rng.poisson(3.0)))
    incident = [[i for i in range(e_n) if eu[i] == v or ev[i] == v] for v in range(n)]
    for _ in range(n_faults):
        kind = FAULT_KINDS[int(rng.integers(len(FAULT_KINDS)))]
        dur = int(rng.integers(4, 21)) if kind != "link_degradation" else int(rng.integers(10, 31))
        start = int(rng.integers(0, t_n - 3))
        end = min(t_n, start + dur)
        sl = slice(start, end)
        span = end - start
        if kind in ("link_degradation", "link_flapping", "lossy_link"):
            e = int(rng.integers(e_n))
            nodes = (int(eu[e]), int(ev[e]))
            if kind == "link_degradation":
                final = rng.uniform(0.15, 0.4)
                ramp = final * (np.arange(1, span + 1) / span)
                loss_add[sl, e] += ramp
                rtt_mult[sl, e] *= 1.0 + 2.0 * ramp / final
                lab = np.where(ramp >= DEGRADATION_LABEL_LOSS, 1, -1).astype(np.int8)
                for v in nodes:
                    labels[sl, v] = _combine(labels[sl, v], lab)
            elif kind == "link_flapping":
                changes_add[sl, list(nodes)] += rng.poisson(rng.uniform(2, 10), (span, 1))
                # hellos lost while down; on the testbed a flapping link often showed no loss at all
                loss_add[sl, e] += rng.uniform(0.0, 0.3, span) * (rng.random(span) < 0.5)
            else:
                loss_add[sl, e] += rng.uniform(0.12, 0.35)
            if kind != "link_degradation":
                labels[sl, list(nodes)] = 1
        else:
            v = int(rng.integers(n))
            nodes = (v,)
            if kind == "congestion":
                load_add[sl, v] += rng.uniform(0.35, 0.6)
                rtt_mult[start:end, incident[v]] *= rng.uniform(2.5, 5.0)
                loss_add[start:end, incident[v]] += rng.uniform(0.02, 0.07)
            elif kind == "cpu_exhaustion":
                cpu_force[sl, v] = rng.uniform(0.93, 1.0, span)
                rtt_mult[start:end, incident[v]] *= rng.uniform(1.5, 3.0)
            elif kind == "memory_exhaustion":
                mem_force[sl, v] = np.minimum(1.0, rng.uniform(0.9, 0.95) + 0.005 * np.arange(span))
            elif kind == "interface_errors":
                err_add[sl, v] += np.exp(rng.uniform(np.log(20.0), np.log(500.0), span))
                loss_add[start:end, incident[v]] += rng.uniform(0.0, 0.03)
            else:  # blackhole: forwards nothing, keeps sending hellos (links look healthy)
                fwd_force[sl, v] = rng.uniform(0.0, 0.15, span)
            labels[sl, v] = 1
        faults.append(Fault(kind, nodes, start, end))

    noise = rng.normal
    load = role[None, :] * (0.06 + amp * diurnal[:, None]) * (1 + noise(0, 0.05, (t_n, n)))
    load = np.clip(load + noise(0, 0.02, (t_n, n)) + load_add, 0.0, 1.0)
    edge_load = np.maximum(load[:, eu], load[:, ev])
    rtt_e = base_rtt[None, :] * (1 + 2 * edge_load**3) * rtt_mult * (1 + np.abs(noise(0, 0.05, (t_n, e_n))))
    loss_true = np.clip(base_loss[None, :] + 0.02 * edge_load**4 + loss_add, 0, 1)
    loss_e = rng.binomial(LOSS_PROBES_PER_WINDOW, loss_true) / LOSS_PROBES_PER_WINDOW  # measured over hellos
    rtt = np.zeros((t_n, n))
    loss_max = np.zeros((t_n, n))
    for v in range(n):
        inc = incident[v]
        rtt[:, v] = rtt_e[:, inc].mean(axis=1)
        loss_max[:, v] = loss_e[:, inc].max(axis=1)
    cpu = np.clip(cpu_base[None, :] + 0.45 * load + noise(0, 0.02, (t_n, n)), 0, 1)
    cpu = np.where(np.isnan(cpu_force), cpu, cpu_force)
    mem = np.clip(mem_base[None, :] + 0.15 * load + noise(0, 0.01, (t_n, n)), 0, 1)
    mem = np.where(np.isnan(mem_force), mem, mem_force)
    changes = rng.poisson(0.03, (t_n, n)) + changes_add
    errors = rng.exponential(0.05, (t_n, n)) * (rng.random((t_n, n)) < 0.3) + err_add
    fwd = np.clip(1 - 0.02 * load**4 - np.abs(noise(0, 0.004, (t_n, n))), 0, 1)
    fwd = np.where(np.isnan(fwd_force), fwd, fwd_force)
    raw = np.stack([cpu, mem, load, rtt, loss_max, changes, errors, fwd], axis=-1)
    assert raw.shape == (t_n, n, N_FEATURES)
    return Scenario(seed, n, neighbours, raw, labels, faults)


@dataclass
class Rows:
    """Model-ready rows of one or more scenarios (label -1 rows already removed)."""

    x_self: np.ndarray  # [N, 8] normalised
    x_nbr: np.ndarray  # [N, K, 8] normalised
    mask: np.ndarray  # [N, K]
    y: np.ndarray  # [N] 0/1
    scenario: np.ndarray  # [N] suite index
    kind: np.ndarray  # [N] fault kind index+1 for positives (0 normal)


def scenario_rows(sc: Scenario, index: int, k: int = K_NEIGHBOURS) -> Rows:
    rng = np.random.default_rng(sc.seed + 1)
    idx = sample_neighbours(sc.neighbours, k, rng)
    xn = normalise(sc.raw)  # [T, n, 8]
    x_nbr, mask = gather_neighbours(xn, idx)  # [T, n, k, 8], [T, n, k]
    kind = np.zeros(sc.labels.shape, dtype=np.int8)
    for f in sc.faults:
        for v in f.nodes:
            kind[f.start : f.end, v] = np.where(sc.labels[f.start : f.end, v] == 1, FAULT_KINDS.index(f.kind) + 1, 0)
    keep = (sc.labels >= 0).reshape(-1)
    return Rows(
        x_self=xn.reshape(-1, N_FEATURES)[keep],
        x_nbr=x_nbr.reshape(-1, k, N_FEATURES)[keep],
        mask=mask.reshape(-1, k)[keep],
        y=sc.labels.reshape(-1)[keep].astype(np.int8),
        scenario=np.full(int(keep.sum()), index, dtype=np.int32),
        kind=kind.reshape(-1)[keep],
    )


def concat_rows(parts: list[Rows]) -> Rows:
    return Rows(*(np.concatenate([getattr(p, f) for p in parts]) for f in Rows.__dataclass_fields__))


def split_rows(split: str, size: int = SUITE_SIZE) -> Rows:
    """All rows of one fixed split of the suite."""
    return concat_rows([scenario_rows(generate_scenario(suite_seed(i)), i) for i in suite_indices(split, size)])


def rows_digest(rows: Rows) -> str:
    """sha256 over the rows (detects a generator that no longer reproduces the recorded split)."""
    h = hashlib.sha256()
    for f in ("x_self", "x_nbr", "mask", "y"):
        h.update(np.ascontiguousarray(getattr(rows, f)).tobytes())
    return h.hexdigest()
