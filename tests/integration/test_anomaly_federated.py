"""A federated round between live daemons: head updates cross the mesh as signed state records.

A 3-node line of real daemons (`x0node run` in namespaces) with `[state]` and `[anomaly] federated =
true` at the shortest round the config allows (`federated_round_s = 60`; 1 s ticks). Labels: each
node starts knowing one fault on itself from the lab's schedule (a window of its first 75 s), written
to its `anomaly/observe.json` as the service itself persists a known fault; no running path carries
the lab's schedule to a daemon, and an incident confirmed on the Incidents page needs the web UI and
the healing loop.

Shown: every node publishes its update as a signed mesh record and the others take it (the state
service's `fed_published` / `fed_fed`; the end nodes get each other's through the middle one); a
malformed update signed by a neighbour is refused and counted (`bad_fedhead`) and never reaches the
detector; each surviving node's rounds, between them, averaged both others' updates, and a round
averaged its own with a peer's (its log line for each `FederatedRound` event, and `federated.json` on
disk with each origin's accepted round); a neighbour stopping mid-round (after its update went out,
before the others closed the round it went into) stops nothing: the survivors close their next round
and keep ticking. Rounds are not in step across nodes (each node's timer starts with its own first
tick): a neighbour's update is averaged in whichever of a node's rounds is open when it arrives, so
the test asks that every neighbour's update was counted in some round, not in a given one. A forged
signature and a replayed round are covered by unit tests (tests/unit/test_state_gossip.py
`test_forged_record_signature_is_refused`, tests/unit/test_state_federated.py
`test_updates_cross_the_mesh_signed_and_each_round_is_taken_once`, tests/unit/test_anomaly_engine.py
`test_federated_rounds_label_by_known_faults_and_the_head_decides_only_after_the_gate`).

Two rounds of 60 s make it slow (about 2 min 10 s): marked `slow`.
"""

from __future__ import annotations

import json
import pathlib
import re
import time

import pytest

from tests.integration.state_mesh import ask, wait_socket

pytestmark = pytest.mark.slow

ROUND_S = 60.0  # the smallest federated_round_s the config accepts
FAULT_S = 75.0
SECTIONS = {"state": {}, "anomaly": {"interval_s": 1.0, "record": True, "seed": 3, "observe_days": 0.0,
                                     "federated": True, "federated_round_s": ROUND_S}}
ROUND_RE = re.compile(r"anomaly federated round (\d+) closed: (\d+) updates averaged \(peers: ([^)]*)\), "
                      r"head in use: (True|False)")


@pytest.fixture
def bed(tmp_path):
    from x0lab.testbed import bed as tb

    b = tb.Testbed.create(tmp_path / "bed", "line:3", daemon="x0node", sections=SECTIONS)
    try:
        yield b
    finally:
        b.down()


def _know_a_fault(bed, k: int, start: float, end: float) -> None:
    """Node k's observe mode knows a fault on itself in [start, end] (the lab's schedule)."""
    from x0node.anomaly.observe import ObserveConfig, ObserveMode
    from x0node.io.atomicfile import write_atomic

    observe = ObserveMode(ObserveConfig(min_observe_s=0.0), start)
    assert observe.fault(start, end, "schedule", start) is False
    path = pathlib.Path(bed.node(k).data_dir) / "anomaly" / "observe.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(observe.to_dict()).encode())


def _service(bed, k: int) -> dict:
    try:
        return ask(bed, k, {"op": "status"})
    except (OSError, ValueError):
        return {}


def _rounds(bed, k: int) -> list[tuple[int, int, set[str], bool]]:
    text = bed.log_path(bed.node(k)).read_text(errors="replace")
    return [(int(m[1]), int(m[2]), set(filter(None, m[3].split(","))), m[4] == "True") for m in ROUND_RE.finditer(text)]


def _ticks(bed, k: int) -> list[dict]:
    path = pathlib.Path(bed.node(k).data_dir) / "anomaly" / "ticks.jsonl"
    out = []
    for line in path.read_text().splitlines() if path.exists() else ():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def _wait(pred, timeout_s: float, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(poll_s)
    return pred()


def test_a_federated_round_between_live_daemons(bed):
    t0 = time.time()
    for k in (1, 2, 3):
        _know_a_fault(bed, k, t0, t0 + FAULT_S)
    bed.start_all(timeout_s=90)
    wait_socket(bed)
    ids = {k: bed.node(k).node_id for k in (1, 2, 3)}

    # a malformed update signed by node 1 (its own key, so the signature holds): node 2 refuses it by
    # its validator, counts it, and never hands it to its detector
    put = ask(bed, 1, {"op": "put", "ns": "fed", "key": "head", "value": "not an update", "ttl_s": 600})
    assert put["ok"], put
    assert _wait(lambda: _service(bed, 2).get("refused", {}).get("bad_fedhead", 0) >= 1, 30), _service(bed, 2)
    assert _service(bed, 2)["service"]["fed_fed"] == 0

    # first round: every node publishes its update and each takes the other two (mesh scope)
    def published():
        st = {k: _service(bed, k).get("service", {}) for k in (1, 2, 3)}
        return st if all(s.get("fed_published", 0) >= 1 and s.get("fed_fed", 0) >= 2 for s in st.values()) else None

    st = _wait(published, ROUND_S + 60)
    assert st, {k: _service(bed, k).get("service") for k in (1, 2, 3)}
    assert all(s["fed_refused"] == 0 for s in st.values()), st

    # node 3 stops mid-round: its update is out, the others have not closed the round it went into
    before = {k: len(_rounds(bed, k)) for k in (1, 2)}
    bed.stop(3)
    stopped_wall = time.time()

    def closed_after_stop(k):
        """Node k's rounds closed since node 3 stopped that averaged its own update with a peer's."""
        return [r for r in _rounds(bed, k)[before[k]:] if r[2] and r[1] == len(r[2]) + 1]

    for k in (1, 2):
        others = {ids[j] for j in (1, 2, 3) if j != k}
        assert _wait(lambda k=k: closed_after_stop(k), ROUND_S + 30), (k, _rounds(bed, k))
        rounds = _rounds(bed, k)
        # rounds are not in step across nodes: a neighbour's update is averaged in whichever of this
        # node's rounds was open when it arrived, once; over its rounds every neighbour's was counted
        assert set().union(*(r[2] for r in rounds)) == others, rounds
        # the round's state is on disk: each origin's accepted round, the round moved on
        saved = json.loads((pathlib.Path(bed.node(k).data_dir) / "anomaly" / "federated.json").read_text())
        assert saved["round"] == rounds[-1][0] + 1, (saved["round"], rounds)
        assert {bytes.fromhex(o).decode() for o in saved["last_round"]} == others
    # the survivors keep working after the round closed without node 3 there
    n2 = len(_ticks(bed, 2))
    assert _wait(lambda: len(_ticks(bed, 2)) >= n2 + 3, 15)
    assert _ticks(bed, 2)[-1]["wall"] > stopped_wall
    for k in (1, 2):
        log = bed.log_path(bed.node(k)).read_text(errors="replace")
        assert "anomaly tick failed" not in log and "Traceback" not in log, log[-3000:]
        assert bed.alive(k)
