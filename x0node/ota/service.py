"""The OTA daemon service (section `[ota]`): boot check, mesh distribution, rollouts, installs.

Rules and invariants:
- This adapter moves bytes, files and time; decisions are in manifest.py (admission), fetch.py (which
  chunk from whom), rollout.py (waves, halting, timing) and boot.py (confirm, gate, fall-back).
- Nothing from the mesh is trusted: a manifest is verified (N-of-M release keys) and admitted
  (board, compat, release order, `from_mesh=True`) before one chunk is fetched; every chunk is checked
  against the manifest before it is written or served; the whole bundle, and RAUC's CMS signature
  against the keyring, are checked again before `rauc install`.
- Announcements and statuses go through the mesh state (namespace `lww.ota`): `node.<id>` is each
  node's own record (phase, manifest, progress, where it serves); `rollout` is the rollout record
  written by the coordinating node. No OTA data travels in the state but these small records.
- One uplink download per mesh: only the elected node (fetch.uplink_node over the nodes that announce
  an uplink) fetches from `uplink`; everyone else fetches from the mesh.
- No install while a mark-good is pending (boot.may_install); the pending record is written before
  RAUC touches a slot and cleared only once the outcome is recorded. The mark-good of a normal boot's
  slot runs in the service's loop, off the daemon's start (it held the ready line for seconds on slow
  boards), retried every step until it succeeds; no install starts before its first try.
- `ctx.extras["ota"]` is this service; `updating()` is True from the start of an install until the
  new slot is marked good or rolled back (self-healing's guard window reads it).
- The rollout coordinator runs on wall-clock time (its record crosses nodes and restarts). With the
  coordination service (`ctx.extras["coord"]`) it is the holder of the Raft rollout seat
  (`x0node.coord.leases.RolloutSeat`): progress is committed through Raft before it is announced, and
  another node takes the seat when the coordinator's heartbeat stops. Without it, the node that
  started the rollout (the record's `by`) coordinates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pathlib
import random
import ssl
import time
from typing import Any

import aiohttp

from x0node.daemon.exposure import Exposure, Listen
from x0node.io.atomicfile import write_atomic
from x0node.ota import boot, fetch, rollout, staging, transfer
from x0node.ota import manifest as mf
from x0node.ota.bundle import rauc_check
from x0node.ota.rauc import Installer, NoInstaller, RaucInstaller, other
from x0node.proto.protocol import OTA_TCP_PORT
from x0node.state.control import serve

log = logging.getLogger("x0node.ota")

OTA_NS = "lww.ota"
SOCKET_NAME = "ota.sock"
RELEASE_FILE = "/usr/share/x0tta6bl4/ota/release.json"
KEYS_FILE = "/usr/share/x0tta6bl4/ota/release-keys.json"
KEYRING = "/etc/rauc/keyring.pem"
LOOP_BUSY_S = 0.5
LOOP_IDLE_S = 2.0
HAVE_POLL_S = 1.0
UPLINK_POLL_S = 60.0
UPLINK_SETTLE_S = 10.0
"""After start, the uplink waits this long so the state carries the other nodes' uplink announcements
(one node of the mesh downloads, `fetch.uplink_node`)."""
STATUS_PROGRESS_STEP = 10
"""Progress is published to the state every this many percent (phase changes at once)."""
REASON_MAX = 160
REFUSED_MAX = 256
SEAT_RENEW_S = 20.0
"""The rollout seat (a Raft lease, coord's SEAT_TTL_S) is renewed this often by its holder."""
HEARTBEAT_S = 30.0
"""The coordinator rewrites the rollout record at least this often (its heartbeat)."""
CONFIRM_TRIES_MAX = 120
"""mark-good of a confirmed slot is retried on every loop step (about 2 s) this many times."""
SHORT_ID = 8
ROLLOUT_RECORD_MAX = 600
PHASES = ("idle", "downloading", "verified", "installing", "installed", "pending", "good", "rolled_back",
          "failed", "refused")
UPDATING = frozenset({"installing", "installed", "pending"})
EXPOSURE = Exposure(listens=(Listen("mesh", "tcp", "port"),))
"""The chunk server answers other nodes on mesh ports only (TCP `port`, 6724)."""

DEFAULTS: dict[str, Any] = {"enabled": True, "port": OTA_TCP_PORT, "rate_kbit": 50000,
                            "installer": "rauc", "release_file": RELEASE_FILE, "keys_file": KEYS_FILE,
                            "keyring": KEYRING, "auto_fetch": True, "uplink": "",
                            "health_deadline_s": boot.DEADLINE_S, "health_stable_s": boot.STABLE_S,
                            "rollout_takeover_s": 120}


def validate_config(section: dict[str, Any]) -> dict[str, Any]:
    from x0node.daemon.config import ConfigError

    out = dict(DEFAULTS) | dict(section)
    for key in out:
        if key not in DEFAULTS:
            raise ConfigError(key, "unknown key")
    for key, lo, hi in (("port", 1024, 65535), ("rate_kbit", 64, 10_000_000)):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ConfigError(key, f"expected an integer between {lo} and {hi}")
    for key in ("health_deadline_s", "health_stable_s", "rollout_takeover_s"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or not 1 <= v <= 86400:
            raise ConfigError(key, "expected seconds between 1 and 86400")
    if out["installer"] not in ("rauc", "none"):
        raise ConfigError("installer", 'expected "rauc" or "none"')
    for key in ("release_file", "keys_file", "keyring", "uplink"):
        if not isinstance(out[key], str) or len(out[key]) > 512:
            raise ConfigError(key, "expected a string")
    if out["uplink"] and not out["uplink"].startswith(("http://", "https://")):
        raise ConfigError("uplink", "expected an http(s) URL of a signed manifest")
    if not isinstance(out["auto_fetch"], bool):
        raise ConfigError("auto_fetch", "expected true or false")
    return out


def short(node_id: str) -> str:
    return node_id[:SHORT_ID]


class OtaService:
    def __init__(self, section: dict[str, Any]) -> None:
        self.cfg = validate_config(section)
        self.ctx: Any = None
        self.installer: Installer = RaucInstaller() if self.cfg["installer"] == "rauc" else NoInstaller()
        self.rng = random.Random(int.from_bytes(os.urandom(8), "big"))  # peer choice and jitter, not a secret # nosec B311
        self.phase = "idle"
        self.why = ""
        self.target: staging.Staged | None = None
        self.fetcher: fetch.Fetcher | None = None
        self.refused: dict[str, str] = {}
        self.counters: dict[str, int] = {"manifests_refused": 0, "chunks_bad": 0, "chunks_ok": 0,
                                         "installs": 0, "rollbacks": 0, "uplink_bytes": 0}
        self.refusals: dict[str, int] = {}
        self.pending: boot.Pending | None = None
        self.gate: boot.Gate | None = None
        self.node_state: dict[str, Any] = {"highest_serial": 0, "failed": [], "history": []}
        self.release: dict[str, Any] = {}
        self.keys: mf.ReleaseKeys | None = None
        self.server: transfer.Server | None = None
        self.client: transfer.Client | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._fetching: dict[int, asyncio.Task[Any]] = {}
        self._have_polled: dict[str, float] = {}
        self._published: dict[str, Any] = {}
        self._uplink_checked = -1e9
        self._wake = asyncio.Event()
        self._sock: Any = None
        self._routes_sig: tuple[str, ...] = ()
        self._routes_changed = 0.0
        self.dir = pathlib.Path(".")
        self.last_mid = ""
        self._started = 0.0
        self._unconfirmed = False
        self._confirm_tries = 0
        self._seat_obj: Any = None
        self._seat_renew_at = 0.0
        self._collector: Any = None

    # --- lifecycle -----------------------------------------------------------------------------------------
    async def start(self, ctx: Any) -> None:
        self.ctx = ctx
        self.dir = ctx.data_dir / "ota"
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.release = self._load_release()
        self.keys = mf.ReleaseKeys.from_json(json.loads(pathlib.Path(self.cfg["keys_file"]).read_text()))
        self.node_state = self._read_json("node.json") or self.node_state
        self.node_state["highest_serial"] = max(int(self.node_state.get("highest_serial", 0)),
                                                int(self.release["serial"]))
        self.pending = self._load_pending()
        self.server = transfer.Server(self._lookup, self.cfg["rate_kbit"] * 1000 / 8)
        await self.server.start(self.cfg["port"])
        self.client = transfer.Client(self.cfg["port"], short(ctx.node_id))
        self._started = time.monotonic()
        self._resume_staged()
        self._sock = await serve(ctx.data_dir / SOCKET_NAME, self.handle)
        ctx.extras["ota"] = self
        if getattr(ctx, "registry", None) is not None:
            from x0node.ota.metrics import OtaCollector

            self._collector = OtaCollector(self)
            ctx.registry.register(self._collector)
        await self._on_boot()
        self._last_outcome()
        self._tasks = [asyncio.create_task(self._loop(), name="ota")]
        log.info("ota service started version=%s serial=%s board=%s", self.release["version"],
                 self.release["serial"], self.release["board"])

    async def stop(self) -> None:
        for t in [*self._tasks, *self._fetching.values()]:
            t.cancel()
        for t in [*self._tasks, *self._fetching.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._sock is not None:
            self._sock.close()
            with contextlib.suppress(FileNotFoundError):
                (self.ctx.data_dir / SOCKET_NAME).unlink()
        if self.server is not None:
            await self.server.stop()
        if self.client is not None:
            await self.client.close()
        if self._collector is not None:
            with contextlib.suppress(KeyError):
                self.ctx.registry.unregister(self._collector)
            self._collector = None
        self.ctx.extras.pop("ota", None)

    # --- files ------------------------------------------------------------------------------------------------
    def _load_release(self) -> dict[str, Any]:
        doc = json.loads(pathlib.Path(self.cfg["release_file"]).read_text())
        if not isinstance(doc, dict) or not all(k in doc for k in ("board", "compat", "version", "serial")):
            raise ValueError(f"{self.cfg['release_file']}: expected board, compat, version, serial")
        return {k: doc[k] for k in ("board", "compat", "version", "serial")}

    def _read_json(self, name: str) -> Any:
        try:
            return json.loads((self.dir / name).read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            log.warning("ota: %s is damaged; ignored", name)
            return None

    def _write_json(self, name: str, doc: Any) -> None:
        write_atomic(self.dir / name, json.dumps(doc, indent=1, sort_keys=True).encode(), mode=0o600)

    def _load_pending(self) -> boot.Pending | None:
        doc = self._read_json("pending.json")
        if not isinstance(doc, dict):
            return None
        try:
            return boot.Pending(str(doc["slot"]), str(doc["manifest_id"]), str(doc["version"]), int(doc["serial"]),
                                int(doc["neighbours_before"]), int(doc["routes_before"]), str(doc.get("rollout", "")))
        except (KeyError, ValueError, TypeError):
            log.warning("ota: pending.json is damaged; ignored")
            return None

    def _pending_installed(self) -> bool:
        doc = self._read_json("pending.json")
        return bool(isinstance(doc, dict) and doc.get("installed"))

    def _save_pending(self, p: boot.Pending | None, installed: bool = False) -> None:
        if p is None:
            with contextlib.suppress(FileNotFoundError):
                (self.dir / "pending.json").unlink()
            from x0node.io.atomicfile import fsync_dir

            fsync_dir(self.dir)
        else:
            self._write_json("pending.json", {**p.__dict__, "installed": installed})
        self.pending = p

    def _record(self, outcome: str, mid: str, version: str, why: str) -> None:
        hist = list(self.node_state.get("history", []))[-19:]
        hist.append({"at": int(time.time()), "outcome": outcome, "manifest_id": mid, "version": version,
                     "why": why[:REASON_MAX]})
        self.node_state["history"] = hist
        self._write_json("node.json", self.node_state)

    def _resume_staged(self) -> None:
        """Pick up a bundle staged before a restart (resume per chunk)."""
        assert self.keys is not None
        best: staging.Staged | None = None
        for d in staging.staged(self.dir):
            data = (d / staging.MANIFEST_FILE).read_bytes()
            try:
                m = mf.verify(data, self.keys)
            except mf.ManifestError:
                continue
            if self._admit(m, from_mesh=False, quiet=True) is not None and m.serial != self.release["serial"]:
                continue
            st = staging.Staged.open(self.dir, m, data)
            if best is None or m.serial > best.m.serial:
                best = st
        if best is not None:
            self._set_target(best)

    def _lookup(self, mid: str) -> staging.Staged | None:
        if self.target is not None and self.target.m.id == mid:
            return self.target
        return None

    # --- admission -------------------------------------------------------------------------------------------
    def local(self) -> mf.Local:
        return mf.Local(board=self.release["board"], compat=self.release["compat"],
                        running_serial=int(self.release["serial"]), running_version=self.release["version"],
                        highest_serial=int(self.node_state.get("highest_serial", 0)),
                        failed=frozenset(self.node_state.get("failed", [])))

    def _admit(self, m: mf.Manifest, *, from_mesh: bool, force: bool = False, quiet: bool = False) -> mf.Refusal | None:
        r = mf.admit(m, self.local(), force=force, from_mesh=from_mesh)
        if r is not None and not quiet:
            if len(self.refused) >= REFUSED_MAX:
                self.refused.pop(next(iter(self.refused)))
            self.refused[m.id] = f"{r.reason}: {r.message}"
            self.refusals[r.reason] = self.refusals.get(r.reason, 0) + 1
            self.counters["manifests_refused"] += 1
        return r

    def _set_target(self, st: staging.Staged) -> None:
        for t in self._fetching.values():
            t.cancel()
        self._fetching = {}
        self.target = st
        self.fetcher = fetch.Fetcher(len(st.m.chunks), st.have, self.rng)
        self._have_polled = {}
        staging.prune(self.dir, {st.m.id})
        # every chunk was checked when it was written; the whole file is checked again by RAUC at install
        self._set_phase("verified" if st.complete else "downloading", "")

    def accept_manifest(self, data: bytes, *, from_mesh: bool, force: bool = False) -> staging.Staged:
        """Verify and admit a signed manifest and make it the target; ValueError(reason) if refused."""
        assert self.keys is not None
        try:
            m = mf.verify(data, self.keys)
        except mf.ManifestError as exc:
            self.refusals[exc.reason] = self.refusals.get(exc.reason, 0) + 1
            self.counters["manifests_refused"] += 1
            raise ValueError(f"{exc.reason}: {exc}") from None
        if self.target is not None and self.target.m.id == m.id:
            return self.target
        r = self._admit(m, from_mesh=from_mesh, force=force)
        if r is not None:
            raise ValueError(f"{r.reason}: {r.message}")
        if self.target is not None and self.target.m.serial > m.serial and not force:
            raise ValueError(f"superseded: {self.target.m.version} (serial {self.target.m.serial}) is already staged")
        if self.phase in UPDATING:
            raise ValueError(f"busy: an update is {self.phase}")
        st = staging.Staged.open(self.dir, m, data)
        try:
            st.ensure_space()
        except staging.NoSpace as exc:
            raise ValueError(f"no_space: {exc}") from None
        self._set_target(st)
        self._wake.set()
        return st

    # --- state records ---------------------------------------------------------------------------------------
    def _state(self) -> Any:
        svc = self.ctx.extras.get("state")
        return svc if svc is not None and getattr(svc, "gossip", None) is not None else None

    def records(self) -> dict[str, Any]:
        """The OTA records of the mesh state: LWW winners, decoded; a `node.<id>` record counts only
        when its origin is that node (no node speaks for another)."""
        svc = self._state()
        if svc is None:
            return {}
        from x0node.state.record import decode_payload

        best: dict[str, Any] = {}
        for r in svc.gossip.store.records():
            ns, key = r.oid
            if ns != OTA_NS or (key.startswith("node.") and r.origin.hex() != key[5:]):
                continue
            old = best.get(key)
            if old is None or (r.version, r.origin) > (old.version, old.origin):
                best[key] = r
        out = {}
        for key, r in best.items():
            raw = decode_payload(r.kind, r.payload)
            try:
                val = json.loads(raw) if raw is not None else None
            except ValueError:
                continue
            if isinstance(val, dict):
                out[key] = val
        return out

    async def _put(self, key: str, value: dict[str, Any]) -> None:
        svc = self._state()
        if svc is None:
            return
        from x0node.state import settings

        try:
            await svc.write(OTA_NS, key, value=settings.encode(value))
        except (ValueError, OSError) as exc:
            log.warning("ota: cannot write %s to the mesh state: %s", key, exc)

    def _my_record(self) -> dict[str, Any]:
        st = self.target
        have = len(st.have) if st else 0
        n = len(st.m.chunks) if st else 0
        return {"p": self.phase, "m": st.m.id if st else self.last_mid, "v": st.m.version if st else "",
                "s": st.m.serial if st else 0, "have": have, "n": n, "pct": int(100 * have / n) if n else 0,
                "addr": self.ctx.mesh_addr, "port": self.cfg["port"], "run": self.release["version"],
                "up": bool(self.cfg["uplink"]), "why": self.why[:REASON_MAX]}

    async def _publish(self, force: bool = False) -> None:
        rec = self._my_record()
        old = self._published
        step = (rec["pct"] // STATUS_PROGRESS_STEP) != (old.get("pct", -100) // STATUS_PROGRESS_STEP)
        if force or step or any(rec[k] != old.get(k) for k in ("p", "m", "why", "run", "up")) or \
                (rec["have"] == rec["n"] and old.get("have") != rec["have"]):
            self._published = rec
            await self._put(f"node.{self.ctx.node_id}", rec)

    def _set_phase(self, phase: str, why: str) -> None:
        if phase != self.phase or why != self.why:
            log.info("ota phase=%s why=%s", phase, why)
        self.phase, self.why = phase, why
        self._wake.set()

    # --- boot ---------------------------------------------------------------------------------------------------
    async def _on_boot(self) -> None:
        booted = self.installer.booted()
        if booted is None:
            return
        d = boot.on_boot(self.pending, booted)
        log.info("ota boot decision=%s: %s", d.action, d.reason)
        if d.action == "confirm":
            # Nothing pending: the booted slot is the confirmed one. `rauc status mark-good` (seconds of
            # a subprocess and the ESP's grubenv on a slow board) runs in the loop's first step, after
            # the daemon's ready line, and is retried there until it succeeds; no install starts before
            # its first try (install_problem), as when it ran here.
            self._unconfirmed = True
            if self.target is not None and self.target.m.serial == self.release["serial"]:
                self._set_phase("good", "")
        elif d.action == "gate":
            assert self.pending is not None
            self.gate = boot.Gate(self.pending, time.monotonic(), float(self.cfg["health_deadline_s"]),
                                  float(self.cfg["health_stable_s"]))
            self._set_phase("pending", "health gate: " + self.gate.reason)
        else:
            p = self.pending
            assert p is not None
            self.last_mid = p.manifest_id
            if self._pending_installed():
                self.node_state.setdefault("failed", []).append(p.manifest_id)
                self.counters["rollbacks"] += 1
                self._record("rolled_back", p.manifest_id, p.version, d.reason)
                self._set_phase("rolled_back", d.reason)
            else:
                self._record("failed", p.manifest_id, p.version, "install interrupted")
                retry = self.target is not None and self.target.m.id == p.manifest_id and self.target.complete
                self._set_phase("verified" if retry else "failed",
                                f"install of {p.version} was interrupted; it can be retried")
            await asyncio.to_thread(self.installer.mark, "mark-good", "booted")
            self._save_pending(None)

    async def _confirm(self) -> None:
        """Mark the booted slot good (resets its boot counter); retried from the loop until RAUC could
        (its D-Bus service or the ESP may come up after x0node on a slow boot)."""
        ok, out = await asyncio.to_thread(self.installer.mark, "mark-good", "booted")
        self._unconfirmed = not ok
        if not ok:
            self._confirm_tries += 1
            log.warning("ota: mark-good of the booted slot failed (try %d): %s", self._confirm_tries, out)

    def _last_outcome(self) -> None:
        """A rollback or failure stays the node's status after the reboot that follows it, until
        something new happens (the old slot's daemon reports what the new slot's found)."""
        hist = self.node_state.get("history") or []
        if self.phase == "idle" and hist and hist[-1].get("outcome") in ("rolled_back", "failed"):
            last = hist[-1]
            self.last_mid = str(last.get("manifest_id", ""))
            self._set_phase(str(last["outcome"]), f"{last.get('version', '')}: {last.get('why', '')}")

    def _health(self, now: float) -> boot.Health:
        router = self.ctx.router
        nbrs = sum(1 for v in router.neighbours() if v.state == "up")
        routes = router.routes()
        sig = tuple(sorted(f"{r.dest}>{r.via}" for r in routes))
        if sig != self._routes_sig:
            self._routes_sig, self._routes_changed = sig, now
        return boot.Health(nbrs, len(routes), self._routes_changed, True)

    async def _ui_ok(self) -> bool:
        web = self.ctx.config.section("web")
        if not web or web.get("enabled", True) is False:
            return True
        port = int(web.get("port", 443))
        scheme = "https" if web.get("tls", True) is not False else "http"
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # our own UI on loopback, self-signed; only "does it answer" is asked
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s, \
                    s.get(f"{scheme}://127.0.0.1:{port}/login", ssl=ctx if scheme == "https" else None) as r:
                return r.status < 500
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def _gate_step(self) -> None:
        assert self.gate is not None and self.pending is not None
        now = time.monotonic()
        h = self._health(now)
        h = boot.Health(h.neighbours, h.routes, h.routes_changed_at, await self._ui_ok())
        res = self.gate.step(h, now)
        p = self.pending
        if res is None:
            self._set_phase("pending", "health gate: " + self.gate.reason)
            return
        reason = self.gate.reason  # what held the gate up at its deadline (e.g. "web UI not answering")
        self.gate = None
        if res == "good":
            await self._confirm()
            self._save_pending(None)
            self._record("good", p.manifest_id, p.version, "health gate passed")
            self._set_phase("good", "")
            await self._publish(force=True)
            return
        why = reason or "health gate failed"
        self.node_state.setdefault("failed", []).append(p.manifest_id)
        self._record("rolled_back", p.manifest_id, p.version, why)
        self._save_pending(None)
        self.counters["rollbacks"] += 1
        self._set_phase("rolled_back", f"{p.version}: {why}")
        await self._publish(force=True)
        await asyncio.to_thread(self.installer.mark, "mark-bad", "booted")
        await asyncio.sleep(1.0)
        await asyncio.to_thread(self.installer.reboot)

    # --- the loop ----------------------------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad step must not end OTA
                log.exception("ota step failed")
            busy = self.fetcher is not None and not self.fetcher.done or self.gate is not None
            delay = (LOOP_BUSY_S if busy else LOOP_IDLE_S) * self.rng.uniform(0.75, 1.25)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _step(self) -> None:
        if self.gate is not None:
            await self._gate_step()
        if self._unconfirmed and self._confirm_tries < CONFIRM_TRIES_MAX:
            await self._confirm()
        recs = self.records()
        nodes = {k[5:]: v for k, v in recs.items() if k.startswith("node.")}
        if self.cfg["auto_fetch"] or "rollout" in recs:
            await self._choose_target(nodes, recs.get("rollout"))
        await self._uplink(nodes)
        if self.fetcher is not None and self.target is not None and not self.target.complete:
            await self._fetch_step(nodes)
        await self._rollout_step(recs.get("rollout"), nodes)
        await self._publish()

    async def _choose_target(self, nodes: dict[str, dict[str, Any]], ro: dict[str, Any] | None) -> None:
        if self.phase in UPDATING:
            return
        offers: dict[str, tuple[int, str]] = {}
        for nid, rec in nodes.items():
            mid, serial = rec.get("m"), rec.get("s")
            if nid == self.ctx.node_id or not isinstance(mid, str) or len(mid) != 64 or not rec.get("have"):
                continue
            if not isinstance(serial, int) or mid in self.refused:
                continue
            if self.target is not None and (mid == self.target.m.id or serial <= self.target.m.serial):
                continue
            if not self.cfg["auto_fetch"] and not (ro and ro.get("m") == mid):
                continue
            offers.setdefault(mid, (serial, nid))
        for mid, (_serial, nid) in sorted(offers.items(), key=lambda kv: -kv[1][0]):
            addr = nodes[nid].get("addr")
            if not isinstance(addr, str):
                continue
            assert self.client is not None
            try:
                data = await self.client.manifest(addr, mid)
                self.accept_manifest(data, from_mesh=True)
                log.info("ota: fetching %s announced by %s", mid[:12], short(nid))
                return
            except ValueError as exc:
                self.refused[mid] = str(exc)
                log.info("ota: manifest %s from %s refused: %s", mid[:12], short(nid), exc)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.info("ota: manifest %s from %s not fetched: %s", mid[:12], short(nid), exc)

    def _uplink_elected(self, nodes: dict[str, dict[str, Any]]) -> bool:
        if time.monotonic() - self._started < UPLINK_SETTLE_S:
            return False  # first learn, through the state, which other nodes have an uplink
        cands = [nid for nid, r in nodes.items() if r.get("up")]
        if self.cfg["uplink"]:
            cands.append(self.ctx.node_id)
        return fetch.uplink_node(cands) == self.ctx.node_id

    async def _uplink(self, nodes: dict[str, dict[str, Any]]) -> None:
        if not self.cfg["uplink"] or not self._uplink_elected(nodes) or self.phase in UPDATING:
            return
        now = time.monotonic()
        if now - self._uplink_checked < UPLINK_POLL_S:
            return
        self._uplink_checked = now
        assert self.client is not None
        try:
            data = await self.client.uplink_manifest(self.cfg["uplink"])
            self.counters["uplink_bytes"] += len(data)
            self.accept_manifest(data, from_mesh=True)
        except ValueError as exc:
            if not str(exc).startswith(("installed", "superseded")):
                log.info("ota: uplink manifest refused: %s", exc)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.info("ota: uplink not reachable: %s", exc)

    def _uplink_bundle_url(self) -> str:
        assert self.target is not None
        base = self.cfg["uplink"].rsplit("/", 1)[0]
        return f"{base}/{self.target.m.bundle_name}"

    async def _fetch_step(self, nodes: dict[str, dict[str, Any]]) -> None:
        st, f = self.target, self.fetcher
        assert st is not None and f is not None and self.client is not None
        now = time.monotonic()
        neighbours = {v.node_id for v in self.ctx.router.neighbours() if v.state == "up"}
        peers = {}
        for nid, rec in nodes.items():
            if nid != self.ctx.node_id and rec.get("m") == st.m.id and rec.get("have") and isinstance(rec.get("addr"), str):
                peers[nid] = rec
        for nid in list(f.peers):
            if nid not in peers and nid != "uplink":
                f.drop_peer(nid)
        polls = []
        for nid, rec in peers.items():
            tier = fetch.TIER_NEIGHBOUR if nid in neighbours else fetch.TIER_FAR
            if rec.get("have") == rec.get("n"):
                f.set_peer(nid, None, tier=tier)
            elif now - self._have_polled.get(nid, -1e9) >= HAVE_POLL_S:
                self._have_polled[nid] = now
                polls.append((nid, rec["addr"], tier))
        if polls:
            results = await asyncio.gather(*(self.client.have(a, st.m.id, len(st.m.chunks)) for _, a, _ in polls),
                                           return_exceptions=True)
            for (nid, _a, tier), res in zip(polls, results, strict=True):
                if isinstance(res, frozenset):
                    f.set_peer(nid, res, tier=tier)
        if self.cfg["uplink"] and self._uplink_elected(nodes):
            f.set_peer("uplink", None, tier=fetch.TIER_UPLINK)
        for req in f.tick(now):
            t = self._fetching.pop(req.index, None)
            if t is not None:
                t.cancel()
        for req in f.next_requests(now):
            addr = "" if req.peer == "uplink" else peers[req.peer]["addr"]
            self._fetching[req.index] = asyncio.create_task(self._fetch_one(req.peer, addr, req.index))

    async def _fetch_one(self, peer: str, addr: str, index: int) -> None:
        st, f = self.target, self.fetcher
        assert st is not None and f is not None and self.client is not None
        size = st.m.chunk_size(index)
        try:
            if peer == "uplink":
                data = await self.client.uplink_range(self._uplink_bundle_url(), index * st.m.chunk_bytes, size)
                self.counters["uplink_bytes"] += len(data)
            else:
                data = await self.client.chunk(addr, st.m.id, index, size)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a peer is that peer's
            log.debug("ota: chunk %d from %s failed: %s", index, short(peer), exc)
            if self.fetcher is f:
                f.failed(peer, index, time.monotonic())
            return
        finally:
            self._fetching.pop(index, None)
        if self.target is not st:
            return
        try:
            ok = await asyncio.to_thread(st.put, index, data)
        except OSError as exc:
            log.warning("ota: cannot store chunk %d: %s", index, exc)
            f.failed(peer, index, time.monotonic())
            self._set_phase("failed", f"cannot store the bundle: {exc.strerror or exc}")
            return
        f.completed(peer, index, ok, time.monotonic())
        self.counters["chunks_ok" if ok else "chunks_bad"] += 1
        if st.complete:
            await self._verify_target()
        self._wake.set()

    async def _verify_target(self) -> None:
        st = self.target
        assert st is not None
        ok = await asyncio.to_thread(st.verify_whole)
        why = None if ok else "the bundle's SHA-256 does not match the manifest"
        if ok and pathlib.Path(self.cfg["keyring"]).exists():
            why = await asyncio.to_thread(rauc_check, st.bundle, pathlib.Path(self.cfg["keyring"]))
        if why is None:
            self._set_phase("verified", "")
            log.info("ota: bundle %s verified", st.m.version)
        else:
            self._set_phase("failed", f"verification failed: {why}")
        await self._publish(force=True)

    # --- rollouts -----------------------------------------------------------------------------------------------
    def _spec(self, ro: dict[str, Any]) -> rollout.Spec | None:
        try:
            waves = tuple(tuple(str(x) for x in w) for w in ro["waves"])
            return rollout.Spec(str(ro["id"]), str(ro["m"]), str(ro["v"]), waves, float(ro.get("th", 0.2)),
                                float(ro.get("wto", 1800)), float(ro.get("spread", 0)))
        except (KeyError, TypeError, ValueError):
            return None

    def _seat(self, rollout_id: str) -> Any:
        """The Raft rollout seat (x0node/coord, `leases.RolloutSeat`) when the coordination service runs."""
        coord = self.ctx.extras.get("coord")
        if coord is None:
            return None
        if self._seat_obj is None or self._seat_obj.rollout_id != rollout_id:
            from x0node.coord.leases import RolloutSeat

            self._seat_obj = RolloutSeat(coord, rollout_id)
            self._seat_renew_at = 0.0
        return self._seat_obj

    async def _coordinates(self, ro: dict[str, Any]) -> bool:
        """Whether this node coordinates the rollout now. With the coordination service: the holder of
        the Raft rollout seat — the starting node takes it, and any node may take it over once the
        rollout record's heartbeat is older than `rollout_takeover_s` (its coordinator is gone). Without it:
        the node that started the rollout."""
        mine = ro.get("by") == short(self.ctx.node_id)
        seat = self._seat(str(ro.get("id", "")))
        if seat is None:
            return mine
        stale = time.time() - float(ro.get("hb", ro.get("opened", 0))) > float(self.cfg["rollout_takeover_s"])
        if not (mine or stale or seat.held()):
            return False
        if not seat.held() or time.monotonic() >= self._seat_renew_at:
            try:
                ok = await seat.acquire()
            except Exception as exc:  # noqa: BLE001 - no quorum, timeout: not the coordinator this round
                log.info("ota: rollout seat not acquired: %s", exc)
                ok = False
            if not ok:
                return False
            self._seat_renew_at = time.monotonic() + SEAT_RENEW_S
        return True

    async def _coordinate(self, ro: dict[str, Any], spec: rollout.Spec, nodes: dict[str, dict[str, Any]]) -> None:
        me = short(self.ctx.node_id)
        seat = self._seat(spec.id)
        if seat is not None and ro.get("by") != me:
            saved = await seat.load()  # taking over: continue from the last committed progress
            if isinstance(saved, dict) and saved.get("id") == spec.id:
                ro = dict(ro, **{k: saved[k] for k in ("state", "wave", "opened", "why") if k in saved})
            log.info("ota rollout %s: took over the coordinator seat", spec.id)
        coord = rollout.Coordinator(spec, float(ro.get("opened", 0)), wave=int(ro.get("wave", 0)))
        if ro.get("state") != "running":
            coord.state = str(ro.get("state"))
        acts = coord.step(self.node_phases(nodes, spec), time.time())
        now = time.time()
        if not acts and ro.get("by") == me and now - float(ro.get("hb", 0)) < HEARTBEAT_S:
            return
        new = dict(ro, state=coord.state, wave=coord.wave, by=me, hb=int(now))
        if acts:
            new["why"] = coord.reason[:REASON_MAX]
            if acts[0].kind == "open_wave":
                new["opened"] = int(now)
            log.info("ota rollout %s: %s %s", spec.id, acts[0].kind, acts[0].reason)
        if seat is not None and not await seat.save(new):
            log.warning("ota rollout %s: progress not committed (seat lost)", spec.id)
            return
        await self._put("rollout", new)

    def node_phases(self, nodes: dict[str, dict[str, Any]], spec: rollout.Spec) -> dict[str, str]:
        out = {}
        for nid, rec in nodes.items():
            if rec.get("run") == spec.version and rec.get("p") in ("good", "idle", "verified"):
                out[short(nid)] = "good"
            elif rec.get("m") == spec.manifest_id:
                out[short(nid)] = str(rec.get("p"))
        return out

    async def _rollout_step(self, ro: dict[str, Any] | None, nodes: dict[str, dict[str, Any]]) -> None:
        if not ro:
            return
        spec = self._spec(ro)
        if spec is None:
            return
        if ro.get("state") == "running" and await self._coordinates(ro):
            await self._coordinate(ro, spec, nodes)
        if ro.get("state") != "running" or self.target is None or self.target.m.id != spec.manifest_id:
            return
        if self.phase != "verified" or self.pending is not None:
            return
        if rollout.install_now(spec, short(self.ctx.node_id), int(ro.get("wave", 0)), float(ro.get("opened", 0)),
                               time.time(), self.rng):
            why = self.install_problem()
            if why is not None:
                self._set_phase("refused", why)  # counts as a failure of this node in the rollout
                return
            try:
                await self.install(spec.id)
            except ValueError as exc:
                log.warning("ota rollout %s: install failed: %s", spec.id, exc)

    async def start_rollout(self, threshold: float = 0.2, spread_s: float = 0.0,
                            wave_timeout_s: float = 1800.0) -> dict[str, Any]:
        st = self.target
        if st is None or self.phase not in ("verified", "good"):
            raise ValueError("no verified bundle on this node: upload or fetch one first")
        if not 0 <= threshold < 1 or not 0 <= spread_s <= 7 * 86400 or not 60 <= wave_timeout_s <= 7 * 86400:
            raise ValueError("threshold in [0, 1), spread_s in [0, 604800], wave_timeout_s in [60, 604800]")
        topo = self.ctx.router.topology()
        ids = sorted({n.node_id for n in topo.nodes if n.reachable or n.self} | {self.ctx.node_id})
        edges = {(short(lk.a), short(lk.b)) for lk in topo.links}
        waves = rollout.plan_waves([short(i) for i in ids], edges, short(self.ctx.node_id))
        rec = {"id": os.urandom(4).hex(), "m": st.m.id, "v": st.m.version, "state": "running", "wave": 0,
               "opened": int(time.time()), "hb": int(time.time()), "waves": waves, "th": threshold, "spread": spread_s,
               "wto": wave_timeout_s, "by": short(self.ctx.node_id), "why": ""}
        if len(json.dumps(rec, separators=(",", ":"))) > ROLLOUT_RECORD_MAX:
            raise ValueError(f"a rollout record lists at most about {ROLLOUT_RECORD_MAX // 11} nodes")
        await self._put("rollout", rec)
        self._wake.set()
        return rec

    async def stop_rollout(self) -> dict[str, Any]:
        ro = self.records().get("rollout")
        if not ro or ro.get("state") != "running":
            raise ValueError("no running rollout")
        new = dict(ro, state="stopped", why="stopped by an operator")
        await self._put("rollout", new)
        return new

    # --- install and rollback -----------------------------------------------------------------------------------
    def install_problem(self) -> str | None:
        """Why an install cannot start now, or None."""
        if self.target is None or self.phase != "verified":
            return f"nothing verified to install (phase {self.phase})"
        why = boot.may_install(self.pending)
        if why is not None:
            return why
        if self._unconfirmed and self._confirm_tries == 0:
            return "the booted slot is not marked good yet (its first mark-good is under way)"
        if self.installer.booted() is None:
            return getattr(self.installer, "reason", "the booted slot is unknown")
        return None

    def begin_install(self) -> str:
        """Start an install in the background (the web UI polls the phase); ValueError if it cannot."""
        why = self.install_problem()
        if why is not None:
            raise ValueError(why)
        task = asyncio.create_task(self.install())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._tasks.append(task)
        assert self.target is not None
        return f"installing {self.target.m.version}; the node reboots when it is written"

    async def install(self, rollout_id: str = "") -> str:
        why = self.install_problem()
        if why is not None:
            raise ValueError(why)
        st = self.target
        assert st is not None
        booted = self.installer.booted()
        assert booted is not None
        router = self.ctx.router
        p = boot.Pending(other(booted), st.m.id, st.m.version, st.m.serial,
                         sum(1 for v in router.neighbours() if v.state == "up"), len(router.routes()), rollout_id)
        self._save_pending(p, installed=False)
        self._set_phase("installing", f"writing slot {p.slot}")
        await self._publish(force=True)
        self.counters["installs"] += 1
        ok, out = await asyncio.to_thread(self.installer.install, st.bundle)
        if not ok:
            self._save_pending(None)
            self._record("failed", p.manifest_id, p.version, out)
            self._set_phase("failed", f"rauc install failed: {out[-REASON_MAX:]}")
            await self._publish(force=True)
            raise ValueError(self.why)
        self._save_pending(p, installed=True)
        self.node_state["highest_serial"] = max(int(self.node_state.get("highest_serial", 0)), st.m.serial)
        self._record("installed", p.manifest_id, p.version, f"slot {p.slot}")
        self._set_phase("installed", f"rebooting into slot {p.slot}")
        await self._publish(force=True)
        await asyncio.sleep(2.0)  # let the state gossip carry the status before the reboot
        ok, out = await asyncio.to_thread(self.installer.reboot)
        if not ok:
            log.warning("ota: reboot failed: %s", out)
        return f"installed {p.version} into slot {p.slot}; rebooting"

    async def rollback(self) -> str:
        if self.pending is not None and self.gate is None:
            raise ValueError("an install is in progress")
        booted = self.installer.booted()
        if booted is None:
            raise ValueError(getattr(self.installer, "reason", "the booted slot is unknown"))
        ok, out = await asyncio.to_thread(self.installer.mark, "mark-active", "other")
        if not ok:
            raise ValueError(f"rauc refused: {out}")
        self._record("rollback", "", "", f"operator: slot {other(booted)} made primary")
        self._set_phase("installed", f"rolling back to slot {other(booted)}")
        await self._publish(force=True)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(self.installer.reboot)
        return f"slot {other(booted)} is primary; rebooting"

    # --- views ------------------------------------------------------------------------------------------------
    def updating(self) -> bool:
        return self.phase in UPDATING

    def _loop_error(self) -> str | None:
        """Why the service's loop is not running, or None (it runs from start to stop)."""
        loop = self._tasks[0] if self._tasks else None
        if loop is None or not loop.done():
            return None
        exc = None if loop.cancelled() else loop.exception()
        return f"the OTA loop ended: {type(exc).__name__}: {exc}" if exc else "the OTA loop ended"

    def status(self) -> dict[str, Any]:
        """The service's status as the daemon's service manager reads it (the healing loop's service
        health: `running` and `error` are the manager's keys, so the running release is `release` here
        and `running` only in `view`). Idle is healthy; only a loop that ended sets `error`."""
        st = self.target
        out: dict[str, Any] = {"phase": self.phase, "why": self.why, "updating": self.updating(),
                               "release": dict(self.release),
                               "target": ({"id": st.m.id, "version": st.m.version, "serial": st.m.serial, "bytes": st.m.bundle_bytes,
                                           "chunks": len(st.m.chunks), "have": len(st.have)} if st else None),
                               "pending": self.pending.__dict__ if self.pending else None,
                               "gate": self.gate.reason if self.gate else None,
                               "counters": dict(self.counters), "refusals": dict(self.refusals),
                               "server": dict(self.server.counters) if self.server else {},
                               "served_to": dict(self.server.served_to) if self.server else {},
                               "fetch": dict(self.fetcher.counters) if self.fetcher else {}}
        error = self._loop_error()
        if error is not None:
            out["error"] = error
        return out

    def view(self) -> dict[str, Any]:
        recs = self.records()
        nodes = []
        for key, rec in sorted(recs.items()):
            if key.startswith("node."):
                nid = key[5:]
                nodes.append({"node_id": nid, "self": nid == self.ctx.node_id, "phase": rec.get("p"),
                              "version": rec.get("v"), "running": rec.get("run"), "percent": rec.get("pct"),
                              "why": rec.get("why", "")})
        return {**self.status(), "running": dict(self.release), "slots": self.installer.slots(),
                "booted": self.installer.booted(),
                "rollout": recs.get("rollout"), "nodes": nodes,
                "history": list(self.node_state.get("history", []))[-10:]}

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """Control-socket request (x0node ota ...). Errors are answers."""
        op = req.get("op")
        try:
            if op == "status":
                return {"ok": True, **self.view()}
            if op == "stage":
                path = pathlib.Path(str(req.get("bundle", "")))
                data = pathlib.Path(str(req.get("manifest", ""))).read_bytes()[: mf.MANIFEST_MAX_BYTES + 1]
                st = self.accept_manifest(data, from_mesh=False, force=bool(req.get("force")))
                await asyncio.to_thread(st.adopt, path)
                if not st.complete:
                    self.refused[st.m.id] = "hash_mismatch"
                    raise ValueError("hash_mismatch: the bundle does not match its manifest (tampered or damaged)")
                await self._verify_target()
                if self.phase != "verified":
                    raise ValueError(self.why)
                if req.get("install"):
                    return {"ok": True, "message": await self.install()}
                return {"ok": True, "message": f"{st.m.version} verified and staged", "id": st.m.id}
            if op == "install":
                return {"ok": True, "message": await self.install()}
            if op == "rollback":
                return {"ok": True, "message": await self.rollback()}
            if op == "rollout_start":
                return {"ok": True, "rollout": await self.start_rollout(
                    float(req.get("threshold", 0.2)), float(req.get("spread_s", 0)),
                    float(req.get("wave_timeout_s", 1800)))}
            if op == "rollout_stop":
                return {"ok": True, "rollout": await self.stop_rollout()}
        except (ValueError, TypeError, OSError) as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": False, "error": f"unknown op {op!r}"}


def create_service(section: dict[str, Any]) -> OtaService:
    return OtaService(section)
