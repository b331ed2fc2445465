# Routing core (x0node/proto): benchmark and convenience targets.
BENCHES += bench/spf.py

.PHONY: test-core bench-spf
test-core: deps
	$(PY) -m pytest -q tests/unit/test_wire.py tests/unit/test_seqno.py tests/unit/test_identity.py \
	  tests/unit/test_trust.py tests/unit/test_messages.py tests/unit/test_quality.py tests/unit/test_neighbour.py \
	  tests/unit/test_lsdb.py tests/unit/test_spf.py tests/unit/test_rib.py tests/unit/test_slots.py \
	  tests/unit/test_membership.py tests/unit/test_router.py tests/unit/test_keyfile.py tests/unit/test_proto_cli.py \
	  tests/unit/test_events.py tests/unit/test_protocol.py tests/sim tests/property

bench-spf: deps
	$(PY) bench/spf.py
