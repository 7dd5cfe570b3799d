"""Show the run server's state: the current run (state, progress, time left, chosen criteria), the
queue and the recent history. Exit status 1 if no server serves the configuration's data directory."""
from __future__ import annotations

import argparse
import json
import sys

from app.paths import default_config

PROG = "steerlab status"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="lab configuration of the server (default: virtual lab)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from app.client import Client, ServerError
    from app.commands.queue import format_listing
    from app.labconfig import LabConfigError
    try:
        st = Client.for_config(args.config or default_config()).status()
    except LabConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except ServerError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(st))
        return 0
    print(f"server pid {st['pid']} for {st['data_dir']} ({st['config']}); log {st['log_file']}")
    run_ = st.get("run")
    if run_:
        p = run_.get("progress") or {}
        left = run_.get("time_left_s")
        print(f"run: {run_['state']} {run_['file']}: {p.get('ok_shots', 0)}/{p.get('planned', '?')} shots"
              + (f", {left:.0f} s left" if left is not None and run_.get("running") else "")
              + (f"; {run_['error']}" if run_.get("error") else ""))
    c = st.get("chosen_criteria")
    if c:
        cor = c.get("corrected") or c
        print("chosen regions: " + ", ".join(
            f"{k} {cor[k]['value']:.3f} +- {cor[k]['error']:.3f}" for k in ("xi_R2", "E_Ent", "E_EPR_AB", "E_EPR_BA")
            if isinstance(cor.get(k), dict) and cor[k].get("value") is not None))
    print(format_listing(st["queue"]))
    return 0
