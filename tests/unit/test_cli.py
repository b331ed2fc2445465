import subprocess
import sys

from x0node.cli import SUBCOMMANDS, build_parser


def test_help_lists_present_subcommands():
    text = build_parser().format_help()
    assert "x0tta6bl4" in text


def test_console_entry_help_runs():
    out = subprocess.run([sys.executable, "-m", "x0node", "--help"], capture_output=True, text=True, check=True)
    assert "usage: x0node" in out.stdout


def test_every_subcommand_has_help():
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    for name in choices:
        assert name in SUBCOMMANDS
        assert choices[name].format_help()
