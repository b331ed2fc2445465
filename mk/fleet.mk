# Fleet side (fleet/, x0node/fleet/, docs/fleet.md): Prometheus rules checked and unit-tested with
# promtool, Alertmanager config checked with amtool, a daemonless container image of x0node (umoci),
# run with podman (runc), and the `make fleet-demo` stack (socat forwards its ports to the host).
APT_PKGS += prometheus prometheus-alertmanager podman umoci runc socat curl

.PHONY: fleet-demo fleet-demo-down fleet-check fleet-dashboards container
fleet-demo: deps  ## Prometheus + Alertmanager over a namespace mesh; a killed node fires X0NodeDown (docs/fleet.md)
	$(SUDO) $(PY) -m x0lab.fleet.demo up $(if $(SHOTS),--shots $(SHOTS))

fleet-demo-down:  ## stop the fleet demo and remove its mesh
	$(SUDO) $(PY) -m x0lab.fleet.demo down

fleet-check: deps  ## dashboards through Grafana's model, every PromQL expression through promtool, the chart's manifests
	$(PY) -m x0node fleet check
	$(PY) -m x0node fleet chart --out build/fleet/chart

fleet-dashboards: deps  ## regenerate fleet/grafana/dashboards from x0node/fleet/dashboards.py
	$(PY) -m x0node fleet dashboards

container: deps  ## OCI image of x0node from the image pipeline's root (out/container/$(BOARD)/oci), no daemon
	$(PY) -m image.container build --board $(BOARD)
