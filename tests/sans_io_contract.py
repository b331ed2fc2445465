"""The sans-I/O import contract, checked by `make lint` (docs/architecture.md, rule 1).

The routing core (`x0node/proto/`, except its two adapters `keyfile.py` and `cli.py`) and the decision
parts of anomaly detection never touch sockets, the clock, files, processes, threads or global
randomness: they take `now` and a seeded `random.Random`. This script parses every such module and
fails, naming file and line, on:
- an import of a forbidden module (FORBIDDEN, or anything under them), anywhere in the file, also
  under `if TYPE_CHECKING:` (a type from an I/O module is a sign the seam leaks);
- any use of the `random` module other than `random.Random` (no module-level randomness);
- in x0node/proto, an import of another x0node package than x0node.proto and x0node.errors (the
  core depends on nothing above it).
Run: python tests/sans_io_contract.py   (exit status 1 and one line per violation when broken)
"""

from __future__ import annotations

import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
FORBIDDEN = frozenset({
    "asyncio", "socket", "time", "os", "pathlib", "shutil", "tempfile", "subprocess", "threading",
    "multiprocessing", "concurrent", "select", "selectors", "signal", "uvloop", "pyroute2", "aiohttp",
    "ctypes", "urllib", "http",
})
CORE = ROOT / "x0node" / "proto"
CORE_ADAPTERS = {"keyfile.py", "cli.py"}
DECISIONS = [ROOT / "x0node" / "anomaly" / f"{name}.py" for name in
             ("calibration", "chain", "drift", "engine", "features", "federated", "iforest", "observe", "rules",
              "trees")]
DECISIONS += [ROOT / "x0node" / "ota" / f"{name}.py" for name in ("manifest", "fetch", "rollout", "boot")]
DECISIONS += [ROOT / "x0node" / "overlay" / f"{name}.py" for name in ("esp_plan", "channel", "policy", "punch",
                                                                      "yggdrasil_plan")]
CORE_MAY_IMPORT = ("x0node.proto", "x0node.errors")


def modules() -> list[pathlib.Path]:
    core = [p for p in sorted(CORE.glob("*.py")) if p.name not in CORE_ADAPTERS]
    return core + DECISIONS


def violations(path: pathlib.Path, source: str | None = None) -> list[str]:
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    rel = path.relative_to(ROOT)
    in_core = path.parent == CORE
    out = []

    def imported(name: str, line: int) -> None:
        top = name.split(".")[0]
        if top in FORBIDDEN:
            out.append(f"{rel}:{line}: imports {name} (I/O, clock or threads: an adapter's job)")
        if in_core and top == "x0node" and not name.startswith(CORE_MAY_IMPORT):
            out.append(f"{rel}:{line}: imports {name} (the core depends only on x0node.proto and x0node.errors)")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                imported(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported(node.module, node.lineno)
            if node.module == "random":
                out += [f"{rel}:{node.lineno}: from random import {a.name} (only random.Random, seeded, is allowed)"
                        for a in node.names if a.name != "Random"]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "random":
            if node.attr != "Random":
                out.append(f"{rel}:{node.lineno}: random.{node.attr} (global randomness; use the seeded rng given)")
    return out


def main() -> int:
    found = [v for path in modules() for v in violations(path)]
    for line in found:
        print(line)
    print(f"sans-I/O contract: {len(modules())} modules checked, {len(found)} violations")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
