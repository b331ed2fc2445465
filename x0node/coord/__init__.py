"""Coordination where the mesh must agree: a Raft group (pysyncobj) on 3 or 5 designated nodes for
client address pools, disruptive-action leases and the OTA rollout seat; a Dynamo-style quorum KV for
the mesh name service and the client-lease registry. See docs/coordination.md."""
