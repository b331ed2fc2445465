"""The coordination service (section `[coord]`): the Raft group on designated members, the quorum KV
and name service on every node, one UDP socket for both, a control socket, the API the web UI, the CLI,
healing and OTA call.

Rules and invariants:
- Adapter only: decisions live in machine.py (Raft state), kv.py (quorums), ring.py, timers.py; this
  module moves datagrams, time and files. Every datagram goes through wire.Codec (trust, signature,
  replay) before its header is read; every KV record is verified (record.py) before it is stored or
  returned. Drops are counted by reason (`drops`).
- The routing core is read in two small functions over its typed read model (proto/views.py):
  `mesh_view` (known and reachable nodes, UP neighbours) and `topology_neighbours`. Identity and TrustStore are the router's (a revocation it installs is seen
  here at once).
- Members: the designated list (config `members`, then the group's own list persisted in
  `coord/members.json`). A member runs pysyncobj (group.py) once it holds the group secret
  (secret.py); non-members send their commands to a member (PROPOSE, retried with the same request id,
  so a retry is applied once). Remote commands may act only for their sender (its pool, its leases).
- The leader proposes `tick` every TICK_S with its measured elapsed time (mesh time, machine.py),
  configures the pool layout once, and replaces a member that is revoked or unreachable for
  `member_gone_s` by a reachable candidate: pysyncobj's removeNodeFromCluster, then the secret sealed
  to the newcomer, then addNodeToCluster — one change at a time.
- Every node claims (renews) its own pool every reclaim_after_s / 4 and holds it, by its own monotonic
  clock, until `reclaim_after_s` after it sent the last acknowledged claim; it reports nothing held after
  that, before the group can reclaim it (mesh time never runs ahead of real time).
- Periodic work is jittered (+-25 %). Nothing here raises out of a callback: failures are logged/counted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import pathlib
import random
import socket
import time
from typing import Any

from x0node.coord import config as coord_config
from x0node.coord import kv, secret
from x0node.coord.metrics import Latency
from x0node.coord.record import Record, check_key
from x0node.coord.ring import Ring
from x0node.coord.timers import LIBRARY_TIMERS, RttTable, worth_changing
from x0node.coord.wire import Codec, Datagram, Type
from x0node.io.atomicfile import write_atomic
from x0node.proto.identity import mesh_address_of
from x0node.proto.trust import Credential
from x0node.proto.wire import DecodeError

log = logging.getLogger("x0node.coord")

validate_config = coord_config.validate_config
EXPOSURE = coord_config.EXPOSURE

LOOP_S = 0.2
TICK_S = 1.0
PING_S = 1.0
PROPOSE_RESEND_S = 0.25
PROPOSE_TIMEOUT_S = 5.0
ATTEMPT_S = 0.6
"""A member re-proposes an unanswered command after this long (several election timeouts' worth of
commit time on a healthy group, well under the failover goal)."""
RING_HOLD_S = 300.0
PEER_SEEN_S = 5.0
JITTER = 0.25
MAX_PENDING_PROPOSALS = 256
GROUP_CALL_TIMEOUT_S = 3.0
LEAVE_AFTER_S = 5.0
"""A member that has seen no leader or no connected majority this long, told by a current member that the group no longer lists
it, stops its instance (it was replaced while away)."""
REMOTE_OPS = frozenset({"pool", "lease", "lease_release", "rollout_put", "read"})
DNS_MAX_ADDRS = 4
CONTROL_SOCKET = "coord.sock"


def mesh_view(router: Any) -> tuple[set[bytes], set[bytes], list[bytes]]:
    """(known nodes, reachable nodes, UP neighbours) from the routing core's read model (views.py)."""
    topo = router.topology()
    known = {bytes.fromhex(n.node_id) for n in topo.nodes}
    reach = {bytes.fromhex(n.node_id) for n in topo.nodes if n.reachable}
    nbrs = sorted({bytes.fromhex(v.node_id) for v in router.neighbours() if v.state == "up"})
    return known, reach, nbrs


def topology_neighbours(router: Any, node_hex: str) -> list[str]:
    """Neighbours of a node in the routing core's topology (two-way links only)."""
    out = set()
    for link in router.topology().links:
        if link.a == node_hex:
            out.add(link.b)
        elif link.b == node_hex:
            out.add(link.a)
    return sorted(out)[:64]


def validate_value(key: str, value: bytes) -> None:
    """Namespace rules for KV values: dns/ and client/ hold small JSON objects the name service and the
    client-lease registry read; app/ holds any bytes."""
    import ipaddress

    if key.startswith("app/"):
        return
    try:
        doc = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("value: expected a JSON object") from None
    if not isinstance(doc, dict):
        raise ValueError("value: expected a JSON object")
    if key.startswith("dns/"):
        if set(doc) - {"a", "aaaa"} or not doc:
            raise ValueError('value: expected {"a": [IPv4...], "aaaa": [IPv6...]}')
        for fam, cls in (("a", ipaddress.IPv4Address), ("aaaa", ipaddress.IPv6Address)):
            addrs = doc.get(fam, [])
            if not isinstance(addrs, list) or len(addrs) > DNS_MAX_ADDRS:
                raise ValueError(f"value.{fam}: at most {DNS_MAX_ADDRS} addresses")
            for a in addrs:
                try:
                    cls(a)
                except (ValueError, TypeError):
                    raise ValueError(f"value.{fam}: {a!r} is not an address") from None
    elif key.startswith("client/"):
        if not isinstance(doc.get("node"), str) or not coord_config.NODE_HEX_RE.match(doc["node"]):
            raise ValueError("value.node: the serving node's id (32 hex digits)")
        for fam, cls in (("v4", ipaddress.IPv4Address), ("v6", ipaddress.IPv6Address)):
            if fam in doc:
                try:
                    cls(doc[fam])
                except (ValueError, TypeError):
                    raise ValueError(f"value.{fam}: not an address") from None
        if set(doc) - {"node", "v4", "v6", "expires", "name"}:
            raise ValueError("value: keys node, v4, v6, expires, name")


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, svc: CoordService) -> None:
        self.svc = svc

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self.svc.on_datagram(data, addr)
        except Exception:  # noqa: BLE001 - remote input never stops the service
            self.svc.count("handler_error")
            log.exception("coord datagram handler failed")


class CoordService:
    def __init__(self, section: dict[str, Any]) -> None:
        self.cfg = dict(section)
        self.drops: collections.Counter[str] = collections.Counter()
        self.counters: collections.Counter[str] = collections.Counter()
        self.group: Any = None
        self.members: list[str] = list(self.cfg["members"])
        self.secret: bytes | None = None
        self.rtt = RttTable()
        self.peer_seen: dict[bytes, float] = {}
        self.peer_fp: dict[bytes, str | None] = {}
        self.peer_coord: dict[bytes, float] = {}  # nodes that answered our pings (run coord)
        self.peer_cred: dict[bytes, Any] = {}  # the latest credential each sender showed (to seal to it)
        self._started_at = 0.0
        self.leader_hint: str | None = None
        self.pool: dict[str, Any] | None = None
        self.pool_held_until = 0.0
        self._pool_next = 0.0
        self._tasks: list[asyncio.Task[Any]] = []
        self._proposals: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._pings: dict[int, tuple[bytes, float]] = {}
        self._nonce = 0
        self._rid = 0
        self._tick_base: float | None = None
        self._leaderless_since: float | None = None
        self._changing = False
        self._ring_seen: dict[bytes, float] = {}
        self._ring: Ring | None = None
        self.transport: Any = None
        self.started = False
        self.latency = {"kv_put": Latency(), "kv_get": Latency(), "propose": Latency()}
        self._collector: Any = None

    # --- lifecycle ------------------------------------------------------------------------------------

    async def start(self, ctx: Any) -> None:
        from x0node.state.control import serve
        from x0node.state.crdt import Hlc

        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.router = ctx.router
        self.identity = ctx.router.identity
        self.trust = ctx.router.trust
        self.me = self.identity.node_id
        self.me_hex = self.me.hex()
        self._started_at = time.monotonic()
        self.dir = pathlib.Path(ctx.data_dir) / "coord"
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.codec = Codec(self.identity, self.trust)
        self.rng = random.Random(int.from_bytes(os.urandom(8), "big"))  # timer jitter and member choice, seeded from os.urandom; not a secret # nosec B311
        self.hlc = Hlc()
        self._load_members()
        self.secret = secret.load(self.dir / "secret")
        if self.secret is None and self.members and self.me_hex == min(self.cfg["members"] or self.members) \
                and self.me_hex in self.members:
            self.secret = secret.new_secret()
            secret.save(self.dir / "secret", self.secret)
            log.info("created the coordination group secret")
        self.replica = kv.Replica()
        self.coordinator = kv.Coordinator(self.me)
        self._kv_waiters: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._kv_timer: asyncio.TimerHandle | None = None
        self._persist_lock = asyncio.Lock()
        if self.cfg["kv"]:
            from x0node.coord.kvstore import KvLog

            self.kvlog = KvLog(self.dir / "kv.log")
            records, hints, refused = await asyncio.to_thread(self.kvlog.load, self.trust)
            for rec in records:
                self.replica.store(rec, None, 0.0)
                self.hlc.observe(rec.version)
            for node, key in hints:
                if key in self.replica.records:
                    self.replica.hints[(node, key)] = (self.replica.records[key].version, 0.0)
            self.drops["store_refused"] += refused
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((ctx.mesh_addr, self.cfg["port"]))
        self.transport, _ = await self.loop.create_datagram_endpoint(lambda: _Proto(self), sock=sock)
        self.control = await serve(pathlib.Path(ctx.data_dir) / CONTROL_SOCKET, self.handle)
        self.dns: Any = None
        if self.cfg["kv"] and self.cfg["dns_listen"]:
            from x0node.coord.dns import DnsResponder

            self.dns = DnsResponder(self, self.cfg["dns_zone"])
            await self.dns.start([coord_config.parse_listen(x) for x in self.cfg["dns_listen"]])
        ctx.extras["coord"] = self
        if ctx.registry is not None:
            from x0node.coord.metrics import CoordCollector

            self._collector = CoordCollector(self)
            ctx.registry.register(self._collector)
        self.started = True
        self._tasks.append(self.loop.create_task(self._run()))
        if self.cfg["kv"]:
            self._tasks.append(self.loop.create_task(self._register_name()))

    async def stop(self) -> None:
        self.started = False
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.dns is not None:
            self.dns.close()
        if getattr(self, "control", None) is not None:
            self.control.close()
        if self.group is not None:
            await asyncio.to_thread(self.group.close)
            self.group = None
        if self.transport is not None:
            self.transport.close()
        if self._collector is not None:
            with contextlib.suppress(KeyError):
                self.ctx.registry.unregister(self._collector)
            self._collector = None

    def count(self, reason: str) -> None:
        self.drops[reason] += 1

    # --- membership and the group --------------------------------------------------------------------

    def _load_members(self) -> None:
        path = self.dir / "members.json"
        try:
            doc = json.loads(path.read_text())
            ms = [m for m in doc.get("members", []) if isinstance(m, str) and coord_config.NODE_HEX_RE.match(m)]
            if len(ms) in (3, 5):
                self.members = sorted(ms)
        except (OSError, ValueError, AttributeError):
            pass

    def _save_members(self, members: list[str]) -> None:
        if sorted(members) == sorted(self.members) and (self.dir / "members.json").exists():
            return
        self.members = sorted(members)
        write_atomic(self.dir / "members.json", json.dumps({"members": self.members}).encode())

    @property
    def is_member(self) -> bool:
        return self.me_hex in self.members

    def _addr(self, node_hex: str) -> str:
        return mesh_address_of(bytes.fromhex(node_hex))

    def _start_group(self, now: float) -> None:
        from x0node.coord.group import RaftGroup

        others = [m for m in self.members if m != self.me_hex]
        timers = self.rtt.timers([bytes.fromhex(m) for m in others]) if self.cfg["timers"] == "rtt" else LIBRARY_TIMERS
        self._attach_group(RaftGroup(self.ctx.mesh_addr, self.cfg["raft_port"], [self._addr(m) for m in others],
                                     secret.password_of(self.secret), self.dir, timers), timers, now)  # type: ignore[arg-type]
        log.info("raft group started members=%s heartbeat_s=%s election_min_s=%s",
                 ",".join(m[:8] for m in self.members), timers.heartbeat_s, timers.election_min_s)

    def _attach_group(self, group: Any, timers: Any, now: float) -> None:
        """Run the group duties on this member's started Raft instance from now on."""
        self._group_started = now
        self._first_leader_s = None
        self._timers = timers
        self.group = group

    def _group_members(self) -> list[str]:
        by_addr = {self._addr(m): m for m in set(self.members) | {self.me_hex} | set(self.cfg["candidates"])}
        by_addr.update({mesh_address_of(n): n.hex() for n in self._ring_seen})
        return sorted(by_addr[a] for a in self.group.members() if a in by_addr)

    async def _run(self) -> None:
        next_ping = next_tick = 0.0
        while True:
            await asyncio.sleep(LOOP_S * (1 + self.rng.uniform(-JITTER, JITTER)))
            now = time.monotonic()
            try:
                self._refresh_ring(now)
                if now >= next_ping:
                    next_ping = now + PING_S * (1 + self.rng.uniform(-JITTER, JITTER))
                    self._ping(now)
                if self.is_member and self.secret is not None and self.group is None and \
                        (all(bytes.fromhex(m) in self.rtt.samples for m in self.members if m != self.me_hex)
                         or now - self._started_at > 3.0):
                    self._start_group(now)
                if self.group is not None:
                    self._group_duties(now)
                    if now >= next_tick:
                        next_tick = now + TICK_S
                        await self._leader_duties(now)
                if now >= self._pool_next and self.members:
                    self._pool_next = now + 3.5  # one claim in flight at a time (propose gives up after 3 s)
                    self._tasks.append(self.loop.create_task(self._claim_pool()))
                    self._tasks = [t for t in self._tasks if not t.done()]
                if self.cfg["kv"]:
                    _, reach, _ = self._view()
                    for node, rec in self.replica.handoffs(reach, now):
                        self._send(node, Type.KV_PUT, {"n": 0}, (rec.encode(),))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                self.counters["loop_errors"] += 1
                log.exception("coord loop failed")

    def _view(self) -> tuple[set[bytes], set[bytes], list[bytes]]:
        known, reach, nbrs = mesh_view(self.router)
        return known | {self.me}, reach | {self.me}, nbrs

    def _refresh_ring(self, now: float) -> None:
        known, _, _ = self._view()
        for n in known:
            self._ring_seen[n] = now
        for n in [n for n, t in self._ring_seen.items() if now - t > RING_HOLD_S]:
            del self._ring_seen[n]
        nodes = frozenset(self._ring_seen)
        if self._ring is None or self._ring.nodes != nodes:
            self._ring = Ring(nodes)

    def _group_duties(self, now: float) -> None:
        self.leader_hint = self.group.leader_addr()
        if self._first_leader_s is None and self.leader_hint is not None:
            self._first_leader_s = round(now - self._group_started, 3)
        if self.leader_hint is None or not self.group.obj.hasQuorum:
            self._leaderless_since = self._leaderless_since or now
        else:
            self._leaderless_since = None
        members = self._group_members()
        if len(members) in (3, 5) and self.me_hex in members:
            self._save_members(members)
        if self.cfg["timers"] != "rtt":
            return
        others = [bytes.fromhex(m) for m in self.members if m != self.me_hex]
        new = self.rtt.timers(others)
        if worth_changing(self._timers, new):
            self.group.set_timers(new)
            self._timers = new
            log.info("raft timers heartbeat_s=%s election_min_s=%s", new.heartbeat_s, new.election_min_s)

    async def _leader_duties(self, now: float) -> None:
        if not self.group.is_leader():
            self._tick_base = None
            return
        dt = 0.0 if self._tick_base is None else min(now - self._tick_base, 10.0)
        self._tick_base = now
        res = await self._group_call(self.group.propose({"op": "tick", "dt": round(dt, 6)}, self.loop), {"ok": False})
        if not res.get("ok"):
            self._tick_base = None
            return
        view = self.group.view()
        if view["layout"] is None:
            c = self.cfg
            await self._group_call(self.group.propose({"op": "configure", "reclaim_after_s": c["reclaim_after_s"], "layout": {
                "v4": c["pool4"], "v4_len": c["pool4_len"], "v6": c["pool6"], "v6_len": c["pool6_len"]}}, self.loop), None)
        if not self._changing:
            self._tasks.append(self.loop.create_task(self._replace_members(now)))

    @staticmethod
    async def _group_call(fut: Any, default: Any, timeout_s: float = GROUP_CALL_TIMEOUT_S) -> Any:
        """Await a pysyncobj callback with a deadline: a command queued while no leader is known may never
        be answered, and the service's loop must go on."""
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            return default

    def _member_gone(self, m: str, now: float, reach: set[bytes]) -> str | None:
        nid = bytes.fromhex(m)
        if self.trust.is_revoked(nid):
            return "revoked"
        seen = self.peer_seen.get(nid)
        if nid not in reach and (seen is None or now - seen > self.cfg["member_gone_s"]) \
                and now - self._started_at > self.cfg["member_gone_s"]:
            return "gone"
        return None

    async def _replace_members(self, now: float) -> None:
        self._changing = True
        try:
            _, reach, _ = self._view()
            members = self._group_members()
            for m in members:
                if m == self.me_hex:
                    continue
                why = self._member_gone(m, now, reach)
                if why is None:
                    continue
                cand = self._candidate(members, reach, now)
                if cand is None:
                    return
                log.info("replacing member %s (%s) by %s", m[:8], why, cand[:8])
                if not await self._group_call(self.group.membership_change("rem", self._addr(m), self.loop), False):
                    return
                new = sorted((set(members) - {m}) | {cand})
                self._invite(bytes.fromhex(cand), new)
                await asyncio.sleep(0.5)
                ok = await self._group_call(self.group.membership_change("add", self._addr(cand), self.loop), False)
                self.counters["member_replaced" if ok else "member_add_failed"] += 1
                if ok:
                    self._save_members(new)
                return
        finally:
            self._changing = False

    def _candidate(self, members: list[str], reach: set[bytes], now: float) -> str | None:
        allowed = set(self.cfg["candidates"])
        options = sorted(n.hex() for n, t in self.peer_coord.items()
                         if now - t < PEER_SEEN_S and n in reach and n.hex() not in members
                         and not self.trust.is_revoked(n) and (not allowed or n.hex() in allowed))
        return options[0] if options else None

    def _invite(self, node: bytes, members: list[str]) -> None:
        cred = self.peer_cred.get(node)
        if cred is None or self.secret is None:
            return
        sealed = secret.seal(self.secret, cred.public_key)
        self._send(node, Type.SECRET, {"m": members, "s": sealed.hex()})

    # --- datagrams --------------------------------------------------------------------------------------

    def _send(self, node: bytes, kind: Type, header: dict[str, Any], records: tuple[bytes, ...] = ()) -> None:
        if node == self.me:
            self._local(kind, header, records)
            return
        try:
            data = self.codec.seal(kind, header, records)
        except ValueError:
            self.counters["oversize"] += 1
            return
        try:
            self.transport.sendto(data, (mesh_address_of(node), self.cfg["port"]))
        except OSError:
            self.counters["send_error"] += 1

    def _local(self, kind: Type, header: dict[str, Any], records: tuple[bytes, ...]) -> None:
        d = Datagram(self.me, Credential(self.identity.public_key, self.identity.certificate), kind, header, records)
        self.loop.call_soon(self._dispatch, d, time.monotonic())

    def on_datagram(self, data: bytes, addr: Any) -> None:
        d = self.codec.open(data, time.time())
        if isinstance(d, str):
            self.count(d)
            return
        if addr[0] != mesh_address_of(d.sender):
            self.count("source_mismatch")
            return
        self._dispatch(d, time.monotonic())

    def _dispatch(self, d: Datagram, now: float) -> None:
        if d.sender != self.me:
            self.peer_seen[d.sender] = now
            self.peer_cred[d.sender] = d.credential
            if len(self.peer_cred) > 4096:
                self.peer_cred.pop(next(iter(self.peer_cred)))
        h = d.header
        try:
            handler = self._HANDLERS[d.type]
            handler(self, d, h, now)
        except (KeyError, TypeError, ValueError, DecodeError):
            self.count("bad_header")

    def _ping(self, now: float) -> None:
        targets = set(self.members) - {self.me_hex}
        if self.group is not None and self.group.is_leader():
            _, reach, _ = self._view()
            targets |= {n.hex() for n in reach if n != self.me}  # candidates answer: coord runs there
        for m in targets:
            self._nonce += 1
            self._pings[self._nonce] = (bytes.fromhex(m), now)
            self._send(bytes.fromhex(m), Type.PING, {"n": self._nonce})
        for n in [n for n, (_, t) in self._pings.items() if now - t > 5.0]:
            del self._pings[n]

    def _on_ping(self, d: Datagram, h: dict[str, Any], now: float) -> None:
        self._send(d.sender, Type.PONG, {
            "n": int(h["n"]), "m": self.members if self.is_member else [], "l": self.leader_hint,
            "f": secret.fingerprint(self.secret) if self.secret else None})

    def _on_pong(self, d: Datagram, h: dict[str, Any], now: float) -> None:
        p = self._pings.pop(int(h["n"]), None)
        if p is None or p[0] != d.sender:
            self.count("unexpected_pong")
            return
        self.rtt.add(d.sender, now - p[1])
        self.peer_coord[d.sender] = now
        self.peer_fp[d.sender] = h.get("f")
        ms = h.get("m")
        if isinstance(ms, list) and len(ms) in (3, 5) and d.sender.hex() in ms and not self.is_member \
                and all(isinstance(m, str) and coord_config.NODE_HEX_RE.match(m) for m in ms):
            self._save_members(ms)
        if isinstance(h.get("l"), str) and len(h["l"]) <= 64:
            self.leader_hint = h["l"]
            if isinstance(ms, list) and self.group is not None and d.sender.hex() in self.members \
                    and len(ms) in (3, 5) and self.me_hex not in ms and self._leaderless_for(now) > LEAVE_AFTER_S:
                self._leave(ms)
        # hand the secret to a member that lacks it (sealed to its key)
        if self.secret is not None and self.is_member and d.sender.hex() in self.members \
                and h.get("f") != secret.fingerprint(self.secret):
            self._invite(d.sender, self.members)

    def _leaderless_for(self, now: float) -> float:
        return 0.0 if self._leaderless_since is None else now - self._leaderless_since

    def _leave(self, members: list[str]) -> None:
        """We were removed from the group while away: stop our stale instance, forget its journal (a later
        invitation starts fresh and catches up from the leader) and follow the group as a non-member."""
        log.info("removed from the coordination group; now a non-member (members %s)", ",".join(m[:8] for m in members))
        group, self.group = self.group, None
        self._tasks.append(self.loop.create_task(asyncio.to_thread(group.close)))
        for f in self.dir.glob("raft.*"):
            with contextlib.suppress(OSError):
                f.unlink()
        self._save_members([m for m in members if isinstance(m, str) and coord_config.NODE_HEX_RE.match(m)])
        self.counters["left_group"] += 1

    def _on_secret(self, d: Datagram, h: dict[str, Any], now: float) -> None:
        ms = h["m"]
        if not (isinstance(ms, list) and len(ms) in (3, 5) and self.me_hex in ms and d.sender.hex() in ms):
            self.count("secret_not_member")
            return
        if self.secret is not None and d.sender.hex() not in self.members:
            self.count("secret_from_stranger")
            return
        got = secret.unseal(bytes.fromhex(str(h["s"])), self.identity)
        if got is None:
            self.count("secret_unsealable")
            return
        if self.group is not None:
            if got != self.secret:
                self.count("secret_change_while_running")
            return
        if got != self.secret:
            self.secret = got
            secret.save(self.dir / "secret", got)
        self._save_members([str(m) for m in ms])
        log.info("received the coordination group secret from %s", d.sender.hex()[:8])

    # --- proposals --------------------------------------------------------------------------------------

    async def propose(self, cmd: dict[str, Any], timeout_s: float = PROPOSE_TIMEOUT_S) -> dict[str, Any]:
        """Commit a command through the group (here if a member, else through one); the machine's answer."""
        start = time.monotonic()
        res = await self._propose(cmd, timeout_s)
        self.latency["propose"].observe(time.monotonic() - start)
        self.counters["propose_ok" if res.get("ok") else "propose_failed"] += 1
        return res

    async def _propose(self, cmd: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        self._rid += 1
        cmd = dict(cmd, rid=f"{self.me_hex[:12]}-{self.codec.epoch:x}-{self._rid}")
        deadline = time.monotonic() + timeout_s
        if self.group is not None:
            # a command forwarded to a leader that then died is never answered by pysyncobj: propose
            # again (same request id, applied once) after ATTEMPT_S
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return {"ok": False, "error": "raft: timeout"}
                try:
                    res = await asyncio.wait_for(self.group.propose(cmd, self.loop), min(left, ATTEMPT_S))
                except TimeoutError:
                    continue
                if not res.get("retry") or time.monotonic() >= deadline:
                    return res
                await asyncio.sleep(0.05)
        if not self.members:
            return {"ok": False, "error": "no coordination group known"}
        if len(self._proposals) >= MAX_PENDING_PROPOSALS:
            return {"ok": False, "error": "too many proposals in flight"}
        self._nonce += 1
        nonce = self._nonce
        fut: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self._proposals[nonce] = fut
        order = [m for m in self.members if m != self.me_hex]
        lead = next((m for m in order if self._addr(m) == self.leader_hint), None)
        if lead is not None:
            order.remove(lead)
            order.insert(0, lead)
        try:
            i = 0
            while time.monotonic() < deadline:
                self._send(bytes.fromhex(order[i % len(order)]), Type.PROPOSE, {"n": nonce, "c": cmd})
                with contextlib.suppress(TimeoutError):
                    res = await asyncio.wait_for(asyncio.shield(fut), PROPOSE_RESEND_S * (1 + i // len(order)))
                    if res.get("retry") and time.monotonic() < deadline:
                        fut = self._proposals[nonce] = self.loop.create_future()
                        i += 1
                        continue
                    return res
                i += 1
            return {"ok": False, "error": "raft: timeout"}
        finally:
            self._proposals.pop(nonce, None)

    def _on_propose(self, d: Datagram, h: dict[str, Any], now: float) -> None:
        cmd = h["c"]
        nonce = int(h["n"])
        if not isinstance(cmd, dict) or cmd.get("op") not in REMOTE_OPS:
            self.count("propose_refused")
            return
        who = d.sender.hex()
        if any(k in cmd and cmd[k] != who for k in ("node", "holder")):
            self._send(d.sender, Type.RESULT, {"n": nonce, "r": {"ok": False, "error": "a node acts only for itself"}})
            return
        if self.group is None:
            self._send(d.sender, Type.RESULT, {"n": nonce, "r": {"ok": False, "error": "not a member", "retry": True}})
            return
        rid = cmd.get("rid")
        if not isinstance(rid, str) or not rid.startswith(who[:12]):
            self.count("propose_refused")
            return

        async def run() -> None:
            res = await self._group_call(self.group.propose(cmd, self.loop),
                                         {"ok": False, "error": "raft: timeout", "retry": True})
            if len(json.dumps(res)) > 400:
                res = {"ok": False, "error": "answer too large for a datagram"}
            self._send(d.sender, Type.RESULT, {"n": nonce, "r": res})

        self._tasks.append(self.loop.create_task(run()))

    def _on_result(self, d: Datagram, h: dict[str, Any], now: float) -> None:
        fut = self._proposals.get(int(h["n"]))
        if fut is not None and not fut.done() and d.sender.hex() in self.members and isinstance(h["r"], dict):
            fut.set_result(h["r"])

    # --- uses on Raft -----------------------------------------------------------------------------------

    async def _claim_pool(self) -> None:
        now = time.monotonic()
        if self.pool is not None and now < self.pool_held_until - 0.75 * self._pool_valid():
            self._pool_next = self.pool_held_until - 0.75 * self._pool_valid()
            return
        res = await self.propose({"op": "pool", "node": self.me_hex}, timeout_s=3.0)
        self.counters["pool_claim_ok" if res.get("ok") else "pool_claim_failed"] += 1
        if res.get("ok"):
            self.pool = {k: res[k] for k in ("index", "v4", "v6")}
            self.pool_held_until = now + float(res["valid_s"])
            self._pool_next = now + float(res["valid_s"]) / 4

    def _pool_valid(self) -> float:
        return float(self.cfg["reclaim_after_s"])

    def held_pool(self) -> dict[str, Any] | None:
        """Our pool while we may use it (by our own clock, ahead of any reclaim)."""
        if self.pool is None or time.monotonic() >= self.pool_held_until:
            return None
        return dict(self.pool, valid_for_s=round(self.pool_held_until - time.monotonic(), 3))

    async def lease(self, resource: str, ttl_s: float, lease_id: int, neighbours: list[str] | None = None,
                    reason: str = "") -> dict[str, Any]:
        """Ask for (or renew) a mesh-wide lease; `valid_until` is local monotonic time it may be relied on."""
        sent = time.monotonic()
        if neighbours is None and resource.startswith("disrupt/"):
            neighbours = topology_neighbours(self.router, resource[len("disrupt/"):])
        res = await self.propose({"op": "lease", "resource": resource, "holder": self.me_hex, "lease_id": lease_id,
                                  "ttl_s": ttl_s, "neighbours": neighbours or [], "reason": reason})
        if res.get("granted"):
            res["valid_until"] = sent + float(res["ttl_s"])
        return res

    async def lease_release(self, resource: str, lease_id: int) -> dict[str, Any]:
        return await self.propose({"op": "lease_release", "resource": resource, "holder": self.me_hex,
                                   "lease_id": lease_id})

    async def rollout_put(self, rollout: str, state: Any) -> dict[str, Any]:
        return await self.propose({"op": "rollout_put", "rollout": rollout, "holder": self.me_hex, "state": state})

    async def read(self, what: str, **kw: Any) -> dict[str, Any]:
        return await self.propose({"op": "read", "what": what, **kw})

    # --- KV ---------------------------------------------------------------------------------------------

    def _prefs(self, key: str) -> list[tuple[bytes, bytes | None]]:
        _, reach, _ = self._view()
        if self._ring is None:
            self._refresh_ring(time.monotonic())
        return self._ring.preference(key, kv.N_REPLICAS, reach)  # type: ignore[union-attr]

    async def _kv_wait(self, nonce: int) -> dict[str, Any]:
        fut = self._kv_waiters.setdefault(nonce, self.loop.create_future())
        self._kv_pump()
        return await fut

    def _kv_pump(self) -> None:
        now = time.monotonic()
        self.coordinator.tick(now)
        out, self.coordinator.outbox = self.coordinator.outbox, []
        for node, kind, hdr, recs in out:
            self._send(node, kind, hdr, recs)
        res, self.coordinator.results = self.coordinator.results, []
        for nonce, r in res:
            fut = self._kv_waiters.pop(nonce, None)
            if fut is None:
                fut = self._kv_waiters[nonce] = self.loop.create_future()
            if not fut.done():
                fut.set_result(r)
        if self._kv_timer is not None:
            self._kv_timer.cancel()
            self._kv_timer = None
        due = self.coordinator.next_timer()
        if due is not None:
            self._kv_timer = self.loop.call_later(max(0.0, due - now) + 0.001, self._kv_pump)
        for n in [n for n, f in self._kv_waiters.items() if f.done()]:
            del self._kv_waiters[n]

    async def kv_put(self, key: str, value: bytes | None) -> dict[str, Any]:
        check_key(key)
        if value is not None:
            validate_value(key, value)
        rec = Record.make(self.identity, key, value, self.hlc.now(int(time.time() * 1000)))
        start = time.monotonic()
        nonce = self.coordinator.start_put(rec, self._prefs(key), start)
        res = await self._kv_wait(nonce)
        self.latency["kv_put"].observe(time.monotonic() - start)
        self.counters["kv_put_ok" if res.get("ok") else "kv_put_failed"] += 1
        return res

    async def kv_get(self, key: str) -> dict[str, Any]:
        check_key(key)
        start = time.monotonic()
        nonce = self.coordinator.start_get(key, self._prefs(key), start)
        res = await self._kv_wait(nonce)
        self.latency["kv_get"].observe(time.monotonic() - start)
        self.counters["kv_get_ok" if res.get("ok") else "kv_get_failed"] += 1
        if not res.get("ok"):
            return res
        rec: Record | None = res.pop("record")
        if rec is None or rec.value is None:
            return dict(res, found=False)
        return dict(res, found=True, value=rec.value, version=rec.version, writer=rec.writer.hex())

    def _on_kv_put(self, d: Datagram, h: dict[str, Any], now: float) -> None:
        if not self.cfg["kv"] or len(d.records) != 1:
            self.count("kv_refused")
            return
        rec = Record.decode(d.records[0])
        reason = rec.verify(self.trust, time.time())
        if reason is not None:
            self.count(f"record_{reason}")
            return
        hint = bytes.fromhex(h["h"]) if isinstance(h.get("h"), str) and len(h["h"]) == 32 else None
        changed = self.replica.store(rec, hint, now)
        self.hlc.observe(rec.version)
        nonce = int(h["n"])

        async def persist_then_ack() -> None:
            if changed or hint is not None:
                async with self._persist_lock:
                    try:
                        await asyncio.to_thread(self.kvlog.append, [(rec, hint)])
                        records = list(self.replica.records.values())
                        hints = [(n, k) for n, k in self.replica.hints]
                        if await asyncio.to_thread(self.kvlog.maybe_compact, records, hints):
                            self.counters["kv_log_compactions"] += 1
                    except OSError:
                        self.counters["kv_persist_failed"] += 1
                        return
            self._send(d.sender, Type.KV_ACK, {"n": nonce, "k": rec.key, "v": rec.version})

        if changed or hint is not None:
            self._tasks.append(self.loop.create_task(persist_then_ack()))
        else:
            self._send(d.sender, Type.KV_ACK, {"n": nonce, "k": rec.key, "v": rec.version})

    def _on_kv_ack(self, d: Datagram, h: dict[str, Any], now: float) -> None:
        nonce = int(h["n"])
        if nonce:
            self.coordinator.on_ack(d.sender, nonce, now)
            self._kv_pump()
        if isinstance(h.get("k"), str) and isinstance(h.get("v"), int):
            self.replica.handed_off(d.sender, h["k"], h["v"])

    def _on_kv_get(self, d: Datagram, h: dict[str, Any], now: float) -> None:
        key = check_key(h["k"])
        rec = self.replica.get(key)
        self._send(d.sender, Type.KV_VALUE, {"n": int(h["n"])}, (rec.encode(),) if rec is not None else ())

    def _on_kv_value(self, d: Datagram, h: dict[str, Any], now: float) -> None:
        rec = Record.decode(d.records[0]) if d.records else None
        if rec is not None:
            reason = rec.verify(self.trust, time.time())
            if reason is not None:
                self.count(f"record_{reason}")
                return
        self.coordinator.on_value(d.sender, int(h["n"]), rec, now)
        self._kv_pump()

    _HANDLERS = {
        Type.PING: _on_ping, Type.PONG: _on_pong, Type.SECRET: _on_secret, Type.PROPOSE: _on_propose,
        Type.RESULT: _on_result, Type.KV_PUT: _on_kv_put, Type.KV_ACK: _on_kv_ack, Type.KV_GET: _on_kv_get,
        Type.KV_VALUE: _on_kv_value,
    }

    async def _register_name(self) -> None:
        """Publish this node's own name -> mesh address in the name service (retried until it lands)."""
        name = self.cfg["hostname"] or os.uname().nodename.split(".")[0].lower()
        if not coord_config.re.match(r"^[a-z0-9-]{1,63}$", name):
            return
        value = json.dumps({"aaaa": [self.ctx.mesh_addr]}).encode()
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            try:
                cur = await self.kv_get(f"dns/{name}")
                if cur.get("ok") and cur.get("value") == value:
                    return
                if (await self.kv_put(f"dns/{name}", value)).get("ok"):
                    return
            except ValueError:
                return
            delay = min(30.0, delay * 2)

    # --- views and the control socket -----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "member": self.is_member, "members": self.members, "has_secret": self.secret is not None,
            "leader": self.leader_hint, "pool": self.held_pool(),
            "drops": dict(self.drops), "counters": dict(self.counters),
        }
        if self.group is not None:
            out["raft"] = dict(self.group.status(), first_leader_s=self._first_leader_s)
            out["timers"] = {"heartbeat_s": self._timers.heartbeat_s, "election_min_s": self._timers.election_min_s}
        if self.cfg["kv"]:
            out["kv"] = {"records": len(self.replica.records), "hints": len(self.replica.hints),
                         "repairs": self.coordinator.repairs}
        if getattr(self, "dns", None) is not None:
            out["dns"] = dict(self.dns.counts)
        return out

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        try:
            if op == "status":
                return {"ok": True, **self.status()}
            if op == "machine":
                if self.group is None:
                    return {"ok": False, "error": "not a running member"}
                return {"ok": True, "machine": self.group.view(), "raft": self.group.status()}
            t = time.monotonic()
            if op == "kv_get":
                res = await self.kv_get(str(req.get("key")))
                if res.get("found"):
                    res["value"] = res["value"].decode("utf-8", "replace")
                return dict(res, ms=round((time.monotonic() - t) * 1000, 3))
            if op in ("kv_put", "kv_del"):
                value = None if op == "kv_del" else str(req.get("value", "")).encode()
                return dict(await self.kv_put(str(req.get("key")), value), ms=round((time.monotonic() - t) * 1000, 3))
            if op == "pool":
                return {"ok": True, "pool": self.held_pool()}
            if op == "lease":
                return await self.lease(str(req.get("resource")), float(req.get("ttl_s", 30)),
                                        int(req.get("lease_id", 1)), req.get("neighbours"), str(req.get("reason", "")))
            if op == "lease_release":
                return await self.lease_release(str(req.get("resource")), int(req.get("lease_id", 1)))
            if op == "rollout_put":
                return await self.rollout_put(str(req.get("rollout")), req.get("state"))
            if op == "read":
                kw = {"rollout": str(req["rollout"])} if "rollout" in req else {}
                return await self.read(str(req.get("what")), **kw)
            if op == "write":  # a no-op Raft write (benchmarks and health checks)
                res = await self.propose({"op": "read", "what": "time"})
                return {"ok": bool(res.get("ok")), "error": res.get("error"), "ms": round((time.monotonic() - t) * 1000, 3)}
        except (ValueError, TypeError, KeyError) as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": False, "error": "unknown op"}


def create_service(section: dict[str, Any]) -> CoordService:
    return CoordService(section)
