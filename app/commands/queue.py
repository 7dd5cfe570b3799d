"""Steer the run server's queue: list, add PLAN, remove ID, move ID POSITION, clear, pause, resume.

`steerlab queue add configs/plans/default.toml --shots 300` queues a run (checked at once: a bad
plan is refused here); `list` shows the current run, the queue and the recent history.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.paths import default_config

PROG = "steerlab queue"
ACTIONS = ("list", "add", "remove", "move", "clear", "pause", "resume")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("target", nargs="?", help="add: the plan (TOML); remove/move: the queued run's id")
    parser.add_argument("position", nargs="?", type=int, help="move: the new position (0 = next)")
    parser.add_argument("--config", default=None, help="lab configuration of the server (default: virtual lab)")
    parser.add_argument("--shots", type=int, help="add: number of shots (overrides the plan)")
    parser.add_argument("--state", choices=("squeezed", "coherent"), help="add: prepared state")
    parser.add_argument("--seed", type=int, help="add: virtual lab seed")
    parser.add_argument("--out", help="add: run file name in the data directory")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from app.client import Client, ServerError
    from app.labconfig import LabConfigError
    from sequences.plan import PlanError
    from sequences.tomlfields import read_text
    result: Any
    try:
        client = Client.for_config(args.config or default_config())
        if args.action == "add":
            if not args.target:
                raise PlanError("queue add: expected the plan file (TOML)")
            result = client.queue_add(read_text(args.target, PlanError), plan_source=str(Path(args.target)),
                                      shots=args.shots, state=args.state, seed=args.seed, out=args.out)
        elif args.action in ("remove", "move"):
            if not args.target or (args.action == "move" and args.position is None):
                print(f"{PROG}: {args.action}: expected the run's id" + (" and a position" if args.action == "move"
                                                                         else ""), file=sys.stderr)
                return 2
            if args.action == "remove":
                client.queue_remove(args.target)
            else:
                client.queue_move(args.target, args.position)
            result = None
        elif args.action == "list":
            result = client.queue()
        else:
            result = {"clear": lambda: client.call("queue_clear"), "pause": client.queue_pause,
                      "resume": client.queue_resume}[args.action]()
    except (LabConfigError, PlanError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except ServerError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    elif args.action == "list":
        print(format_listing(result))
    elif args.action == "add":
        print(f"queued {result['id']}: {result['plan_source']}")
    else:
        print(f"{args.action}: done" + (f" ({result})" if result is not None else ""))
    return 0


def format_listing(listing: dict[str, Any]) -> str:
    """Current run, queue and the last finished runs, one line each."""
    lines = [f"queue {'PAUSED' if listing.get('paused') else 'running'}"]
    cur = listing.get("current")
    if cur:
        lines.append(f"now: {cur.get('id')} {cur.get('file')}")
    for i, item in enumerate(listing.get("queue", [])):
        extra = ", ".join(f"{k} {item[k]}" for k in ("shots", "state", "seed", "out") if item.get(k) is not None)
        lines.append(f"{i:3d}. {item['id']} {item['plan_source']}" + (f" ({extra})" if extra else ""))
    for h in listing.get("history", [])[-10:]:
        lines.append(f"done: {h.get('id')} {h.get('end_state')} {h.get('file')}" +
                     (f": {h['error']}" if h.get("error") else ""))
    return "\n".join(lines)
