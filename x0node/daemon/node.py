"""The running node: wires the routing core to the kernel (netlink), the mesh sockets and the services.

Rules and invariants:
- One loop timer drives the core: after every input (datagrams, carrier events, timer, service call)
  `pump()` drains the core's outputs in order — datagrams, route changes, events — and re-arms the
  single timer at `router.next_timer()` (left alone when the due time did not change). The core's
  clock is `time.monotonic()`.
- Loop lag (how late the timer ran) is measured here and given to the core as data
  (`router.note_loop_lag`). When the timer ran late by more than LAG_DRAIN_S, the mesh sockets are
  read before the core's timers run, so datagrams that waited in the kernel while we were not
  scheduled count before any neighbour is declared dead.
- Route changes go to the route table (io/route_table.py; the kernel's in io/kernel_routes.py) one by
  one in the same pump, and every outcome goes back to the core (`router.route_results`): the core
  counts a refusal by reason and never claims a route the kernel refused.
- The core never sees an exception from I/O: send failures and kernel refusals are counted by the
  adapters. Remote input never stops the loop.
- Revocations apply at run time: `apply_revocations(crl)` (services call it through the context) hands
  a list to the core, which drops the revoked nodes' adjacencies and routes at once; the revocation
  file is watched (daemon/revocations.py) and applied the same way when it changes. A list that does
  not verify is refused: at start the node does not start (the error names the file), at run time it
  is logged and counted.
- Link rates (io/linkrate.py) are read about once a second (+-25 %) in a worker thread and given to the
  core as data: each interface's transmit byte counter (`note_tx_bytes`) and, where the kernel knows a
  real link speed (an Ethernet NIC, a Wi-Fi station), each neighbour's throughput (`set_throughput`);
  elsewhere the core measures it with probe trains. Mesh sockets pass the kernel's receive stamps.
- `<data_dir>/x0node.sock` answers status requests (daemon/control.py, `x0node status`): read-only.
- Start order: key and trust -> netlink (stale routes of ours flushed, rule, mesh address) -> router ->
  sockets and link monitor -> services -> the ready line. Stop order is the reverse: services ->
  graceful leave (signed WITHDRAW sent) -> our routes, rule and address removed -> sockets closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import random
import signal
import time
from typing import Any

from x0node.daemon.bus import EventBus
from x0node.daemon.config import ConfigError, DaemonConfig

log = logging.getLogger("x0node.daemon")

LEAVE_FLUSH_S = 0.05  # time given to the kernel to put the WITHDRAW datagrams on the wire
EVENTS_PER_PUMP_MAX = 1000
TIMER_SLACK_S = 0.001
LAG_DRAIN_S = 0.005
LINK_RATE_POLL_S = 1.0  # +-25 %: kernel link rates and transmit counters
CORE_STALL_S = 3.0  # the core's timer overdue this long: not alive (the systemd watchdog stops being petted)


class StartupError(RuntimeError):
    """The node cannot start (missing key material, kernel refused our address or rule, ...)."""


def _log_event(ev: Any) -> None:
    kind = type(ev).__name__
    if kind in ("NeighbourUp", "NeighbourDown", "NodeJoined", "NodeLeft"):
        fields = " ".join(f"{k}={v}" for k, v in ev.as_dict().items() if k not in ("kind",))
        log.info("%s %s", kind, fields)
    elif log.isEnabledFor(logging.DEBUG):
        log.debug("%s %s", kind, ev.as_dict())


def revocations_path(config: DaemonConfig) -> pathlib.Path:
    trust = config.section("trust") or {}
    return pathlib.Path(trust["revocations"]) if trust.get("revocations") else config.data_dir / "revoked.crl"


def load_trust(config: DaemonConfig) -> tuple[Any, Any]:
    """(identity with certificate, TrustStore) from the data directory and the [trust] section."""
    from x0node.proto.keyfile import (
        KeyFileError,
        load_anchor_public,
        load_certificate,
        load_or_create_node_key,
        load_revocations,
    )
    from x0node.proto.trust import TrustStore

    data = config.data_dir
    trust = config.section("trust") or {}
    try:
        identity = load_or_create_node_key(data / "node.key")
        anchors_paths = [pathlib.Path(p) for p in trust.get("anchors", [])]
        if not anchors_paths and (data / "anchor.pub").exists():
            anchors_paths = [data / "anchor.pub"]
        anchors = [load_anchor_public(p) for p in anchors_paths]
        cert_path = pathlib.Path(trust["certificate"]) if trust.get("certificate") else data / "node.cert"
        cert = load_certificate(cert_path) if cert_path.exists() else None
        if cert is not None:
            if cert.public_key != identity.public_key:
                raise ConfigError("trust.certificate", f"{cert_path} certifies another key than {data / 'node.key'}")
            identity = identity.with_certificate(cert)
        allowed = {bytes.fromhex(k) for k in trust.get("allowed_keys", [])}
        store = TrustStore(anchors=anchors, allowed_keys=allowed)
        crl_path = revocations_path(config)
        if crl_path.exists():
            crl = load_revocations(crl_path)
            reason = store.install_revocations(crl)
            if reason is not None:  # never start with a list we cannot trust silently left out
                raise StartupError(f"{crl_path}: revocation list refused ({reason}): it is not signed by "
                                   "a trust anchor of this node; replace or remove the file")
    except KeyFileError as exc:
        raise StartupError(str(exc)) from None
    if not anchors and not allowed:
        # a fresh device still comes up (web UI reachable, health "down") so trust can be installed
        log.warning("no trust anchor (%s or trust.anchors) and no trust.allowed_keys: no peer will be "
                    "accepted until one is installed", data / "anchor.pub")
    if cert is None and identity.public_key not in allowed:
        log.warning("no certificate at %s: peers will accept us only if our key is on their allow-list", cert_path)
    return identity, store


class Node:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.interfaces: list[str] = list(config.node["interfaces"])
        self.bus = EventBus()
        self.started_wall = time.time()
        self.started_mono = time.monotonic()
        self.router: Any = None
        self.netlink: Any = None
        self.routes: Any = None  # the kernel's RouteTable
        self.transport: Any = None
        self.links: Any = None
        self.services: Any = None
        self.registry: Any = None
        self.provider: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: float | None = None
        self._stop = asyncio.Event()
        self.revocations: Any = None
        self._revocation_task: asyncio.Task[None] | None = None
        self._link_rate_task: asyncio.Task[None] | None = None
        self._status_server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pumping = False
        self.identity: Any = None
        self.watchdog: Any = None

    # --- the core driver ---------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic()

    def pump(self) -> None:
        """Drain the core's outputs and re-arm the one timer. Re-entrant calls are folded."""
        if self._pumping or self.router is None:
            return
        self._pumping = True
        try:
            r = self.router
            for out in r.datagrams_to_send():
                self.transport.send(out.ifname, out.dst, out.payload)
            changes = r.route_changes()
            if changes:
                r.route_results(self.routes.apply(changes), self.now())
            for _ in range(EVENTS_PER_PUMP_MAX):
                ev = r.next_event()
                if ev is None:
                    break
                _log_event(ev)
                self.bus.publish("core", ev)
            self._arm()
        finally:
            self._pumping = False

    def _arm(self) -> None:
        due = self.router.next_timer()
        if self._timer is not None:
            if due == self._timer_due:
                return
            self._timer.cancel()
            self._timer = None
        self._timer_due = due
        if due is None or self._loop is None:
            return
        # the loop's timers have millisecond resolution and may fire up to 1 ms early; waking before
        # `due` would only re-arm, so aim just past it
        delay = max(0.0, due - self.now()) + TIMER_SLACK_S
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _core_alive(self) -> bool:
        due = self._timer_due
        return due is None or self.now() - due < CORE_STALL_S

    def _on_timer(self) -> None:
        self._timer = None
        now = self.now()
        due = self._timer_due
        if due is not None:
            lag = now - due - TIMER_SLACK_S
            self.router.note_loop_lag(max(0.0, lag), now)
            if lag > LAG_DRAIN_S and self.transport is not None:
                self.transport.drain()
                now = self.now()
        self.router.tick(now)
        self.pump()

    def _on_datagram(self, ifname: str, src: str, data: bytes, stamp: float | None = None) -> None:
        self.router.receive(ifname, src, data, self.now(), stamp)

    def _on_link(self, ifname: str, usable: bool) -> None:
        now = self.now()
        log.info("link %s %s", ifname, "up" if usable else "down")
        if usable:
            self._loop.create_task(self._reopen_socket(ifname))  # type: ignore[union-attr]
            self.router.link_up(ifname, now)
        else:
            self.router.link_down(ifname, now)
        self.pump()

    async def _reopen_socket(self, ifname: str) -> None:
        if self.config.node["configure_sysctls"]:
            from x0node.io.sysctl import configure_interface

            configure_interface(ifname)  # the interface may have appeared after start
        idx = await self.netlink.ifindex(ifname, refresh=True)
        if idx is not None and self.transport.open_interface(ifname, idx):
            self.pump()

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        from x0node.daemon.routing_config import build_router_config
        from x0node.daemon.watchdog import Watchdog
        from x0node.io.kernel_routes import KernelRouteTable
        from x0node.io.linkrate import link_header_bytes
        from x0node.io.links import LinkMonitor
        from x0node.io.netlink import NetlinkAdapter
        from x0node.io.route_table import flush
        from x0node.io.sysctl import configure_interface
        from x0node.io.udp import MeshTransport
        from x0node.proto.protocol import MESH_MCAST_GROUP, MESH_UDP_PORT
        from x0node.proto.router import Router

        self._loop = asyncio.get_running_loop()
        self.watchdog = Watchdog(alive=self._core_alive, steady_s=float(self.config.node["watchdog_s"]))
        self.watchdog.start()
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.config.data_dir, 0o700)
        self.identity, trust = load_trust(self.config)
        kernel = self.config.kernel
        self.netlink = NetlinkAdapter(kernel["table"], kernel["protocol"], kernel["rule_priority"])
        await self.netlink.open()
        self.routes = KernelRouteTable(self.netlink, kernel["table"], kernel["protocol"], kernel["route_priority"])
        stale = await flush(self.routes)
        if stale:
            log.info("removed %d stale routes of ours", stale)
        try:
            await self.netlink.add_rule()
            await self.netlink.add_mesh_address(self.identity.mesh_address)
        except Exception as exc:  # noqa: BLE001
            raise StartupError(f"kernel refused our rule or mesh address: {exc}") from exc
        now = self.now()
        rcfg = build_router_config({**self.config.routing, "prefixes": tuple(self.config.node["prefixes"])})
        self.router = Router(self.identity, trust, rcfg, random.Random(int.from_bytes(os.urandom(8), "big")), now,  # timer jitter for the routing core, seeded from os.urandom; not a secret # nosec B311
                             perf_clock=time.perf_counter)
        self.router.set_wall_clock(time.time(), now)
        self._warn_ungranted(self.config.node["prefixes"])
        self.transport = MeshTransport(MESH_UDP_PORT, MESH_MCAST_GROUP, self._on_datagram, self.pump,
                                       rx_timestamps=True)
        initial: dict[str, bool] = {}
        for ifname in self.interfaces:
            if self.config.node["configure_sysctls"]:
                configure_interface(ifname)
            state = await self.netlink.link_state(ifname)
            usable = bool(state)
            initial[ifname] = usable
            if state is None:
                log.warning("mesh interface %s does not exist (yet)", ifname)
            else:
                idx = await self.netlink.ifindex(ifname)
                if idx is not None:
                    self.transport.open_interface(ifname, idx)
            self.router.add_interface(ifname, now, up=usable, link_header_bytes=link_header_bytes(ifname))
        self.links = LinkMonitor(self.interfaces, self._on_link)
        await self.links.open(initial)
        # the monitor is live now: re-read states so a change between the two reads is not missed
        for ifname in self.interfaces:
            usable = bool(await self.netlink.link_state(ifname))
            if usable != self.links.state.get(ifname):
                self.links.state[ifname] = usable
                self._on_link(ifname, usable)
        self.pump()
        self._watch_revocations()
        self._watch_link_rates()
        await self._serve_status()
        await self._start_services()
        log.info("x0node ready node_id=%s mesh_addr=%s", self.identity.node_id.hex(), self.identity.mesh_address)
        self.watchdog.ready()

    def _warn_ungranted(self, prefixes: list[str]) -> None:
        from x0node.proto.ownership import Grants

        grants = Grants.of([(self.identity.node_id, self.identity.certificate)])
        for p in prefixes:
            if not grants.may_announce(self.identity.node_id, p):
                log.warning("node.prefixes: %s is not granted by this node's certificate; the mesh will not "
                            "route it (x0node keys sign --prefix, docs/routing.md)", p)

    def apply_revocations(self, crl: Any) -> str | None:
        """Apply a signed revocation list now (None), or say why it was refused (counted by the core)."""
        reason = self.router.apply_revocations(crl, self.now())
        self.pump()
        return reason

    def _watch_revocations(self) -> None:
        from x0node.daemon.revocations import REVOCATION_POLL_S, RevocationFile
        from x0node.proto.timers import jittered

        self.revocations = RevocationFile(revocations_path(self.config), self.apply_revocations,
                                          self.router.revocations_refused)
        self.revocations.mark_seen()  # load_trust applied it (or there is none)
        rng = random.Random(int.from_bytes(os.urandom(8), "big"))  # timer jitter, seeded from os.urandom; not a secret # nosec B311

        async def watch() -> None:
            while True:
                await asyncio.sleep(jittered(REVOCATION_POLL_S, rng))
                try:
                    self.revocations.poll()  # a stat; the file is read (bounded) only when it changed
                except Exception:  # noqa: BLE001 - the watcher must not stop; the file is retried
                    log.exception("revocation list check failed")

        self._revocation_task = self._loop.create_task(watch(), name="revocations")  # type: ignore[union-attr]

    async def _serve_status(self) -> None:
        from x0node.daemon import control

        try:
            self._status_server = await control.serve(self.config.data_dir / control.SOCKET_NAME, self.router, self.now)
        except OSError as exc:  # `x0node status` will say no daemon answers; routing goes on
            log.warning("cannot serve the status socket: %s", exc)

    def _watch_link_rates(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from x0node.io.linkrate import LinkRates
        from x0node.proto.timers import jittered

        rates = LinkRates()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="linkrate")
        rng = random.Random(int.from_bytes(os.urandom(8), "big"))  # poll jitter, seeded from os.urandom; not a secret # nosec B311

        async def watch() -> None:
            try:
                while True:
                    await asyncio.sleep(jittered(LINK_RATE_POLL_S, rng))
                    try:
                        facts = await self._loop.run_in_executor(pool, rates.read, list(self.interfaces))  # type: ignore[union-attr]
                        self.apply_link_facts(facts)
                    except Exception:  # noqa: BLE001 - the watcher must not stop; the next reading may work
                        log.exception("reading link rates failed")
            finally:
                pool.submit(rates.close)
                pool.shutdown(wait=False)

        self._link_rate_task = self._loop.create_task(watch(), name="linkrate")  # type: ignore[union-attr]

    def apply_link_facts(self, facts: dict[str, Any]) -> None:
        """Give one reading of the kernel's link facts (io/linkrate.py) to the core."""
        now = self.now()
        for ifname, f in facts.items():
            if f.tx_bytes is not None:
                self.router.note_tx_bytes(ifname, f.tx_bytes, now)
        for nb in self.router.neighbours(now):
            f = facts.get(nb.ifname)
            bps = None if f is None or nb.state != "up" else f.rate_for(nb.addr)
            if bps is not None:
                self.router.set_throughput(nb.ifname, nb.node_id, bps, now)
        self.pump()

    async def _start_services(self) -> None:
        from x0node.daemon.services import ServiceContext, ServiceManager

        self.services = ServiceManager(self.config)
        if not self.services.enabled():
            return
        from x0node.daemon.metrics import make_registry
        from x0node.daemon.provider import DaemonStateProvider

        self.registry = make_registry()
        self.provider = DaemonStateProvider(self)
        ctx = ServiceContext(
            router=self.router, config=self.config, data_dir=self.config.data_dir, registry=self.registry,
            bus=self.bus, interfaces=list(self.interfaces), node_id=self.identity.node_id.hex(),
            mesh_addr=self.identity.mesh_address, provider=self.provider, wake=self.pump,
            set_config=self.set_config, apply_revocations=self.apply_revocations,
            extras={"watchdog": self.watchdog, "services": self.services},
        )
        self.ctx = ctx
        await self.services.start_all(ctx)

    def set_config(self, changes: dict[str, Any]) -> DaemonConfig:
        """Validate dotted-key changes, persist them to config.local.toml, apply what can be applied
        live (log level, announced prefixes); the rest applies at the next start."""
        new = self.config.with_changes(changes)
        new.save_local()
        old = self.config
        self.config = new
        if new.node["log_level"] != old.node["log_level"]:
            logging.getLogger().setLevel(new.node["log_level"].upper())
        if new.node["prefixes"] != old.node["prefixes"] and self.router is not None:
            self._warn_ungranted(new.node["prefixes"])
            self.router.set_prefixes(new.node["prefixes"], self.now())
            self.pump()
        if self.services is not None:
            self.services._config = new
        if getattr(self, "ctx", None) is not None:
            self.ctx.config = new
        self.bus.publish("daemon", {"kind": "ConfigChanged", "keys": sorted(changes)})
        return new

    def request_stop(self) -> None:
        self._stop.set()

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        if self.watchdog is not None:
            await self.watchdog.stop()
        for task in (self._revocation_task, self._link_rate_task):
            if task is not None:
                task.cancel()
        self._revocation_task = self._link_rate_task = None
        if self.services is not None:
            await self.services.stop_all()
        if self._status_server is not None:
            self._status_server.close()
            self._status_server = None
        if self.links is not None:
            await self.links.close()
        if self.router is not None and self.transport is not None:
            self.router.leave(self.now())
            self.pump()
            await asyncio.sleep(LEAVE_FLUSH_S)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.netlink is not None:
            from x0node.io.route_table import flush

            if self.routes is not None:
                await flush(self.routes)  # every route of ours, whatever the core last knew
                self.routes.close()
            await self.netlink.remove_rule()
            await self.netlink.remove_mesh_address()
            await self.netlink.close()
        if self.transport is not None:
            self.transport.close()
        log.info("x0node stopped")


async def run_node(config: DaemonConfig) -> int:
    node = Node(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.request_stop)
    try:
        await node.start()
    except (StartupError, ConfigError) as exc:
        log.error("cannot start: %s", exc)
        await node.stop()
        return 2 if isinstance(exc, ConfigError) else 1
    await node.wait_stopped()
    log.info("stopping")
    await node.stop()
    return 0
