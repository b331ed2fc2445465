"""Mesh-wide state: signed CRDTs gossiped between neighbours, persisted on the data partition.

`crdt` holds the data types and their merges, `record` the signed unit of replication, `store` the
replica, `trickle` the RFC 6206 timer, `gossip` the sans-I/O anti-entropy protocol; `persist`,
`control`, `service` and `cli` are the adapters (file, local socket, daemon service, command line).
See docs/state.md.
"""
