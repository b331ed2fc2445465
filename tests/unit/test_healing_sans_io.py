"""The healing decision modules stay sans-I/O: no clock, socket, file, randomness or adapter import."""

from __future__ import annotations

import ast
import pathlib

import pytest

import x0node.healing

PKG = pathlib.Path(x0node.healing.__file__).parent
DECISION = ("observation", "monitor", "probe", "analyze", "actions", "policy", "safety", "plan", "execute", "verify",
            "incident", "knowledge", "engine")
ADAPTERS = ("service", "store", "probe_io", "cpu_io", "actuator", "metrics", "tracing", "cli")
FORBIDDEN = {"asyncio", "socket", "time", "os", "random", "pyroute2", "aiohttp", "sqlite3", "subprocess",
             "threading", "pathlib", "opentelemetry", "prometheus_client"}


def _runtime_imports(tree: ast.Module) -> set[str]:
    out: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue  # annotations only
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module == "x0node.healing":
                out.update(f"x0node.healing.{a.name}" for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                out.add(node.module)
            for field in ("body", "orelse", "handlers", "finalbody"):
                child = getattr(node, field, None)
                if isinstance(child, list):
                    visit(child)

    visit(tree.body)
    return out


@pytest.mark.parametrize("name", DECISION)
def test_decision_module_imports_no_io(name):
    imports = _runtime_imports(ast.parse((PKG / f"{name}.py").read_text()))
    roots = {i.split(".")[0] for i in imports}
    assert not roots & FORBIDDEN, f"{name} imports {sorted(roots & FORBIDDEN)}"
    adapters = {i for i in imports if i.startswith("x0node.") and not i.startswith("x0node.healing.")}
    assert not adapters, f"{name} imports {sorted(adapters)} outside the healing core"
    assert not {i.rsplit(".", 1)[-1] for i in imports if i.startswith("x0node.healing.")} & set(ADAPTERS)


def test_every_module_is_classified_and_documented():
    names = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
    assert names == set(DECISION) | set(ADAPTERS)
    for name in names:
        doc = ast.get_docstring(ast.parse((PKG / f"{name}.py").read_text()))
        assert doc and len(doc) > 80, f"{name} has no module docstring stating its rules"
