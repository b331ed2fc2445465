# Private overlay (x0node/overlay): the yggdrasil peer (Debian 0.4.7, managed and benchmarked), iperf3 for the
# bench, tcpdump/tshark for the capture tests, nftables for drop-clear and the NAT testbed, conntrack in the NATs.
APT_PKGS += yggdrasil iperf3 tcpdump tshark nftables iproute2 iputils-ping
BENCHES += bench/overlay.py
