import numpy as np

from x0lab.anomaly import scenarios as S
from x0node.anomaly import features as F


def test_same_seed_same_scenario():
    a, b = S.generate_scenario(123), S.generate_scenario(123)
    assert np.array_equal(a.raw, b.raw) and np.array_equal(a.labels, b.labels) and a.faults == b.faults
    c = S.generate_scenario(124)
    assert not np.array_equal(a.raw, c.raw) and (a.neighbours != c.neighbours or a.faults != c.faults)


def test_graph_is_connected_and_symmetric():
    sc = S.generate_scenario(7)
    assert 16 <= sc.n_nodes <= 64
    for v, nbs in enumerate(sc.neighbours):
        for u in nbs:
            assert v in sc.neighbours[u]
    seen, todo = {0}, [0]
    while todo:
        for u in sc.neighbours[todo.pop()]:
            if u not in seen:
                seen.add(u)
                todo.append(u)
    assert len(seen) == sc.n_nodes


def test_split_is_by_whole_scenarios_and_fixed():
    test, val, train = (set(S.suite_indices(s)) for s in ("test", "val", "train"))
    assert not (test & val or test & train or val & train)
    assert len(test | val | train) == S.SUITE_SIZE
    assert 0 in test and 1 in val and 2 in train


def test_no_fault_scenario_is_all_normal():
    sc = S.generate_scenario(99, n_faults=0)
    assert not sc.faults and (sc.labels == 0).all()


def test_fault_signatures_and_labels():
    # find scenarios with each kind and check the fault's hallmark on the labelled node
    found = {}
    for seed in range(200):
        sc = S.generate_scenario(seed)
        for f in sc.faults:
            found.setdefault(f.kind, (sc, f))
        if len(found) == len(S.FAULT_KINDS):
            break
    assert set(found) == set(S.FAULT_KINDS)
    i = {n: k for k, n in enumerate(F.FEATURES)}
    sc, f = found["blackhole"]
    assert (sc.raw[f.start : f.end, f.nodes[0], i["fwd_ratio"]] <= 0.15).all()
    assert (sc.labels[f.start : f.end, f.nodes[0]] == 1).all()
    sc, f = found["cpu_exhaustion"]
    assert (sc.raw[f.start : f.end, f.nodes[0], i["cpu_util"]] >= 0.93).all()
    sc, f = found["link_flapping"]
    assert len(f.nodes) == 2
    sc, f = found["link_degradation"]
    lab = sc.labels[f.start : f.end, f.nodes[0]]
    assert set(np.unique(lab)) <= {-1, 1} and lab[-1] == 1


def test_rows_drop_dont_care_and_are_model_ready():
    r = S.scenario_rows(S.generate_scenario(S.suite_seed(0)), 0)
    assert set(np.unique(r.y)) <= {0, 1}
    assert r.x_self.shape[1] == F.N_FEATURES and r.x_nbr.shape[1:] == (F.K_NEIGHBOURS, F.N_FEATURES)
    assert r.x_self.min() >= 0 and r.x_self.max() <= 1
    assert ((r.kind > 0) == (r.y == 1)).all()
