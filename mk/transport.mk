# Anti-censorship transports (x0node/transport): interop peers and dissectors used by the tests.
APT_PKGS += shadowsocks-libev tshark iproute2 iputils-ping
BENCHES += bench/transport.py
