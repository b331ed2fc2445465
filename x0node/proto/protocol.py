"""The routing protocol's numbers: addresses, port, timers and every limit on network-fed state.

Rules:
- Every value here has its unit in its name (`_S` seconds, `_MS` milliseconds, `_BYTES`, ...).
- Every table fed by the network is bounded by one of the `MAX_*` constants below; code that grows such
  a table checks the bound and drops (and counts) instead of growing.
- Timer defaults are chosen for: silent link failure detected and rerouted in < 300 ms, cold start
  convergence < 1 s, and control traffic <= ~1.52 kB/s per node with two mesh interfaces including the
  48 bytes of IPv6+UDP headers per packet (see docs/routing.md for the arithmetic).
"""

from __future__ import annotations

# --- addressing -----------------------------------------------------------------------------------------
MESH_UDP_PORT = 6717
"""UDP port of the routing protocol on every mesh interface (hellos, LSAs, ACKs, WITHDRAWs)."""
STATE_UDP_PORT = 6718
"""UDP port of mesh-state gossip between neighbours (link-local, x0node/state/)."""
NAT_UDP_PORT = 6719
"""UDP port of NAT-traversal links (rendezvous, punching, relay; x0node/overlay/natlink.py)."""
YGGDRASIL_TCP_PORT = 6720
"""TCP port the managed yggdrasil peers on between mesh addresses (x0node/overlay/yggdrasil.py)."""
OVERLAY_UDP_PORT = 6721
"""UDP port of end-to-end sealed datagrams between mesh addresses (x0node/overlay/datapath.py)."""
COORD_UDP_PORT = 6722
"""UDP port of coordination datagrams between mesh addresses (Raft proposals, quorum KV; x0node/coord/)."""
RAFT_TCP_PORT = 6723
"""TCP port the Raft group's members (pysyncobj) listen on, on their mesh addresses (x0node/coord/group.py)."""
OTA_TCP_PORT = 6724
"""TCP port update manifests and bundle chunks are served on between mesh nodes (x0node/ota/transfer.py)."""
MESH_MCAST_GROUP = "ff02::7830:6b14"
"""Link-local multicast group hellos and first-time floods are sent to."""
MESH_ULA_PREFIX = "fd78:3074:6b14::/48"
"""ULA prefix holding every node's mesh address: prefix (48 bits) + the first 80 bits of the node id."""
MESH_ULA_PREFIX_LEN = 48
ROUTE_PROTOCOL_NUMBER = 78
"""rtnetlink protocol number our routes carry (daemon installs with it; we never touch others)."""
IPV6_UDP_HEADER_BYTES = 48
"""IPv6 (40) + UDP (8) header bytes per datagram, used in traffic arithmetic."""

# --- wire ----------------------------------------------------------------------------------------------
WIRE_VERSION = 4
"""4: LSA links carry the link's throughput; throughput probes and their reports (3: keepalive MACs
cover the full 32-bit sequence number, ACKs carry a session MAC, certificates list the prefixes they
grant; 2: keepalive entry MACs are 12 bytes; 1 had 16)."""
MAX_DATAGRAM_BYTES = 1232
"""Largest datagram we send or accept: IPv6 minimum MTU 1280 minus IPv6+UDP headers."""
NODE_ID_BYTES = 16
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32
MAC_BYTES = 12
"""Keyed BLAKE2b tag length on keepalive entries: 96 bits, at least half the hash output and over 80
bits as RFC 2104 section 5 asks of a truncated MAC. A forged entry only refreshes one neighbour's
liveness for one interval, so 2^-96 per attempt is ample; the 4 bytes saved per neighbour and keepalive
are 5 % of the node's control traffic."""

# --- hellos and neighbours -------------------------------------------------------------------------------
HELLO_INTERVAL_S = 0.1
"""Keepalive interval per interface (compact MAC-authenticated hello)."""
HELLO_MISSED_DEAD = 2
"""A neighbour is dead when this many consecutive keepalives are missed (plus half an interval of slack)."""
FULL_HELLO_INTERVAL_S = 30.0
"""Interval of the Ed25519-signed full HELLO that (re)establishes neighbours, +-25% jitter."""
TRIGGERED_HELLO_MIN_INTERVAL_S = 0.05
"""Minimum spacing of signed HELLOs sent early (new neighbour heard, neighbour lost us) per interface."""
NEIGHBOUR_HOLD_FULL_HELLOS = 3.5
"""A neighbour that keeps sending keepalives we can verify stays; a one-way (not yet verified two-way)
neighbour is forgotten after this many full-hello intervals."""
LOSS_EWMA_PACKETS = 128
"""Loss is an exponentially weighted average with weight 1/this per expected keepalive (~13 s)."""
REPLAY_WINDOW = 64
"""Width (in sequence numbers) of every replay window."""
REKEY_SEQ = (1 << 31) - (1 << 16)
"""A node takes a new session epoch (new pairwise keys) before any interface's 32-bit control
sequence number gets here: well before half the space, so no number is used twice under one key and
serial comparison never wraps (at the fastest keepalive interval, 10 ms, after about 248 days)."""
KEEPALIVE_CLOCK_TOLERANCE_S = 10.0
"""A keepalive's timestamp may differ by this much from where the last accepted one plus our elapsed
time puts it (both daemons' scheduling delays, up to the loop-lag grace, fit well inside)."""
MAX_NEIGHBOURS_PER_INTERFACE = 32
MAX_NEIGHBOURS = 128
MAX_INTERFACES = 16
MAX_HELLO_NEIGHBOURS = 32
"""Most neighbour entries in one HELLO or keepalive."""
MAX_REMEMBERED_EPOCHS = 8
"""Per origin, the last this-many session epochs are remembered to reject replays of old sessions."""
MAX_ECHO_DELAY_MS = 65535

# --- link quality and cost -------------------------------------------------------------------------------
COST_SCALE = 100
"""Cost of a perfect link (ETX 1, no latency)."""
COST_RTT_MS_PER_UNIT = 0.1
"""One cost unit per this much round-trip time (ms)."""
COST_MAX = 65535
COST_HYSTERESIS_FRACTION = 0.25
"""The advertised cost changes only when the measured one moved by more than this fraction."""
RTT_EWMA_ALPHA = 0.2
RTT_BASE_WINDOW = 30
"""Class and cost use the smallest of this many recent RTT samples (3 s of keepalives by default)."""
MIN_COST_CHANGE_INTERVAL_S = 1.0
"""At most one change of a neighbour's advertised (class, cost) per this many seconds."""
CLASS_ADVERTISE_DELAY_S = 30.0
"""A quality-class change alone (cost within hysteresis) is flooded at most this late (+-25 %)."""
THROUGHPUT_REFERENCE_BPS = 100e6
"""A link this fast or faster has no throughput term in its cost; a slower one costs ETX x this / its
throughput (expected transmission time, in units of a reference link's)."""
MAX_LINK_THROUGHPUT_KBPS = 1_000_000_000
"""Largest throughput an LSA or a probe report may state (1 Tbit/s); larger values are refused."""

# --- throughput probes (throughput.py) -------------------------------------------------------------------
PROBE_TRAIN_PACKETS = 3
"""Datagrams per probe train: a full-size head that empties a queue or token bucket up to one frame,
then two equal datagrams; the receiver measures the gap between the last two."""
MAX_PROBE_TRAIN_PACKETS = 8
"""Largest train a receiver accepts (count field)."""
PROBE_TARGET_GAP_S = 400e-6
"""Tail datagrams are sized so the expected gap between them is this long at the current estimate
(well above the sender's own spacing between two sends, ~30 us), up to MAX_DATAGRAM_BYTES."""
PROBE_MIN_PAYLOAD_BYTES = 200
"""Smallest tail datagram: with the head it fills a one-frame (1514 B) bucket, so the last gap is shaped."""
PROBE_SAMPLES = 5
"""The estimate is the median of this many recent samples."""
PROBE_LEARN_SAMPLES = 3
"""A probed throughput is first used once this many samples agree (median)."""
PROBE_FAST_INTERVAL_S = 0.3
"""Spacing of trains while learning or confirming a sample that left the estimate's band."""
PROBE_CHANGE_RATIO = 1.5
"""A sample outside [estimate / this, estimate x this] asks for confirming trains at once."""
PROBE_PUBLISH_FRACTION = 0.1
"""The throughput used for class and cost follows the estimate only when it moved by more than this."""
PROBE_IDLE_BUDGET_BPS = 64.0
"""Probe bytes per second per neighbour (trains and their reports, with IPv6/UDP headers) on an idle
link; steady trains use half of it, the other half refills the burst for learning and confirming."""
PROBE_TRAFFIC_FRACTION = 0.05
"""On a link carrying traffic the budget grows to this fraction of the bytes we send on it."""
PROBE_MAX_BUDGET_BPS = 8192.0
"""Ceiling of the per-neighbour probe budget however busy the link."""
PROBE_BURST_BYTES = 16384
"""Probe bytes a neighbour may spend at once (learning at neighbour up, confirming a change)."""
PROBE_STEADY_SHARE = 0.5
"""Steady trains use this share of the budget (the rest refills the burst)."""
PROBE_MIN_INTERVAL_S = 2.0
PROBE_MAX_INTERVAL_S = 300.0
"""Bounds of the steady interval between two trains to one neighbour (+-25 % jitter)."""
PROBE_REPORT_TIMEOUT_S = 1.0
"""A train whose report has not come back after this long counts as lost."""
PROBE_RX_MIN_INTERVAL_S = 0.1
"""A receiver measures at most one train per neighbour per this long; trains in between are refused."""
KERNEL_THROUGHPUT_HOLD_S = 10.0
"""A throughput the adapter read from the kernel (set_throughput) stands this long; probing resumes
when it is not renewed."""

# --- LSDB and flooding ----------------------------------------------------------------------------------
MAX_LSAS = 4096
"""Most origins in the LSDB (LSAs and withdraw tombstones together)."""
MAX_LSA_NEIGHBOURS = 32
"""Links per LSA: the largest LSA (32 links of 23 bytes, a certificate granting 8 prefixes, 8 announced
prefixes) is 1203 bytes and fits one MAX_DATAGRAM_BYTES datagram (40 fitted before links carried their
throughput)."""
MAX_LSA_PREFIXES = 8
LSA_REFRESH_S = 900.0
"""Each node re-originates its LSA this often (+-25% jitter) so that it never ages out elsewhere."""
LSA_MAX_AGE_S = 3600.0
"""An LSA not refreshed for this long is removed; a withdraw tombstone is kept this long."""
LSA_INITIAL_DELAY_S = 0.5
"""Our first LSA waits this long for neighbours (a neighbour coming up originates it earlier)."""
LSA_MIN_INTERVAL_S = 0.05
"""Minimum spacing of two originations of our own LSA (changes in between are batched)."""
LSA_RETRANSMIT_S = 0.2
"""Unacknowledged LSAs are resent to a neighbour after this long (+-25% jitter), doubling up to 8x."""
MAX_RETRANSMIT_QUEUE = 8192
"""Most (neighbour, LSA) pairs awaiting acknowledgement."""
MAX_ACK_ENTRIES = 48
ACK_DELAY_S = 0.005
"""ACKs to one neighbour are batched for this long."""
SPF_DELAY_S = 0.01
"""SPF runs this long after the first LSDB change that needs it (later changes are batched)."""

# --- node manager ----------------------------------------------------------------------------------------
DEAD_NODE_TIMEOUT_S = 60.0
"""A node unreachable for this long is pruned from the LSDB and reported as left."""

# --- slot scheduler --------------------------------------------------------------------------------------
SLOTS_PER_FRAME = 100
"""Beacon frame (= HELLO_INTERVAL_S) is divided into this many slots."""
SLOT_JITTER_FRACTION = 0.2
"""Jitter inside a slot, as a fraction of the slot length (0.2 % of the interval at 100 slots)."""
MAX_SLOT_OBSERVATIONS = 256

# --- events, drops ---------------------------------------------------------------------------------------
MAX_PENDING_EVENTS = 1024
MAX_PENDING_DATAGRAMS = 16384
