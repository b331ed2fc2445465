"""The boundary between x0node (on routers) and x0lab (development machines only).

x0node never imports x0lab statically; the commands that need it (`x0node testbed`, `x0node model
eval`) import it when run and, where it is missing (as on a router), exit 2 naming the package.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import x0node

X0NODE_DIR = pathlib.Path(x0node.__file__).parent
WITHOUT_X0LAB = "import sys; sys.modules['x0lab'] = None; from x0node.cli import main; sys.exit(main(sys.argv[1:]))"


def _run_without_x0lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_X0LAB, *args], capture_output=True, text=True, timeout=120)


def test_x0node_never_imports_x0lab_statically() -> None:
    offenders = []
    for path in sorted(X0NODE_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(X0NODE_DIR)}: {n}" for n in names if n.split(".")[0] == "x0lab"]
    assert offenders == []


def test_testbed_without_x0lab_says_what_is_missing() -> None:
    out = _run_without_x0lab("testbed", "status")
    assert out.returncode == 2
    assert "x0node testbed: needs the development package x0lab" in out.stderr
    assert "Traceback" not in out.stderr


def test_model_eval_without_x0lab_says_what_is_missing() -> None:
    out = _run_without_x0lab("model", "eval")
    assert out.returncode == 2
    assert "x0node model eval: needs the development package x0lab" in out.stderr
    assert "Traceback" not in out.stderr


def test_router_help_works_without_x0lab_and_leaves_the_testbed_out() -> None:
    out = _run_without_x0lab("--help")
    assert out.returncode == 0, out.stderr
    assert " run " in out.stdout and "testbed" not in out.stdout


def test_with_x0lab_installed_the_testbed_command_is_there() -> None:
    out = subprocess.run([sys.executable, "-m", "x0node", "testbed", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "namespace" in out.stdout
