import importlib.util
import subprocess
import sys

from x0node.cli import SUBCOMMANDS, build_parser


def test_help_lists_present_subcommands():
    text = build_parser().format_help()
    assert "x0tta6bl4" in text


def test_console_entry_help_runs():
    out = subprocess.run([sys.executable, "-m", "x0node", "--help"], capture_output=True, text=True, check=True)
    assert "usage: x0node" in out.stdout


def _in_this_build(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def test_every_subcommand_of_this_build_is_listed_with_a_help_line():
    action = build_parser()._subparsers._group_actions[0]  # noqa: SLF001
    lines = {a.dest: a.help for a in action._choices_actions}  # noqa: SLF001
    present = [name for name, module in SUBCOMMANDS.items() if _in_this_build(module)]
    assert "run" in present and "keys" in present
    assert sorted(action.choices) == sorted(present)
    for name in present:
        assert lines.get(name), f"x0node {name} has no help line in x0node --help"
        assert action.choices[name].format_usage().startswith(f"usage: x0node {name}")
