"""The `steerlab` command line: one sub-command per module in `app.commands`.

Every command ends with an exit status and at most one line per problem, never a traceback:
bad input exits 2 from the command itself; anything that still escapes a command is written with
its traceback to the log file (:func:`log_path`) and reported as one line (``--debug`` prints the
traceback too). SIGTERM is turned into the same orderly stop as Ctrl-C (:mod:`app.signals`).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import logging.handlers
import os
import signal
import sys
import traceback
from pathlib import Path

from app.signals import (EXIT_INTERRUPTED, STOP_SIGNALS, Interrupted, deferred_signals,
                         install_terminate_handler)

# sub-command name -> module under app.commands exposing add_arguments(parser) and run(args) -> int
COMMANDS: dict[str, str] = {
    "criteria": "criteria",
    "run": "run",
    "gui": "gui",
    "analyze": "analyze",
    "calibrate": "calibrate",
    "repair": "repair",
    "serve": "serve",
    "queue": "queue",
    "status": "status",
}
EXIT_INTERNAL = 1


def log_path() -> Path:
    """The per-user log file of the command line (``$STEERLAB_LOG``, else
    ``$XDG_STATE_HOME/steerlab/steerlab.log``, else ``~/.local/state/steerlab/steerlab.log``)."""
    if os.environ.get("STEERLAB_LOG"):
        return Path(os.environ["STEERLAB_LOG"])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "steerlab" / "steerlab.log"


class _OneLine(logging.Formatter):
    """A log record as one line on stderr: the message, and an exception only by its type and text
    (tracebacks go to the log file)."""

    def __init__(self, prog: str) -> None:
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        text = " ".join(record.getMessage().split())
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({_one_line(record.exc_info[1])})"
        return f"{self.prog}: {text}"


def _setup_logging(prog: str, added: list[logging.Handler]) -> Path | None:
    """WARNING and above: one line each on stderr, and with tracebacks to a rotating log file
    (None if that is unwritable)."""
    root = logging.getLogger()
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(_OneLine(prog))
    console.addFilter(lambda record: not getattr(record, "file_only", False))
    root.addHandler(console)
    added.append(console)
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3,
                                                       encoding="utf-8")
    except OSError:
        return None
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    added.append(handler)
    return path


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered (no abbreviated options)."""
    parser = argparse.ArgumentParser(prog="steerlab", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an unexpected error (always in the log file)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"app.commands.{module}")
        p = sub.add_parser(name, help=mod.__doc__.strip().splitlines()[0] if mod.__doc__ else None,
                           description=mod.__doc__, allow_abbrev=False,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text[:400]}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]     # accepted before or after the sub-command
    prog = "steerlab"
    try:
        # a signal while the libraries import would leave them half-imported (numpy turns the
        # KeyboardInterrupt into an ImportError): hold it until the commands are loaded
        with deferred_signals() as pending:
            parser = build_parser()
        if pending:
            raise Interrupted(pending[0])
        install_terminate_handler()
        args = parser.parse_args(argv)
        prog = f"steerlab {args.command}"
        handlers: list[logging.Handler] = []
        log_file = _setup_logging(prog, handlers)
        try:
            return int(args._run(args))
        except (KeyboardInterrupt, Interrupted):
            print(f"{prog}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except (Exception, RecursionError, MemoryError) as exc:
            logging.getLogger("steerlab").error("%s failed:\n%s", prog, traceback.format_exc(),
                                                extra={"file_only": True})
            where = f"; traceback in {log_file}" if log_file else ""
            if debug:
                traceback.print_exc()
            print(f"{prog}: unexpected error: {_one_line(exc)}{where}"
                  f"{'' if debug else ' (--debug prints it)'}", file=sys.stderr)
            return EXIT_INTERNAL
        finally:
            # the command has ended: a signal now would only break the clean-up of the log
            with deferred_signals():
                for h in handlers:         # main() may run again in this process (tests, notebooks)
                    logging.getLogger().removeHandler(h)
                    h.close()
    except (KeyboardInterrupt, Interrupted):
        # during imports or argument parsing: nothing has started yet
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def entry() -> None:
    """The console script: main(), then leave. A signal that arrives after the command has ended
    (during the interpreter's clean-up) ends the process with the status already decided, instead
    of printing an "Exception ignored" traceback from some atexit handler."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()

    def leave(signum: int, frame: object) -> None:
        os._exit(code)

    for s in STOP_SIGNALS:
        signal.signal(s, leave)
    sys.exit(code)


if __name__ == "__main__":
    entry()
