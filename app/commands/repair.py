"""Write a clean copy of a run file (e.g. after a crash or power cut) that any plain h5py reader opens.

The copy holds every committed shot, the latest complete results and all metadata; the original
is left untouched. Exit status 0, or 2 with one line naming the problem.
"""
from __future__ import annotations

import argparse
import sys

from app.runfile import RunFileError, open_run, repair

PROG = "steerlab repair"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN.h5", help="the run file to copy")
    parser.add_argument("out", metavar="CLEAN.h5", help="the new file (must not exist)")
    parser.add_argument("--compression", choices=("none", "blosc-lz4"), default="none",
                        help="frames in the copy (default none: readable without hdf5plugin)")


def run(args: argparse.Namespace) -> int:
    try:
        with open_run(args.run) as src:
            state, closed, flag = src.end_state, src.closed_cleanly, src.open_for_write_flag
        n = repair(args.run, args.out, compression=args.compression)
    except (RunFileError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if closed and not flag:
        how = f"closed by its writer, end state '{state}'"
    elif closed:
        how = (f"end state '{state}' recorded, but HDF5's open-for-write flag is still set: "
               "the writer did not finish closing it")
    else:
        how = (f"not closed by its writer (end state '{state}': crashed, killed or still "
               "being written)")
    print(f"{PROG}: {args.run} ({how}): {n} shots copied to {args.out}")
    return 0
