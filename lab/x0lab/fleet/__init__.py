"""The fleet demo (`make fleet-demo`) and its pictures: development tools over the testbed (docs/fleet.md)."""
