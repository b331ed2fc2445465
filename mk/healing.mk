# Self-healing (x0node/healing): the bench on the fault lab (root; see docs/healing.md).
BENCHES += bench/healing.py
