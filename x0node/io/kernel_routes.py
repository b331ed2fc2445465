"""The kernel's route table behind the seam (route_table.py): our routes as raw rtnetlink requests.

Rules and invariants:
- Everything we install carries our protocol number and lives in our table; `ours()` lists only
  routes with both marks, so nothing else is ever deleted.
- Route writes are the hot path (a topology change rewrites many routes at once, on every node): they
  go out as raw rtnetlink requests (rtnetlink.py), up to ROUTE_BATCH_MAX per datagram, on the loop's
  own thread. The kernel handles a request to itself inside `send`, so every acknowledgement is
  waiting when `send` returns and is read at once: no thread, no round trip through the loop.
- Each change is checked before it is encoded (route_table.check_change): one that can never be
  applied gets its error result and is not sent; the rest of the batch goes out.
- A change of metric alone is not written: every route of ours carries the same kernel priority
  (`kernel.route_priority`), so the kernel route would not change.
- ENODEV forgets the cached interface index (a recreated interface gets a new one). A delete the
  kernel answers with ESRCH/ENOENT is done (the kernel dropped the route with its interface).
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Sequence

from x0node.io.netlink import NetlinkAdapter
from x0node.io.route_table import check_change
from x0node.io.rtnetlink import decode_acks, encode_route_request
from x0node.proto.rib import RouteChange, RouteResult

log = logging.getLogger("x0node.io.kernel_routes")

ROUTE_BATCH_MAX = 256  # route requests per netlink datagram
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # acknowledgements carry the request's header only
NETLINK_SOCKET_BUFFER = 1 << 20

RouteWork = tuple[str, str, int, str | None, str | None]  # (op, dest, oif, via, prefsrc)


def errno_reason(err: int) -> str:
    return errno.errorcode.get(err, f"errno_{err}").lower()


class RouteWriter:
    """Route requests on one raw rtnetlink socket, applied synchronously."""

    def __init__(self, table: int, protocol: int, priority: int) -> None:
        self.table = table
        self.protocol = protocol
        self.priority = priority
        self._seq = 0
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, NETLINK_SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, NETLINK_SOCKET_BUFFER)
            try:
                sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            except OSError:
                pass  # older kernels echo the whole request; decode_acks reads both forms
            sock.bind((0, 0))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock

    def apply(self, work: Sequence[RouteWork]) -> list[int]:
        """Apply (op, dest, oif, via, prefsrc) requests in order; errno per request (0 = done)."""
        results = [0] * len(work)
        for start in range(0, len(work), ROUTE_BATCH_MAX):
            chunk = work[start:start + ROUTE_BATCH_MAX]
            seqs: dict[int, int] = {}
            parts = []
            for i, (op, dest, oif, via, prefsrc) in enumerate(chunk, start):
                self._seq = (self._seq + 1) & 0xFFFFFFFF
                seqs[self._seq] = i
                parts.append(encode_route_request(self._seq, op, dest, self.table, self.protocol, self.priority,
                                                  oif, via, prefsrc))
            try:
                self.sock.send(b"".join(parts))
            except OSError as exc:
                for i in seqs.values():
                    results[i] = exc.errno or errno.EIO
                continue
            # the kernel handled the requests inside send(): their acknowledgements are queued now
            while seqs:
                try:
                    data = self.sock.recv(NETLINK_SOCKET_BUFFER)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # ENOBUFS: acknowledgements lost; the outcome is unknown
                    log.warning("route acknowledgements lost: %s", exc.strerror)
                    for i in seqs.values():
                        results[i] = exc.errno or errno.EIO
                    break
                for seq, err in decode_acks(data):
                    i = seqs.pop(seq, None)
                    if i is not None:
                        results[i] = err
        return results

    def close(self) -> None:
        self.sock.close()


class KernelRouteTable:
    """The RouteTable of the kernel: our table and protocol, next hops by interface index."""

    def __init__(self, netlink: NetlinkAdapter, table: int, protocol: int, priority: int) -> None:
        self.netlink = netlink
        self.writer = RouteWriter(table, protocol, priority)
        self.applied = 0
        self.errors = 0

    def apply(self, changes: Sequence[RouteChange]) -> list[RouteResult]:
        out: list[RouteResult | None] = [None] * len(changes)
        work: list[RouteWork] = []
        sent: list[int] = []
        for i, ch in enumerate(changes):
            reason = check_change(ch)
            if reason is None and ch.op == "metric":
                out[i] = RouteResult(ch)
                continue
            if reason is None and ch.op != "del":
                oif = self.netlink.ifindex_now(ch.ifname)
                if oif is None:
                    reason = "no_interface"
                else:
                    work.append(("replace", ch.dest, oif, ch.via or None, self.netlink.mesh_addr))
                    sent.append(i)
                    continue
            if reason is None:
                work.append(("del", ch.dest, 0, None, None))
                sent.append(i)
                continue
            out[i] = RouteResult(ch, reason)
        for i, err in zip(sent, self.writer.apply(work), strict=True):
            ch = changes[i]
            if err == 0 or (ch.op == "del" and err in (errno.ESRCH, errno.ENOENT)):
                out[i] = RouteResult(ch)
                continue
            if err == errno.ENODEV:
                self.netlink.forget_ifindex(ch.ifname)
            out[i] = RouteResult(ch, errno_reason(err))
        results = [r for r in out if r is not None]
        for r in results:
            if r.error is None:
                self.applied += 1
            else:
                self.errors += 1
                ch = r.change
                log.warning("route %s %s via %s dev %s refused: %s", ch.op, ch.dest, ch.via, ch.ifname, r.error)
        return results

    async def ours(self) -> list[str]:
        return [f"{m.get('dst')}/{m['dst_len']}" for m in await self.netlink.our_routes() if m.get("dst") is not None]

    def close(self) -> None:
        self.writer.close()
