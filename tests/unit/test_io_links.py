from __future__ import annotations

from x0node.io.links import IFF_LOWER_UP, IFF_UP, LinkMonitor


def msg(event, ifname, flags):
    return {"event": event, "ifname": ifname, "flags": flags}


def test_link_monitor_reports_transitions_of_mesh_interfaces_only():
    seen = []
    mon = LinkMonitor(["m1", "m2"], lambda n, u: seen.append((n, u)))
    mon.state = {"m1": True, "m2": False}
    mon._running = True
    mon.handle(msg("RTM_NEWLINK", "m1", IFF_UP | IFF_LOWER_UP))  # no change
    mon.handle(msg("RTM_NEWLINK", "m1", IFF_UP))  # carrier lost
    mon.handle(msg("RTM_NEWLINK", "m1", IFF_UP))  # repeated: no event
    mon.handle(msg("RTM_NEWLINK", "eth0", 0))  # not a mesh interface
    mon.handle(msg("RTM_NEWADDR", "m2", 0))  # not a link message
    mon.handle(msg("RTM_NEWLINK", "m2", IFF_UP | IFF_LOWER_UP))
    mon.handle(msg("RTM_DELLINK", "m2", IFF_UP | IFF_LOWER_UP))  # removed = unusable
    assert seen == [("m1", False), ("m2", True), ("m2", False)]
