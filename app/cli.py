"""The `steerlab` command line: one sub-command per module in `app.commands`."""
from __future__ import annotations

import argparse
import importlib
import sys

# sub-command name -> module under app.commands exposing add_arguments(parser) and run(args) -> int
COMMANDS: dict[str, str] = {
    "criteria": "criteria",
    "run": "run",
    "gui": "gui",
    "analyze": "analyze",
    "calibrate": "calibrate",
    "repair": "repair",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(prog="steerlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"app.commands.{module}")
        p = sub.add_parser(name, help=mod.__doc__.strip().splitlines()[0] if mod.__doc__ else None,
                           description=mod.__doc__)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        print("steerlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
