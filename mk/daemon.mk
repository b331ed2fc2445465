# x0node daemon, kernel adapters, namespace testbed and the outage benchmark against babeld.
APT_PKGS += babeld nftables iproute2 iputils-ping tcpdump procps
BENCHES += bench/outage.py

.PHONY: demo demo-down
demo: deps  ## 5-node mesh in namespaces, a ping across 4 hops, and how to look around
	$(SUDO) $(PY) -m x0lab.testbed.demo

demo-down:  ## remove the demo mesh
	$(SUDO) $(PY) -m x0node testbed down
