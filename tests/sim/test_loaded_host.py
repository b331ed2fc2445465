"""Robustness to a loaded host: loop-lag grace on the dead interval, own-LSA rate limit, one beacon wakeup.

Simulated time, default timers. The loop lag is reported to the core as data, as the daemon does.
"""

from tests.sim.mesh import SimMesh, line, measure_cut, ring
from x0node.proto.looplag import (
    LOOP_LAG_EWMA_WEIGHT,
    LOOP_LAG_GRACE_FACTOR,
    LOOP_LAG_GRACE_MAX_S,
    LOOP_LAG_MEMORY_S,
    LOOP_LAG_PEAKS,
)
from x0node.proto.origination import LSA_BURST, LSA_MAX_HOLD_S
from x0node.proto.router import RouterConfig

DEAD_S = RouterConfig().dead_interval_s


def _downs(mesh: SimMesh, i: int) -> int:
    return sum(1 for ev in mesh.nodes[i].events if ev.kind == "NeighbourDown")


def test_recent_loop_lag_delays_the_dead_verdict_and_quiet_host_is_unchanged():
    mesh = SimMesh(2, seed=5)
    line(mesh, 2)
    assert mesh.run_until_converged(1.0) is not None
    mesh.run_for(1.0)
    # our loop keeps running 200 ms late: silence of dead interval + less than 2 x 0.2 s is tolerated
    for _ in range(200):
        mesh.nodes[0].router.note_loop_lag(0.2, mesh.now)
    link = mesh.link_between(0, 1)
    link.up = False
    before0, before1 = _downs(mesh, 0), _downs(mesh, 1)
    mesh.run_for(DEAD_S + 0.15)
    assert _downs(mesh, 0) == before0  # node 0 still waits (grace 0.4 s)
    assert _downs(mesh, 1) == before1 + 1  # node 1 saw no lag: normal detection
    mesh.run_for(LOOP_LAG_GRACE_FACTOR * 0.2)
    assert _downs(mesh, 0) == before0 + 1  # but it does declare it dead after the grace
    link.up = True
    assert mesh.run_until_converged(2.0) is not None


def test_a_single_stall_barely_matters():
    mesh = SimMesh(6, seed=21)
    ring(mesh, 6)
    assert mesh.run_until_converged(1.0) is not None
    mesh.run_for(1.0)
    mesh.nodes[0].router.note_loop_lag(0.5, mesh.now)  # one 0.5 s stall (a blocking call)
    mesh.nodes[1].router.note_loop_lag(0.5, mesh.now)
    detect, outage = measure_cut(mesh, 0, 1)
    assert detect <= DEAD_S + LOOP_LAG_GRACE_FACTOR * LOOP_LAG_EWMA_WEIGHT * 0.5 + 0.004
    assert outage <= DEAD_S + 0.1


def test_lag_below_threshold_or_forgotten_changes_nothing():
    mesh = SimMesh(6, seed=21)
    ring(mesh, 6)
    assert mesh.run_until_converged(1.0) is not None
    mesh.nodes[0].router.note_loop_lag(0.005, mesh.now)  # scheduling noise
    for _ in range(200):
        mesh.nodes[1].router.note_loop_lag(0.5, mesh.now)
    mesh.run_for(LOOP_LAG_MEMORY_S + 1.0)  # the peak is forgotten
    detect, outage = measure_cut(mesh, 0, 1)
    assert DEAD_S - 0.1 - 0.003 <= detect <= DEAD_S + 0.004
    assert outage <= DEAD_S + 0.05


def test_flapping_link_originations_are_limited_to_about_one_per_second():
    mesh = SimMesh(2, seed=7)
    line(mesh, 2)
    assert mesh.run_until_converged(1.0) is not None
    mesh.run_for(3.0)
    r = mesh.nodes[0].router
    link = mesh.link_between(0, 1)
    start = r.out.counters["lsa_originated"]
    t0 = mesh.now
    for _ in range(20):  # down 0.4 s, up 0.3 s: a flap every 0.7 s
        link.up = False
        mesh.run_for(0.4)
        link.up = True
        mesh.run_for(0.3)
    flaps = _downs(mesh, 0)
    assert flaps >= 10
    originated = r.out.counters["lsa_originated"] - start
    # without the limit: two LSAs per flap (down and up); with it the downs go out at once, the
    # returns after a burst only one per LSA_MAX_HOLD_S
    ups = originated - flaps
    assert ups <= (mesh.now - t0) / LSA_MAX_HOLD_S + LSA_BURST + 1, (originated, flaps)
    assert originated < 2 * flaps - 3
    link.up = True
    assert mesh.run_until_converged(3.0) is not None
    mesh.run_for(LSA_MAX_HOLD_S + 0.5)
    assert mesh.mesh_route(0, 1) == [0, 1]


def test_keepalives_of_all_interfaces_go_out_in_one_wakeup():
    mesh = SimMesh(5, seed=3)
    for b in range(1, 5):
        mesh.connect(0, b)
    assert mesh.run_until_converged(1.0) is not None
    r = mesh.nodes[0].router
    dues = sorted(i.next_keepalive_s for i in r.interfaces.table.values())
    slot_s = RouterConfig().hello_interval_s / RouterConfig().slots_per_frame
    assert dues[-1] - dues[0] <= slot_s  # one grid: the four beacons are due together


def test_loop_lag_peak_reports_the_worst_stall_since_an_instant():
    mesh = SimMesh(2, seed=5)
    line(mesh, 2)
    router = mesh.nodes[0].router
    t0 = mesh.now
    assert router.loop_lag_peak(t0) == 0.0
    router.note_loop_lag(0.005, t0 + 1.0)  # scheduling noise is no stall
    router.note_loop_lag(0.6, t0 + 2.0)
    router.note_loop_lag(0.2, t0 + 3.0)
    assert router.loop_lag_peak(t0) == 0.6
    assert router.loop_lag_peak(t0 + 2.5) == 0.2  # the tick after the big stall sees only its own
    assert router.loop_lag_peak(t0 + 4.0) == 0.0
    router.note_loop_lag(99.0, t0 + 5.0)  # clamped like every sample
    assert router.loop_lag_peak(t0 + 4.0) == LOOP_LAG_GRACE_MAX_S
    for i in range(LOOP_LAG_PEAKS + 10):  # bounded: the oldest peaks fall out
        router.note_loop_lag(0.05, t0 + 10.0 + i)
    assert router.loop_lag_peak(t0) == 0.05
