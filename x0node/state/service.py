"""The mesh-state daemon service (section `[state]`): sockets, the one timer, persistence, consumers.

Rules and invariants:
- This adapter only moves bytes and time: the protocol is x0node/state/gossip.py. Its own UDP port
  (STATE_UDP_PORT, GTSM-checked link-local sockets from x0node/io/udp.py) on the mesh interfaces keeps
  it apart from the routing core. One loop timer drives the core; after every input `_pump` sends
  what is queued, hands changes to the consumers and re-arms the timer.
- The routing core is read in one place, `router_neighbours` (UP neighbours: interface, id, address),
  polled every NEIGHBOUR_POLL_S; the node identity and TrustStore are the router's (shared, so a CRL
  the router installs is seen here at once).
- Durability: a local write is acknowledged only after the store is on disk (persist.write_atomic);
  changes learnt from peers are written at most PERSIST_DELAY_S later. A damaged store is moved aside,
  counted (`store_corrupt`), and rebuilt from the peers.
- Revocations: whenever the newest verified CRL in the state is newer than the router's, it is handed to
  `Router.apply_revocations(crl, now)`, then `ctx.wake()`, then origins it revokes are purged here.
- Neighbours' feature vectors (features.py): each `anomaly.features` bus event (this node's vector,
  once per anomaly tick) is written as a signed 1-hop record; every newer vector received from a
  neighbour is handed to `ctx.extras["anomaly"].update_peer` (counted: features_published/fed/refused).
- Federated head updates (federated.py): each `anomaly.federated` bus event (this node's update for
  a round, `[anomaly] federated = true`) is written as a signed mesh record; every newer update of
  another origin is handed to `ctx.extras["anomaly"].offer_update` with the record's version (its
  signed sequence number; counted: fed_published, fed_fed, fed_refused).
- Node directory (directory.py): every DIRECTORY_POLL_S this node's own entry (name = `node_name` or
  the hostname, role from its certificate, version, health from the router's stats) is offered to the
  pure `directory.Publisher`, which says when to write it (mesh scope, TTL directory.TTL_S).
- Settings: a change of a key listed in `mesh_settings` (bus event ConfigChanged) is written to the
  state; a winner from the state that differs from the config is applied through `ctx.set_config`, one
  key at a time (a refused value is counted and left alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from typing import Any

from x0node import __version__
from x0node.daemon.exposure import Exposure, Listen
from x0node.proto.wire import DecodeError
from x0node.state import control, directory, features, federated, persist, revocations, settings
from x0node.state.gossip import STATE_MCAST_GROUP, STATE_UDP_PORT, Gossip, Neighbour
from x0node.state.record import Scope, kind_of

FEATURES_TOPIC = "anomaly.features"
"""The anomaly service's bus topic for this node's feature vector (x0node/anomaly/service.py)."""
FEDERATED_TOPIC = "anomaly.federated"
"""The anomaly service's bus topic for this node's federated head update (x0node/anomaly/service.py)."""

log = logging.getLogger("x0node.state")

NEIGHBOUR_POLL_S = 0.1
"""How often the router's neighbour table is read (a new neighbour starts a digest exchange)."""
PERSIST_DELAY_S = 0.5
"""Changes learnt from peers reach the disk at most this much later (writes are coalesced)."""
WALL_CLOCK_RESYNC_S = 10.0
DIRECTORY_POLL_S = 1.0
"""How often this node's own directory entry is compared with the published one."""
TIMER_SLACK_S = 0.001
DEFAULTS: dict[str, Any] = {"enabled": True, "port": STATE_UDP_PORT, "mesh_settings": [], "node_name": ""}
EXPOSURE = Exposure(listens=(Listen("mesh", "udp", "port"),))
"""Gossip arrives from neighbours on the mesh interfaces (x0node/daemon/exposure.py)."""


def validate_config(section: dict[str, Any]) -> dict[str, Any]:
    from x0node.daemon.config import ConfigError

    out = dict(DEFAULTS) | dict(section)
    for key in out:
        if key not in DEFAULTS:
            raise ConfigError(key, "unknown key")
    port = out["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
        raise ConfigError("port", "expected an integer between 1024 and 65535")
    name = out["node_name"]
    if not isinstance(name, str) or (name and not directory.NAME_RE.match(name)):
        raise ConfigError("node_name", f"expected letters, digits, '.', '_' or '-' (at most {directory.NAME_MAX}; "
                          "empty: the hostname)")
    keys = out["mesh_settings"]
    if not isinstance(keys, list) or len(keys) > settings.MAX_MESH_SETTINGS:
        raise ConfigError("mesh_settings", f"expected a list of at most {settings.MAX_MESH_SETTINGS} keys")
    for i, k in enumerate(keys):
        if not isinstance(k, str) or not settings.KEY_RE.match(k):
            raise ConfigError(f"mesh_settings[{i}]", "expected a dotted config key such as node.log_level")
        if k == "node.data_dir" or k.startswith("state.") or k.startswith("trust."):
            raise ConfigError(f"mesh_settings[{i}]", f"{k} cannot be mesh-wide")
    return out


def router_neighbours(router: Any) -> list[Neighbour]:
    """The routing core's UP neighbours. The only read of the router: switch to its read model here."""
    out = []
    for v in router.neighbours():
        if v.state == "up" and v.addr:
            out.append(Neighbour(v.ifname, bytes.fromhex(v.node_id), v.addr))
    return out


class StateService:
    def __init__(self, section: dict[str, Any]) -> None:
        self.port = int(section.get("port", STATE_UDP_PORT))
        self.mesh_settings: list[str] = list(section.get("mesh_settings", []))
        self.gossip: Gossip | None = None
        self.ctx: Any = None
        self.transport: Any = None
        self.store_path: Any = None
        self.counters = {"store_corrupt": 0, "persist_writes": 0, "persist_errors": 0, "crl_applied": 0,
                         "settings_applied": 0, "settings_refused": 0, "settings_published": 0,
                         "features_published": 0, "features_fed": 0, "features_refused": 0,
                         "directory_published": 0, "directory_errors": 0,
                         "fed_published": 0, "fed_fed": 0, "fed_refused": 0}
        self.started_s = self.now()
        self.publisher = directory.Publisher(self.started_s)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: float | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._persist_handle: asyncio.TimerHandle | None = None
        self._persist_lock = asyncio.Lock()
        self._server: asyncio.AbstractServer | None = None
        self._collector: Any = None
        self._pumping = False
        self._sub: Any = None
        self._feat_sub: Any = None
        self._fed: dict[bytes, int] = {}  # origin -> version of its feature vector last handed over
        self._fed_heads: dict[bytes, int] = {}  # origin -> version of its head update last handed over
        self._head_sub: Any = None
        self.crl_applied_wall: float | None = None

    @staticmethod
    def now() -> float:
        return time.monotonic()

    # --- lifecycle ---------------------------------------------------------------------------------------
    async def start(self, ctx: Any) -> None:
        from x0node.io.udp import MeshTransport

        self.ctx = ctx
        router = ctx.router
        now = self.now()
        trust = router.trust
        self.gossip = Gossip(router.identity, trust, random.Random(int.from_bytes(os.urandom(8), "big")), now,  # gossip timer jitter, seeded from os.urandom; not a secret # nosec B311
                             validators={revocations.CRL_NS: revocations.validator(trust),
                                         settings.SETTINGS_NS: settings.validator,
                                         features.FEATURES_NS: features.validator,
                                         federated.FED_NS: federated.validator,
                                         directory.DIRECTORY_NS: directory.validator})
        self.gossip.set_wall_clock(time.time(), now)
        self.store_path = ctx.data_dir / persist.STORE_NAME
        await self._load(now)
        self.transport = MeshTransport(self.port, STATE_MCAST_GROUP, self._on_datagram, self._pump)
        self._open_sockets()
        self._server = await control.serve(ctx.data_dir / control.SOCKET_NAME, self.handle)
        if ctx.registry is not None:
            from x0node.state.metrics import StateCollector

            self._collector = StateCollector(self)
            ctx.registry.register(self._collector)
        ctx.extras["state"] = self
        self._sub = ctx.bus.subscribe({"daemon"})
        self._feat_sub = ctx.bus.subscribe({FEATURES_TOPIC}, maxlen=4)
        self._head_sub = ctx.bus.subscribe({FEDERATED_TOPIC}, maxlen=2)
        self._tasks = [asyncio.create_task(self._poll_loop(), name="state-neighbours"),
                       asyncio.create_task(self._config_loop(), name="state-settings"),
                       asyncio.create_task(self._features_loop(), name="state-features"),
                       asyncio.create_task(self._heads_loop(), name="state-federated"),
                       asyncio.create_task(self._directory_loop(), name="state-directory")]
        self._consume(set(), now)
        self._pump()
        log.info("state service started port=%d records=%d", self.port, self.gossip.store.count)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        if self._sub is not None:
            self._sub.close()
        if self._feat_sub is not None:
            self._feat_sub.close()
        if self._head_sub is not None:
            self._head_sub.close()
        if self._timer is not None:
            self._timer.cancel()
        if self._persist_handle is not None:
            self._persist_handle.cancel()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                (self.ctx.data_dir / control.SOCKET_NAME).unlink()
        if self.gossip is not None:
            await self._persist_now()
        if self.transport is not None:
            self.transport.close()
        if self._collector is not None:
            with contextlib.suppress(KeyError):
                self.ctx.registry.unregister(self._collector)
        self.ctx.extras.pop("state", None)

    async def _load(self, now: float) -> None:
        assert self.gossip is not None
        data = await asyncio.to_thread(persist.read, self.store_path)
        if data is None:
            return
        try:
            n = self.gossip.load_snapshot(data, now)
            log.info("state store loaded records=%d", n)
        except DecodeError as exc:
            self.counters["store_corrupt"] += 1
            moved = await asyncio.to_thread(persist.quarantine, self.store_path)
            log.warning("state store damaged (%s), moved to %s; rebuilding from peers", exc, moved)

    def _open_sockets(self) -> None:
        for ifname in self.ctx.interfaces:
            if ifname in self.transport.sockets:
                continue
            try:
                idx = socket.if_nametoindex(ifname)
            except OSError:
                continue
            self.transport.open_interface(ifname, idx)

    # --- the core driver ------------------------------------------------------------------------------------
    def _on_datagram(self, ifname: str, src: str, data: bytes) -> None:
        assert self.gossip is not None
        self.gossip.receive(ifname, src, data, self.now())

    def _pump(self) -> None:
        if self._pumping or self.gossip is None:
            return
        self._pumping = True
        try:
            g = self.gossip
            for _ in range(3):  # consumers may queue more (a purge after a CRL)
                for out in g.datagrams_to_send():
                    self.transport.send(out.ifname, out.dst, out.payload)
                changes = g.changes()
                if not changes:
                    break
                self._consume(changes, self.now())
                self._schedule_persist()
            self._arm()
        finally:
            self._pumping = False

    def _arm(self) -> None:
        assert self.gossip is not None
        due = self.gossip.next_timer()
        if self._timer is not None:
            if due == self._timer_due:
                return
            self._timer.cancel()
            self._timer = None
        self._timer_due = due
        if due is None:
            return
        delay = max(0.0, due - self.now()) + TIMER_SLACK_S
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_due = None
        assert self.gossip is not None
        self.gossip.tick(self.now())
        self._pump()

    async def _poll_loop(self) -> None:
        assert self.gossip is not None
        resync = self.now() + WALL_CLOCK_RESYNC_S
        while True:
            await asyncio.sleep(NEIGHBOUR_POLL_S * random.uniform(0.75, 1.25))  # poll jitter, not a secret # nosec B311
            now = self.now()
            try:
                nbrs = router_neighbours(self.ctx.router)
            except Exception:  # noqa: BLE001 - the read model may change under us; keep gossiping
                log.exception("reading the router's neighbours failed")
                continue
            if any(n.ifname not in self.transport.sockets for n in nbrs):
                self._open_sockets()
            if now >= resync:
                self.gossip.set_wall_clock(time.time(), now)
                resync = now + WALL_CLOCK_RESYNC_S
            self.gossip.set_neighbours(nbrs, now)
            self._pump()

    # --- persistence ---------------------------------------------------------------------------------------
    def _schedule_persist(self) -> None:
        if self._persist_handle is None:
            loop = asyncio.get_running_loop()
            self._persist_handle = loop.call_later(
                PERSIST_DELAY_S, lambda: self._tasks.append(loop.create_task(self._persist_later())))

    async def _persist_later(self) -> None:
        self._persist_handle = None
        await self._persist_now()
        self._tasks = [t for t in self._tasks if not t.done()]

    async def _persist_now(self) -> None:
        assert self.gossip is not None
        async with self._persist_lock:
            data = self.gossip.snapshot()
            try:
                await asyncio.to_thread(persist.write_atomic, self.store_path, data)
                self.counters["persist_writes"] += 1
            except OSError:
                self.counters["persist_errors"] += 1
                log.exception("cannot write the state store %s", self.store_path)
                raise

    # --- consumers -------------------------------------------------------------------------------------------
    def _consume(self, changes: set[tuple[str, str]], now: float) -> None:
        assert self.gossip is not None
        if not changes or (revocations.CRL_NS, revocations.CRL_KEY) in changes:
            self._apply_crl(now)
        keys = [k for k in self.mesh_settings if not changes or (settings.SETTINGS_NS, k) in changes]
        if keys:
            self._apply_settings(keys)
        if (features.FEATURES_NS, features.FEATURES_KEY) in changes:
            self._feed_features(now)
        if (federated.FED_NS, federated.FED_KEY) in changes:
            self._feed_heads()

    def _hand_over(self, seen: dict[bytes, int], held: set[bytes], fresh: dict[bytes, tuple[int, Any]],
                   deliver: Callable[[str, int, Any], bool], counter: str) -> None:
        """Hand each origin's newer value with its version to the anomaly service once (`seen`: origin ->
        version handed over; origins no longer `held` are forgotten), counted as `<counter>_fed` or
        `<counter>_refused`."""
        for origin in [o for o in seen if o not in held]:
            del seen[origin]
        for origin, (version, value) in fresh.items():
            seen[origin] = version
            self.counters[f"{counter}_fed" if deliver(origin.hex(), version, value) else f"{counter}_refused"] += 1

    def _feed_heads(self) -> None:
        """Hand every other origin's newest head update to the anomaly service (offer_update)."""
        assert self.gossip is not None
        anomaly = self.ctx.extras.get("anomaly")
        if anomaly is None or not hasattr(anomaly, "offer_update"):
            return
        # expired or purged origins are forgotten: bounded by the store's MAX_ORIGINS
        self._hand_over(self._fed_heads, set(self.gossip.store.origins),
                        federated.peer_updates(self.gossip.store, self._fed_heads, self.gossip.me),
                        lambda origin, version, update: anomaly.offer_update(origin, update, version) is None, "fed")

    async def _heads_loop(self) -> None:
        """This node's head update each federated round -> one signed mesh record."""
        assert self._head_sub is not None
        async for item in self._head_sub:
            try:
                await self.write(federated.FED_NS, federated.FED_KEY,
                                 value=federated.encode_update(item.event.update), ttl_s=federated.TTL_S,
                                 scope=Scope.MESH)
                self.counters["fed_published"] += 1
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                self.counters["fed_refused"] += 1
                log.debug("federated update not published: %s", exc)

    def _feed_features(self, now: float) -> None:
        """Hand every neighbour's newest feature vector to the anomaly service (update_peer)."""
        assert self.gossip is not None
        anomaly = self.ctx.extras.get("anomaly")
        if anomaly is None:
            return
        # expired vectors' origins are forgotten: bounded by the store's MAX_HOP_RECORDS
        self._hand_over(self._fed, {o for (o, ns, _k) in self.gossip.store.hop if ns == features.FEATURES_NS},
                        features.neighbour_vectors(self.gossip.store, self._fed),
                        lambda origin, _version, vec: bool(anomaly.update_peer(origin, list(vec))), "features")

    async def _features_loop(self) -> None:
        """This node's feature vector each anomaly tick -> one signed 1-hop record to the neighbours."""
        assert self._feat_sub is not None
        async for item in self._feat_sub:
            fv = item.event
            try:
                values = [float(v) for v in fv.values]
                ttl = features.ttl_for(float(fv.interval_s))
                await self.write(features.FEATURES_NS, features.FEATURES_KEY,
                                 value=features.encode_vector(values), ttl_s=ttl, scope=Scope.HOP)
                self.counters["features_published"] += 1
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                self.counters["features_refused"] += 1
                log.debug("feature vector not published: %s", exc)

    def own_entry(self, now: float) -> directory.Entry:
        """This node's directory entry from its config, certificate and the router's stats."""
        from x0node.daemon.provider import node_health
        from x0node.proto.trust import Role

        router = self.ctx.router
        st = router.stats()
        health, reason = node_health(st)
        name = self._config_value("state.node_name") or os.uname().nodename
        cert = getattr(router.credential, "certificate", None)
        role = Role(cert.role).name.lower() if cert is not None and cert.role in Role._value2member_map_ else None
        return directory.make_entry(name, role, __version__, health, reason, st.neighbours_up, now - self.started_s)

    async def publish_directory(self, now: float) -> bool:
        """Write this node's entry if the publisher says it is due; True when written."""
        entry = self.own_entry(now)
        if not self.publisher.due(entry, now):
            return False
        me = self.ctx.router.identity.node_id.hex()
        await self.write(directory.DIRECTORY_NS, me, value=entry.encode(), ttl_s=directory.TTL_S)
        self.publisher.done(entry, now)
        self.counters["directory_published"] += 1
        return True

    async def _directory_loop(self) -> None:
        while True:
            try:
                await self.publish_directory(self.now())
            except (OSError, ValueError) as exc:  # a full disk or a refused write: try again next poll
                self.counters["directory_errors"] += 1
                log.warning("directory entry not published: %s", exc)
            await asyncio.sleep(DIRECTORY_POLL_S)

    def directory_by_id(self) -> dict[str, dict[str, Any]]:
        assert self.gossip is not None
        return {e["node_id"]: e for e in directory.listing(self.gossip.store, time.time())}

    def _apply_crl(self, now: float) -> None:
        assert self.gossip is not None
        trust = self.ctx.router.trust
        crl = revocations.best(self.gossip.store, trust)
        if crl is None or (trust.crl_serial is not None and crl.serial <= trust.crl_serial):
            return
        if self.ctx.router.apply_revocations(crl, now) is None:
            self.crl_applied_wall = time.time()
            self.counters["crl_applied"] += 1
            self.ctx.wake()
            purged = self.gossip.purge_untrusted(now)
            log.info("revocation list applied serial=%d revoked=%d purged_records=%d", crl.serial,
                     len(crl.revoked), purged)

    def _config_value(self, key: str) -> Any:
        try:
            return self.ctx.config.get(key)
        except Exception:  # noqa: BLE001 - an unknown key has no current value
            return None

    def _apply_settings(self, keys: list[str]) -> None:
        assert self.gossip is not None
        for key, value in settings.to_apply(self.gossip.store, keys, self._config_value).items():
            try:
                self.ctx.set_config({key: value})
                self.counters["settings_applied"] += 1
                log.info("mesh-wide setting applied key=%s", key)
            except Exception as exc:  # noqa: BLE001 - ConfigError: a value this node cannot take
                self.counters["settings_refused"] += 1
                log.warning("mesh-wide setting refused key=%s: %s", key, exc)

    async def _config_loop(self) -> None:
        async for item in self._sub:
            ev = item.event
            if not isinstance(ev, dict) or ev.get("kind") != "ConfigChanged":
                continue
            keys = [k for k in ev.get("keys", []) if k in self.mesh_settings]
            if keys:
                await self.publish_settings(keys)

    async def publish_settings(self, keys: list[str]) -> None:
        assert self.gossip is not None
        for key, value in settings.to_publish(self.gossip.store, keys, self._config_value).items():
            await self.write(settings.SETTINGS_NS, key, value=settings.encode(value))
            self.counters["settings_published"] += 1

    # --- the API used by the web routes and the control socket --------------------------------------------------
    async def write(self, ns: str, key: str, **kw: Any) -> dict[str, Any]:
        """One local update, acknowledged once durable. ValueError on misuse."""
        assert self.gossip is not None
        rec = self.gossip.write(ns, key, self.now(), **kw)
        if rec.scope == Scope.MESH:
            await self._persist_now()
        self._pump()
        return {"ok": True, "ns": ns, "key": key, "version": rec.version, "origin": rec.origin.hex()}

    async def publish_crl(self, data: bytes) -> dict[str, Any]:
        assert self.gossip is not None
        crl = revocations.verify_crl(self.ctx.router.trust, data)
        if crl is None:
            self.gossip.refused["bad_crl"] += 1
            raise ValueError("not a revocation list signed by this mesh's trust anchor "
                             f"(or more than {revocations.CRL_MAX_REVOKED} nodes)")
        out = await self.write(revocations.CRL_NS, revocations.CRL_KEY, value=data)
        out["serial"] = crl.serial
        return out

    def view(self) -> dict[str, Any]:
        assert self.gossip is not None
        now = self.now()
        g = self.gossip
        trust = self.ctx.router.trust
        sets = {}
        for key in sorted({k for (ns, k) in (r.oid for r in g.store.records()) if ns == settings.SETTINGS_NS}):
            w = settings.winner(g.store, key)
            if w is not None:
                sets[key] = {"value": w[0], "origin": w[1].origin.hex(), "written_at": w[1].version >> 16,
                             "mesh_wide_here": key in self.mesh_settings}
        for v in sets.values():
            v["written_at"] = v["written_at"] / 1000.0
        return {
            "node_id": g.me.hex(), "digest": g.store.digest().hex(), "objects": g.store.objects(),
            "hop": g.store.hop_view(now), "settings": sets,
            "directory": directory.listing(g.store, time.time()),
            "crl": {"serial": trust.crl_serial, "revoked": sorted(x.hex() for x in trust.revoked)},
            "stats": self.status(),
        }

    def status(self) -> dict[str, Any]:
        if self.gossip is None:
            return {}
        st = self.gossip.stats(self.now())
        st["service"] = dict(self.counters)
        st["port"] = self.port
        st["mesh_settings"] = list(self.mesh_settings)
        return st

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """A control-socket request: {"op": ...}. Errors are answers, never exceptions."""
        op = req.get("op")
        try:
            if op == "show":
                return {"ok": True, **self.view()}
            if op == "directory":
                assert self.gossip is not None
                return {"ok": True, "node_id": self.gossip.me.hex(),
                        "nodes": directory.listing(self.gossip.store, time.time())}
            if op == "status":
                return {"ok": True, **self.status()}
            if op == "digest":
                assert self.gossip is not None
                return {"ok": True, "digest": self.gossip.store.digest().hex(), "records": self.gossip.store.count,
                        "crl_serial": self.ctx.router.trust.crl_serial,
                        "digest_changed_wall": time.time() - (self.now() - self.gossip.digest_changed_s),
                        "crl_applied_wall": self.crl_applied_wall}
            if op == "get":
                ns, key = _text(req, "ns"), _text(req, "key")
                assert self.gossip is not None
                return {"ok": True, "ns": ns, "key": key, "entry": self.gossip.store.entry(ns, key)}
            if op == "put":
                ns, key = _text(req, "ns"), _text(req, "key")
                if kind_of(ns) is None:
                    raise ValueError(f"unknown namespace {ns!r}")
                kw = _op_args(req)
                return await self.write(ns, key, **kw)
            if op == "set_config":  # the CLI's way to change a setting, as the web UI's PATCH does
                key = _text(req, "key")
                self.ctx.set_config({key: req.get("value")})
                return {"ok": True, "key": key, "value": self._config_value(key)}
            if op == "publish_crl":
                return await self.publish_crl(bytes.fromhex(_text(req, "crl_hex", 4096)))
        except (ValueError, TypeError) as exc:  # ConfigError is a ValueError
            return {"ok": False, "error": str(exc)}
        return {"ok": False, "error": f"unknown op {op!r}"}


def _text(req: dict[str, Any], name: str, limit: int = 256) -> str:
    v = req.get(name)
    if not isinstance(v, str) or not v or len(v) > limit:
        raise ValueError(f"{name}: expected a non-empty string of at most {limit} characters")
    return v


def _op_args(req: dict[str, Any]) -> dict[str, Any]:
    """put's update: {"value": json} | {"delete": true} | {"incr": n} | {"add": true|false}, "ttl_s"."""
    kw: dict[str, Any] = {}
    if "value" in req:
        kw["value"] = settings.encode(req["value"])
    if req.get("delete") is True:
        kw["delete"] = True
    if "incr" in req:
        if isinstance(req["incr"], bool) or not isinstance(req["incr"], int):
            raise ValueError("incr: expected an integer")
        kw["incr"] = req["incr"]
    if "add" in req:
        if not isinstance(req["add"], bool):
            raise ValueError("add: expected true or false")
        kw["add"] = req["add"]
    if "ttl_s" in req:
        if isinstance(req["ttl_s"], bool) or not isinstance(req["ttl_s"], int):
            raise ValueError("ttl_s: expected an integer")
        kw["ttl_s"] = req["ttl_s"]
    if req.get("scope") == "hop":
        kw["scope"] = Scope.HOP
    return kw


def create_service(section: dict[str, Any]) -> StateService:
    return StateService(section)
