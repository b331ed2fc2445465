"""The Raft group adapter: one pysyncobj SyncObj per member, in its own thread, applying committed
commands to machine.Machine.

Rules and invariants:
- Consensus is pysyncobj's (leader election, log replication, single-server membership changes, its
  journal and full dumps); nothing here decides who leads or what is committed.
- The password is always set (pysyncobj encrypts and authenticates every frame with Fernet before it
  unpickles anything); `RaftGroup` refuses to start without one. It binds only to this node's mesh
  address, and names members by their mesh addresses (`[addr]:port` is pysyncobj's `addr:port`).
- Journal and full dump live in the data directory (`<data_dir>/coord/raft.journal`, `raft.dump`);
  membership changes are in them, so a restarted member rejoins with the group's current members.
- One replicated method, `_apply_cmd(text)`, carries every command as compact JSON; the machine is the
  consumer's only state, so the full dump holds exactly the machine.
- Threads: pysyncobj applies commands on its own thread under `lock`; `propose` returns an asyncio
  future resolved on the loop (call_soon_threadsafe). Readers take `view()` under the lock.
- Timers are pysyncobj's configuration attributes (read on every use), set from measured RTTs by
  `set_timers` (see timers.py) while the group runs.
- pysyncobj 0.3.17 replaces `socket.inet_ntop` process-wide with a Windows-only function on import
  (pysyncobj/win_inet_pton.py); the import below puts the platform's own function back, and a test
  holds it so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import socket
import threading
from typing import Any

from x0node.coord.machine import Machine
from x0node.coord.timers import RaftTimers

_inet_ntop = socket.inet_ntop
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated  # noqa: E402

socket.inet_ntop = _inet_ntop

log = logging.getLogger("x0node.coord.group")

COMMAND_MAX_BYTES = 8192
FAIL_NAMES = {v: k.lower() for k, v in vars(FAIL_REASON).items() if isinstance(v, int)}


def member_addr(mesh_addr: str, port: int) -> str:
    return f"{mesh_addr}:{port}"


class MachineConsumer(SyncObjConsumer):
    def __init__(self) -> None:
        super().__init__()
        self.machine = Machine()
        self.lock = threading.Lock()

    def _serialize(self) -> dict[str, Any]:
        with self.lock:
            return {"machine": self.machine}

    def _deserialize(self, data: dict[str, Any]) -> None:
        with self.lock:
            self.machine = data["machine"]

    @replicated
    def _apply_cmd(self, text: str) -> dict[str, Any]:
        try:
            cmd = json.loads(text) if isinstance(text, str) and len(text) <= COMMAND_MAX_BYTES else None
        except ValueError:
            cmd = None
        with self.lock:
            return self.machine.apply(cmd)


class RaftGroup:
    """One member's pysyncobj instance. `members` are mesh addresses of the other members."""

    def __init__(self, mesh_addr: str, port: int, members: list[str], password: bytes, data_dir: pathlib.Path,
                 timers: RaftTimers) -> None:
        if not password:
            raise ValueError("the Raft group needs a password")
        data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.self_addr = member_addr(mesh_addr, port)
        self.consumer = MachineConsumer()
        self.conf = SyncObjConf(
            password=password.hex(), bindAddress=self.self_addr, preferredAddrType="ipv6",
            journalFile=str(data_dir / "raft.journal"), fullDumpFile=str(data_dir / "raft.dump"),
            dynamicMembershipChange=True, useFork=False, autoTick=True, commandsWaitLeader=True,
            appendEntriesUseBatch=False,  # send each command at once (a pipe wakes the thread), not per heartbeat
            connectionRetryTime=1.0, logCompactionMinEntries=2000, logCompactionMinTime=600,
            **timers.pysyncobj(),
        )
        others = [member_addr(a, port) for a in members if a != mesh_addr]
        self.obj = SyncObj(self.self_addr, others, conf=self.conf, consumers=[self.consumer])

    def set_timers(self, timers: RaftTimers) -> None:
        for k, v in timers.pysyncobj().items():
            setattr(self.conf, k, v)

    def propose(self, cmd: dict[str, Any], loop: asyncio.AbstractEventLoop) -> asyncio.Future[dict[str, Any]]:
        """Append a command; the future resolves with the machine's answer, or {"ok": false} on failure."""
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        text = json.dumps(cmd, separators=(",", ":"), sort_keys=True)
        if len(text) > COMMAND_MAX_BYTES:
            fut.set_result({"ok": False, "error": "command too large"})
            return fut

        def done(result: Any, err: Any) -> None:
            out = result if err == FAIL_REASON.SUCCESS and isinstance(result, dict) else \
                {"ok": False, "error": f"raft: {FAIL_NAMES.get(err, err)}", "retry": True}
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(out))

        self.consumer._apply_cmd(text, callback=done)
        return fut

    def membership_change(self, op: str, mesh_addr: str, loop: asyncio.AbstractEventLoop) -> asyncio.Future[bool]:
        fut: asyncio.Future[bool] = loop.create_future()

        def done(_result: Any, err: Any) -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(err == FAIL_REASON.SUCCESS))

        node = member_addr(mesh_addr, self.port)
        (self.obj.addNodeToCluster if op == "add" else self.obj.removeNodeFromCluster)(node, callback=done)
        return fut

    def is_leader(self) -> bool:
        return bool(self.obj._isLeader())

    def leader_addr(self) -> str | None:
        leader = self.obj._getLeader()
        return None if leader is None else str(leader.address).rsplit(":", 1)[0]

    def members(self) -> list[str]:
        """Mesh addresses of every member, this one included, as pysyncobj currently knows them."""
        nodes = {self.self_addr, *(n.address for n in self.obj.otherNodes)}
        return sorted(a.rsplit(":", 1)[0] for a in nodes)

    def connected(self, mesh_addr: str) -> bool:
        for n in self.obj.otherNodes:
            if n.address.rsplit(":", 1)[0] == mesh_addr:
                return bool(self.obj.isNodeConnected(n))
        return False

    def view(self) -> dict[str, Any]:
        with self.consumer.lock:
            return self.consumer.machine.view()

    def counts(self) -> dict[str, Any]:
        """Sizes of the replicated machine (for /metrics), read under the consumer's lock."""
        with self.consumer.lock:
            m = self.consumer.machine
            return {"pools": len(m.pools), "leases": sum(1 for v in m.leases.values() if v["expires_s"] > m.mesh_time_s),
                    "reclaimed": m.reclaimed, "mesh_time_s": m.mesh_time_s}

    def status(self) -> dict[str, Any]:
        st = self.obj.getStatus()
        return {"leader": self.leader_addr(), "is_leader": self.is_leader(), "term": st.get("raft_term"),
                "commit_index": st.get("commit_idx"), "last_applied": st.get("last_applied"),
                "has_quorum": bool(st.get("has_quorum")), "members": self.members()}

    def close(self) -> None:
        try:
            self.obj.destroy_synchronous()
        except Exception:  # noqa: BLE001 - pysyncobj may already have stopped its thread
            log.exception("raft group did not stop cleanly")
