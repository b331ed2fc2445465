# The development package x0lab (lab/): namespace testbed, fault lab and chaos runs (docs/daemon.md).
# iperf3 measures throughput through congested links; the rest is shared with the daemon's tests.
APT_PKGS += iperf3 iproute2 nftables procps
