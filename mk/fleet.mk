# Fleet side (fleet/, x0node/fleet/, docs/fleet.md): Prometheus rules checked and unit-tested with
# promtool, Alertmanager config checked with amtool, a daemonless container image of x0node (buildah,
# umoci) run with podman, and the `make fleet-demo` stack.
APT_PKGS += prometheus prometheus-alertmanager podman buildah umoci skopeo
