# Mesh state (x0node/state): benchmark and convenience targets.
BENCHES += bench/state.py

.PHONY: test-state bench-state
test-state: deps
	$(PY) -m pytest -q tests/unit/test_state_trickle.py tests/unit/test_state_store.py \
	  tests/unit/test_state_gossip.py tests/unit/test_state_service.py tests/property/test_state_laws.py \
	  tests/integration/test_state_mesh.py

bench-state: deps
	$(PY) bench/state.py
