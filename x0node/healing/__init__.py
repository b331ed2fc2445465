"""Self-healing: a MAPE-K loop that repairs what routing alone cannot (see docs/healing.md).

Decision modules (sans-I/O, no asyncio/socket/time/os/random imports; `now` and a seeded rng in,
requests out): observation, monitor, probe, analyze, actions, policy, safety, plan, execute, verify,
knowledge, engine. Adapters (I/O): service, store, probe_io, actuator, metrics, tracing.
"""
