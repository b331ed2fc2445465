# Web UI, JSON API and /metrics (x0node/web/). Browser tests drive Debian's chromium headless; the
# latency bench uses wrk.
APT_PKGS += chromium wrk graphviz
BENCHES += bench/api_latency.py

.PHONY: web-demo
web-demo: deps  ## serve the UI over an in-memory demo mesh on http://127.0.0.1:8080/
	$(PY) -m x0node web demo --data-dir $${DATA_DIR:-/tmp/x0node-web-demo}
