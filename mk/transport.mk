# Anti-censorship transports (x0node/transport): interop peer (shadowsocks-libev), dissector (tshark),
# capture (tcpdump), a reference mesh routing daemon for the tunnel test (babeld), namespaces and ping.
APT_PKGS += shadowsocks-libev tshark tcpdump babeld iproute2 iputils-ping
BENCHES += bench/transport.py
