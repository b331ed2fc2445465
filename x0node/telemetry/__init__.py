"""eBPF/XDP telemetry: CO-RE programs (bpf/), their loader, validator, explainer, profiler, privacy
noise for exported counts, and the daemon service that publishes the aggregates (docs/telemetry.md)."""
