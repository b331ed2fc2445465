"""On-device anomaly detection: features -> int8 GraphSAGE (LiteRT) -> Isolation Forest -> rules.

Importing this package is cheap: LiteRT is imported lazily by the GNN layer on first use.
"""
