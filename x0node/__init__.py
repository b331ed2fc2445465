"""x0node: the service every x0tta6bl4 mesh router runs.

Packages: proto/ (sans-I/O routing core), io/ (socket and netlink adapters), daemon/ (the service),
telemetry/ (XDP/tracepoint counters), anomaly/ (on-device detection), transport/ (obfuscated links),
web/ (local UI and API). Development tools (testbed, fault lab, scenario generator) are the
separate package x0lab (lab/), which routers do not install.
"""

__version__ = "0.1.0"
