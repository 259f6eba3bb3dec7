import subprocess
import sys

from harmbench import __version__
from harmbench.cli import build_parser, main


def test_version_and_help():
    out = subprocess.run([sys.executable, "-m", "harmbench", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"harmbench {__version__}"
    assert main([]) == 2  # no sub-command: help, non-zero


def test_every_command_module_registers(capsys):
    import pkgutil

    import harmbench.commands as pkg

    names = {m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")}
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert names <= set(sub.choices), f"command modules without a parser: {names - set(sub.choices)}"
