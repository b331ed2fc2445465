"""The kernel seam without a kernel: the in-memory table, the flush, and the kernel table's handling of
each change with its raw writer replaced (what would be sent, and what comes back)."""

from __future__ import annotations

import asyncio
import errno

from x0node.io.kernel_routes import KernelRouteTable
from x0node.io.route_table import MemoryRouteTable, check_change, flush
from x0node.proto.rib import RouteChange


def ch(op: str, dest: str, ifname: str = "m0", via: str = "fe80::1", metric: int = 100) -> RouteChange:
    return RouteChange(op, dest, ifname, via, metric)


def test_check_change_refuses_what_an_ipv6_table_cannot_hold():
    assert check_change(ch("add", "fd00::1/128")) is None
    assert check_change(ch("add", "0.0.0.0/0")) == "unsupported_family"
    assert check_change(ch("add", "10.1.0.0/16")) == "unsupported_family"
    assert check_change(ch("add", "fd00::1/64")) == "bad_destination"  # host bits
    assert check_change(ch("add", "junk")) == "bad_destination"
    assert check_change(ch("add", "fd00::/64", via="not-an-address")) == "bad_next_hop"
    assert check_change(ch("del", "fd00::/64", via="")) is None


def test_memory_table_applies_each_change_on_its_own():
    table = MemoryRouteTable(interfaces={"m0"}, refuse=lambda c: "enetunreach" if c.dest == "fd00::3/128" else None)
    results = table.apply([ch("add", "fd00::1/128"), ch("add", "0.0.0.0/0"), ch("add", "fd00::2/128", "m9"),
                           ch("add", "fd00::3/128"), ch("add", "fd00::4/128"), ch("del", "fd00::5/128")])
    assert [r.error for r in results] == [None, "unsupported_family", "no_interface", "enetunreach", None, None]
    assert sorted(table.routes) == ["fd00::1/128", "fd00::4/128"]  # the bad ones did not stop the batch


def test_flush_removes_only_our_routes():
    table = MemoryRouteTable()
    table.apply([ch("add", "fd00::1/128"), ch("add", "fd00::2/128")])
    table.foreign["fd99::/64"] = ("m0", "", 0)
    assert asyncio.run(flush(table)) == 2
    assert table.routes == {} and "fd99::/64" in table.foreign


class FakeNetlink:
    mesh_addr = "fd78::9"

    def __init__(self) -> None:
        self.index = {"m0": 3}
        self.forgotten: list[str] = []

    def ifindex_now(self, ifname: str) -> int | None:
        return self.index.get(ifname)

    def forget_ifindex(self, ifname: str) -> None:
        self.forgotten.append(ifname)

    async def our_routes(self) -> list[dict]:
        return [{"dst": "fd00::1", "dst_len": 128}, {"dst": None, "dst_len": 0}]


class FakeWriter:
    """Stands in for the raw socket: records the requests, answers with the given errnos by dest."""

    def __init__(self, answers: dict[str, int]) -> None:
        self.answers = answers
        self.sent: list[tuple] = []

    def apply(self, work):
        self.sent.extend(work)
        return [self.answers.get(dest, 0) for _op, dest, *_ in work]

    def close(self) -> None:
        pass


def _kernel_table(answers: dict[str, int]) -> tuple[KernelRouteTable, FakeNetlink, FakeWriter]:
    nl = FakeNetlink()
    table = KernelRouteTable.__new__(KernelRouteTable)  # no socket: the writer is replaced
    table.netlink, table.writer, table.applied, table.errors = nl, FakeWriter(answers), 0, 0
    return table, nl, table.writer


def test_kernel_table_one_bad_change_never_aborts_the_batch():
    table, nl, writer = _kernel_table({"fd00::3/128": errno.ENETUNREACH, "fd00::6/128": errno.ENODEV,
                                       "fd00::7/128": errno.ESRCH})
    changes = [ch("add", "0.0.0.0/0"), ch("add", "fd00::2/128"), ch("replace", "fd00::3/128"),
               ch("add", "fd00::4/128", "absent0"), ch("metric", "fd00::5/128", metric=250),
               ch("add", "fd00::6/128"), ch("del", "fd00::7/128"), ch("add", "fd00::8/128", via="")]
    results = table.apply(changes)
    assert [r.change for r in results] == changes  # one result per change, in order
    assert [r.error for r in results] == ["unsupported_family", None, "enetunreach", "no_interface", None,
                                          "enodev", None, None]
    assert [(op, dest) for op, dest, *_ in writer.sent] == [
        ("replace", "fd00::2/128"), ("replace", "fd00::3/128"), ("replace", "fd00::6/128"),
        ("del", "fd00::7/128"), ("replace", "fd00::8/128")]  # IPv4, no interface and metric-only: not sent
    assert writer.sent[0] == ("replace", "fd00::2/128", 3, "fe80::1", "fd78::9")
    assert writer.sent[-1][3] is None  # on-link
    assert nl.forgotten == ["m0"]  # ENODEV: the interface was recreated
    assert (table.applied, table.errors) == (4, 4)
    assert asyncio.run(table.ours()) == ["fd00::1/128"]
