"""A federated round between live daemons: head updates cross the mesh as signed state records.

A 3-node line of real daemons (`x0node run` in namespaces) with `[state]` and `[anomaly] federated =
true` at the shortest round the config allows (`federated_round_s = 60`; 1 s ticks). Labels: each
node starts knowing one fault on itself from the lab's schedule (a window of its first 75 s), written
to its `anomaly/observe.json` as the service itself persists a known fault; no running path carries
the lab's schedule to a daemon, and an incident confirmed on the Incidents page needs the web UI and
the healing loop.

Shown: every node publishes its update as a signed mesh record and the others take it (the state
service's `fed_published` / `fed_fed`; the end nodes get each other's through the middle one); a
malformed update signed by a neighbour mid-round (when no node publishes: each publishes at its first
tick in a round) is refused and counted (`bad_fedhead`) and never reaches the detector; rounds are in
step: the first round all three ran from its start is closed once by every
node under the same round number (the schedule's, round k = wall-clock [k*60, (k+1)*60)), each
averaging its own update with both neighbours' (its log line for each `FederatedRound` event); a
neighbour stopping mid-round (after its update for the round went out, before the others closed it)
stops nothing: the survivors close that round counting its update, write the state
(`federated.json`: the round closed and the one in progress, each origin's last round and sequence
number) and keep ticking, and neither counted a refused update (`fed_refused` stays 0). A forged
signature, a replayed record and a newer record for the same round are covered by unit tests
(tests/unit/test_state_gossip.py `test_forged_record_signature_is_refused`,
tests/unit/test_state_federated.py `test_updates_cross_the_mesh_signed_and_each_round_is_taken_once`,
tests/unit/test_anomaly_federated.py `test_offers_are_held_by_round_and_refused_with_a_reason`).

Up to four rounds of 60 s make it slow (about 2 min 30 s to 3 min 30 s): marked `slow`.
"""

from __future__ import annotations

import json
import pathlib
import re
import time

import pytest

from tests.integration.anomaly_mesh import anomaly_bed, ticks, wait
from tests.integration.state_mesh import ask, wait_socket
from x0node.anomaly.federated import round_at

pytestmark = pytest.mark.slow

ROUND_S = 60.0  # the smallest federated_round_s the config accepts
FAULT_S = 75.0
SECTIONS = {"state": {}, "anomaly": {"interval_s": 1.0, "record": True, "seed": 3, "observe_days": 0.0,
                                     "federated": True, "federated_round_s": ROUND_S}}
ROUND_RE = re.compile(r"anomaly federated round (\d+) closed: (\d+) updates averaged \(peers: ([^)]*)\), "
                      r"head in use: (True|False)")


@pytest.fixture
def bed(tmp_path):
    with anomaly_bed(tmp_path, SECTIONS) as b:
        yield b


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


def test_a_federated_round_between_live_daemons(bed):
    t0 = time.time()
    for k in (1, 2, 3):
        _know_a_fault(bed, k, t0, t0 + FAULT_S)
    bed.start_all(timeout_s=90)
    wait_socket(bed)
    ids = {k: bed.node(k).node_id for k in (1, 2, 3)}

    # every node publishes its update for the round it is in and takes the other two (mesh scope)
    def published():
        st = {k: _service(bed, k).get("service", {}) for k in (1, 2, 3)}
        return st if all(s.get("fed_published", 0) >= 1 and s.get("fed_fed", 0) >= 2 for s in st.values()) else None

    st = wait(published, ROUND_S + 60)
    assert st, {k: _service(bed, k).get("service") for k in (1, 2, 3)}
    assert all(s["fed_refused"] == 0 for s in st.values()), st

    # the first round that all three were running from its start: every node closes it under the same
    # number (the schedule's, from the wall clock alone) and counts both neighbours' updates with its own
    full = round_at(time.time(), ROUND_S) + 1
    others = {k: {ids[j] for j in (1, 2, 3) if j != k} for k in (1, 2, 3)}

    def closed(k, r):
        return [x for x in _rounds(bed, k) if x[0] == r]

    assert wait(lambda: all(closed(k, full) for k in (1, 2, 3)), 2 * ROUND_S + 30), \
        {k: _rounds(bed, k) for k in (1, 2, 3)}
    for k in (1, 2, 3):
        (got,) = closed(k, full)  # once
        assert got[1] == 3 and got[2] == others[k], (k, got)
        assert all(x[0] < full for x in _rounds(bed, k)[:-1]), _rounds(bed, k)  # in order, none ahead

    # mid-round (every node publishes only at its first 1 s tick in a round, so nothing else is handed
    # over now) a malformed update signed by node 1 (its own key, so the signature holds): node 2 refuses
    # it by its validator, counts it, and never hands it to its detector
    time.sleep(max(0.0, (full + 1) * ROUND_S + 8.0 - time.time()))
    handed = _service(bed, 2)["service"]["fed_fed"]
    put = ask(bed, 1, {"op": "put", "ns": "fed", "key": "head", "value": "not an update", "ttl_s": 600})
    assert put["ok"], put
    assert wait(lambda: _service(bed, 2).get("refused", {}).get("bad_fedhead", 0) >= 1, 30), _service(bed, 2)
    assert _service(bed, 2)["service"]["fed_fed"] == handed

    # node 3 stops mid-round: inside the next round, after its update for it went out and before the
    # others close that round
    bed.stop(3)
    stopped_wall = time.time()
    assert round_at(stopped_wall, ROUND_S) == full + 1
    assert wait(lambda: all(closed(k, full + 1) for k in (1, 2)), ROUND_S + 30), {k: _rounds(bed, k) for k in (1, 2)}
    for k in (1, 2):
        (got,) = closed(k, full + 1)
        assert got[1] == 3 and got[2] == others[k], (k, got)  # node 3's update, sent before it stopped, counted
        # the round's state is on disk: each origin's last (round, sequence number), the round moved on
        saved = json.loads((pathlib.Path(bed.node(k).data_dir) / "anomaly" / "federated.json").read_text())
        assert saved["closed_round"] == full + 1 and saved["round"] == full + 2, saved
        assert {bytes.fromhex(o).decode() for o in saved["last"]} == others[k]
        assert {r for r, _seq in saved["last"].values()} >= {full + 1}
    # neither survivor refused anything (no benign event counted as a refusal) and both keep working
    for k in (1, 2):
        assert _service(bed, k)["service"]["fed_refused"] == 0, _service(bed, k)
    n2 = len(ticks(bed, 2))
    assert wait(lambda: len(ticks(bed, 2)) >= n2 + 3, 15)
    assert ticks(bed, 2)[-1]["wall"] > stopped_wall
    for k in (1, 2):
        log = bed.log_path(bed.node(k)).read_text(errors="replace")
        assert "anomaly tick failed" not in log and "Traceback" not in log, log[-3000:]
        assert bed.alive(k)
