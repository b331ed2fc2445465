# Coordination (x0node/coord): Raft group (pysyncobj), quorum KV, mesh name service. The DNS tests and
# the bench ask with dig (bind9-dnsutils) as a real client would.
APT_PKGS += bind9-dnsutils
BENCHES += bench/coord.py
