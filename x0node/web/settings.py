"""What the Settings page says about each setting: a label, the unit, a description, the valid range,
and whether the web UI may change it (GET /api/v1/config/schema).

Rules: `describe(config)` covers every key of the effective config it is given, known or not: a key
without an entry here gets a label made from its name and the unit its suffix names (`_s`, `_ms`,
`_bytes`, `_bps`), never a bare key name. Ranges are the ones the config validation enforces (the
routing core's RouterConfig, the daemon's and services' validators); the server checks them again on
every write, so a range here only guides the form. Keys in the app's `WEB_READ_ONLY` (a whole section
or one key) are marked read-only and shown, not offered for editing.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Setting(NamedTuple):
    label: str
    unit: str = ""
    description: str = ""
    min: float | None = None
    max: float | None = None


SECTIONS: dict[str, tuple[str, str]] = {
    "routing": ("Routing timers", "How often the node greets its neighbours and refreshes what it knows of the mesh."),
    "healing": ("Self-healing", "The repair loop: what it may do, how often, and when it acts."),
    "web": ("Web interface", "Where this page is served and how long a sign-in lasts."),
    "anomaly": ("Anomaly detector", "The on-device model that scores this node's behaviour."),
    "telemetry": ("Telemetry", "eBPF/XDP counters of the mesh interfaces."),
    "node": ("Node", "This router's identity, interfaces and logging."),
    "kernel": ("Kernel routing", "Routing table and rule the node writes its routes to."),
    "trust": ("Trust", "Keys and certificates that decide which nodes may join."),
}

SETTINGS: dict[str, Setting] = {
    # routing: x0node/proto/config.py (RouterConfig) and docs/routing.md
    "routing.hello_interval_s": Setting("Hello interval", "s", "Time between hellos to each neighbour; shorter "
                                        "finds a lost neighbour sooner and costs more airtime.", 0.01, 10),
    "routing.hello_missed_dead": Setting("Missed hellos before a neighbour is down", "hellos", "A neighbour is "
                                         "declared down after this many hellos in a row go unanswered.", 1, 50),
    "routing.full_hello_interval_s": Setting("Full hello interval", "s", "Time between complete hellos (with "
                                             "every neighbour listed); at least the hello interval.", 0.01, None),
    "routing.lsa_refresh_s": Setting("Link-state refresh", "s", "How often the node re-announces its links "
                                     "even when nothing changed.", 0, None),
    "routing.lsa_max_age_s": Setting("Link-state maximum age", "s", "A node's announcement not refreshed for "
                                     "this long is forgotten.", 0, None),
    "routing.lsa_retransmit_s": Setting("Link-state retransmit", "s", "Wait before an unacknowledged "
                                        "announcement is sent to a neighbour again.", 0, None),
    "routing.dead_node_timeout_s": Setting("Unreachable node timeout", "s", "A node unreachable for this long "
                                           "is removed from the topology.", 0, None),
    "routing.spf_delay_s": Setting("Route computation delay", "s", "Changes arriving within this time are "
                                   "folded into one route computation.", 0, None),
    "routing.slots_per_frame": Setting("Hello slots per frame", "slots", "Each hello interval is divided into "
                                       "this many slots so neighbours do not send at the same instant.", 0, None),
    "routing.slot_jitter_fraction": Setting("Slot jitter", "fraction of a slot", "Random shift of each hello "
                                            "within its slot (0 to 1).", 0, 1),
    "routing.dead_interval_s": Setting("Dead interval", "s", "A neighbour silent this long is declared down.", None, None),
    "routing.prefixes": Setting("Announced prefixes", "", "Extra address prefixes this node routes for."),
    # healing: x0node/healing/service.py validate_config, docs/healing.md
    "healing.enabled": Setting("Enabled", "", "Run the self-healing loop."),
    "healing.mode": Setting("Mode at start", "", "observe: plan and record only; active: repair. The "
                            "Incidents page's switch overrides this and is kept across restarts."),
    "healing.auto_activate": Setting("Activate automatically", "", "Turn active once observe-mode decisions "
                                     "prove right often enough."),
    "healing.min_observe_days": Setting("Observe at least", "days", "Time in observe mode before it may turn "
                                        "active by itself.", 0, 365),
    "healing.min_decisions": Setting("Decisions before activating", "decisions", "Observe-mode decisions judged "
                                     "before it may turn active by itself.", 1, 100000),
    "healing.interval_s": Setting("Cycle interval", "s", "Time between two rounds of the loop.", 0.1, 60),
    "healing.disruptive_per_hour": Setting("Disruptive actions per hour", "actions", "At most this many restarts, "
                                           "resets or reboots in any hour.", 0, 60),
    "healing.guard_after_boot_s": Setting("Quiet time after boot", "s", "No action this soon after the device "
                                          "started.", 0, 86400),
    "healing.guard_after_start_s": Setting("Quiet time after start", "s", "No action this soon after the service "
                                           "started.", 0, 86400),
    "healing.min_confidence": Setting("Minimum confidence", "0–1", "A root cause less certain than this is not "
                                      "acted on.", 0, 1),
    "healing.mitigation_hold_s": Setting("Mitigation hold", "s", "A workaround stays this long after the fault "
                                         "cleared (doubles if it is needed again soon).", 1, 86400),
    "healing.probes": Setting("Data-plane probes", "", "Probe forwarding through each neighbour (finds partial "
                              "black holes)."),
    "healing.otlp_endpoint": Setting("Trace export URL", "", "OTLP/HTTP endpoint for the loop's traces; empty: "
                                     "kept on the device only."),
    "healing.span_buffer": Setting("Traces kept on the device", "spans", "", 16, 10000),
    "healing.seed": Setting("Random seed", "", "Fixed seed for reproducible timing (tests); empty: random."),
    # anomaly: x0node/anomaly/service.py validate_config, docs/anomaly.md
    "anomaly.enabled": Setting("Enabled", "", "Score this node's behaviour with the on-device model."),
    "anomaly.interval_s": Setting("Scoring interval", "s", "Time between two scores.", 1, 3600),
    "anomaly.model_dir": Setting("Model directory", "", "Where the model bundle is; empty: the one shipped."),
    "anomaly.target_fpr": Setting("Target false-alarm rate", "fraction", "Share of normal moments the detector "
                                  "may flag (above 0, at most 0.5).", 0, 0.5),
    "anomaly.peer_ttl_s": Setting("Peer score lifetime", "s", "How long a neighbour's shared features count "
                                  "(0: four scoring intervals).", 0, 86400),
    "anomaly.observe_days": Setting("Observe at least", "days", "Time the detector only reports before its "
                                    "verdicts may act.", 0, 365),
    "anomaly.min_outcomes": Setting("Judged alarms before acting", "alarms", "Alarms judged (by an operator, a "
                                    "confirmed incident or the fault lab's schedule) before the detector may act.",
                                    1, 100000),
    "anomaly.override": Setting("Override", "", "\"active\" or \"observe\" forces the phase; empty: automatic."),
    "anomaly.drift_psi": Setting("Drift alarm", "PSI", "Population stability index above which the inputs "
                                 "count as drifted (above 0).", 0, 10),
    "anomaly.seed": Setting("Random seed", "", "Fixed seed for reproducible sampling (tests); empty: random."),
    # web: x0node/web/config.py
    "web.enabled": Setting("Enabled", "", "Serve this interface."),
    "web.listen": Setting("Listen address", "", "Address of this device the interface is served on."),
    "web.port": Setting("Port", "", "TCP port of the interface.", 0, 65535),
    "web.session_idle_s": Setting("Sign-out after idle", "s", "A session unused this long ends.", 60, 2592000),
    "web.session_max_s": Setting("Longest session", "s", "A session ends this long after sign-in.", 60, 2592000),
    "web.max_request_bytes": Setting("Largest request", "bytes", "", 1024, 16 * 2**20),
    "web.metrics_allow": Setting("Metrics readers", "", "Networks allowed to read /metrics without signing in."),
    "web.allowed_hosts": Setting("Host names", "", "Names besides the address this device answers to."),
    "web.tls_cert": Setting("TLS certificate", "", "Certificate file; with a key, the interface is served over HTTPS."),
    "web.tls_key": Setting("TLS key", "", "Private key file of the certificate."),
    "web.http_port": Setting("HTTP redirect port", "", "Plain-HTTP port that redirects to HTTPS (0: none).", 0, 65535),
    # node and kernel: x0node/daemon/config.py
    "node.prefixes": Setting("Announced prefixes", "", "Address prefixes this node routes for."),
    "trust.anchors": Setting("Trust anchors", "", "Public key files of the mesh's authorities."),
    "trust.certificate": Setting("Node certificate", "", "This node's certificate file; empty: node.cert in "
                                 "the data directory."),
    "trust.allowed_keys": Setting("Allowed keys", "", "Node keys accepted without a certificate."),
    "trust.revocations": Setting("Revocation list", "", "File of revoked certificates; empty: revoked.crl in "
                                 "the data directory."),
    "node.data_dir": Setting("Data directory", "", "Where keys, state and records are kept."),
    "node.interfaces": Setting("Mesh interfaces", "", "Interfaces the node meshes on."),
    "node.log_level": Setting("Log level", "", "debug, info, warning or error."),
    "node.configure_sysctls": Setting("Configure kernel settings", "", "Set forwarding and related sysctls at start."),
    "node.watchdog_s": Setting("Hang watchdog", "s", "A daemon that stops answering for this long is restarted "
                               "(applies at the next start).", 6, 600),
    "kernel.table": Setting("Routing table", "", "Kernel table the node's routes go to.", 1, 2**32 - 1),
    "kernel.protocol": Setting("Route protocol number", "", "Marks the node's routes in the kernel.", 1, 255),
    "kernel.rule_priority": Setting("Rule priority", "", "Priority of the rule that looks up the table.", 1, 32765),
    "kernel.route_priority": Setting("Route priority", "", "Metric the node's routes carry.", 0, 2**32 - 1),
}

_UNITS = (("_ms", "ms"), ("_s", "s"), ("_bytes", "bytes"), ("_bps", "bit/s"), ("_pct", "%"))


def fallback(key: str) -> Setting:
    """A readable label and unit from the key's name alone."""
    unit = ""
    for suffix, name in _UNITS:
        if key.endswith(suffix):
            key, unit = key[: -len(suffix)], name
            break
    words = key.replace("_", " ").strip() or key
    return Setting(words[:1].upper() + words[1:], unit)


def describe(config: dict[str, Any], read_only: frozenset[str],
             ranges: dict[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """{"sections": {name: {label, description, read_only}}, "settings": {"section.key": {...}}}.
    `ranges` (from a provider that validates differently, e.g. the in-memory one) replace the table's."""
    sections: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    for section, values in config.items():
        if not isinstance(values, dict):
            continue
        label, text = SECTIONS.get(section, (fallback(section).label, ""))
        sections[section] = {"label": label, "description": text, "read_only": section in read_only}
        for key in values:
            dotted = f"{section}.{key}"
            meta = SETTINGS.get(dotted) or fallback(key)
            if ranges and dotted in ranges:
                meta = meta._replace(min=ranges[dotted][0], max=ranges[dotted][1])
            settings[dotted] = {"label": meta.label, "unit": meta.unit, "description": meta.description,
                                "min": meta.min, "max": meta.max,
                                "read_only": section in read_only or dotted in read_only}
    return {"sections": sections, "settings": settings}
