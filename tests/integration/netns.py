"""Network namespaces for integration tests: created here, torn down here, nothing left behind.

Names carry the creating process id so parallel runs never collide; `cleanup()` deletes exactly the
namespaces (and, with them, their veths) that this helper created.
"""

from __future__ import annotations

import itertools
import os
import subprocess

_counter = itertools.count()


def run(*cmd: str, ns: str | None = None, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    return subprocess.run(full, check=check, capture_output=True, text=True, timeout=timeout)


class Namespaces:
    def __init__(self, prefix: str) -> None:
        self.prefix = f"{prefix}{os.getpid() % 100000}"
        self.created: list[str] = []

    def add(self) -> str:
        name = f"{self.prefix}-{next(_counter)}"
        run("ip", "netns", "add", name)
        self.created.append(name)
        run("ip", "link", "set", "lo", "up", ns=name)
        return name

    def veth(self, a: str, b: str, name_a: str, name_b: str) -> None:
        """Join namespaces a and b with a veth pair, both ends up (IPv6 link-local comes with it)."""
        tmp_a, tmp_b = f"x0v{os.getpid() % 10000}a{next(_counter)}", f"x0v{os.getpid() % 10000}b{next(_counter)}"
        run("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        run("ip", "link", "set", tmp_a, "netns", a, "name", name_a)
        run("ip", "link", "set", tmp_b, "netns", b, "name", name_b)
        run("ip", "link", "set", name_a, "up", ns=a)
        run("ip", "link", "set", name_b, "up", ns=b)

    def cleanup(self) -> None:
        for name in reversed(self.created):
            pids = run("ip", "netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            run("ip", "netns", "del", name, check=False)
        self.created.clear()
