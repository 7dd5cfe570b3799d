"""Run a plan on the lab (the virtual lab by default) and write the run file: the headless main job.

With the shipped virtual-lab configuration it starts the emulated instruments and the simulated
atoms on 127.0.0.1, runs the plan with a progress line, and ends with the squeezing, E_Ent and
E_EPR (both ways) with errors at the configured regions. Ctrl-C or SIGTERM stops after the current shot (the
file is closed intact); a second one aborts. Exit status: 0 completed, 1 stopped/aborted/faulted
or instruments unreachable, 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from app.lab import LabBuildError
from app.labconfig import LabConfigError, load_lab_config
from app.paths import default_config, default_plan
from app.preflight import InputError, checked_plan
from app.runfile.schema import RunFileError
from app.session import RunSession, SessionError
from app.signals import Interrupted, stop_then_abort
from calibration.record import RecordError
from drivers.errors import DriverError
from drivers.pulse_program import PulseProgramError
from sequences.control import RunState, StateEvent
from sequences.plan import PlanError, with_overrides
from sequences.sequencer import Progress
from sequences.tomlfields import read_text

PROG = "steerlab run"
AUTO_RESUMES = 5
RESUME_DELAY_S = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config",
                        help="lab configuration (default: the virtual lab, configs/virtual-lab.toml; "
                             "installed: a copy in ~/.config/steerlab, docs/running.md)")
    parser.add_argument("--plan", help="run plan (default: configs/plans/default.toml, 300 squeezed shots)")
    parser.add_argument("--shots", type=int, help="number of shots (overrides the plan)")
    parser.add_argument("--state", choices=("squeezed", "coherent"),
                        help="state the virtual lab prepares (overrides the plan)")
    parser.add_argument("--out", help="run file name inside the configuration's data directory "
                        "(default: <plan>-<state>-<UTC time>.h5)")
    parser.add_argument("--seed", type=_seed, help="virtual lab seed (default: the plan's, else 0)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    parser.add_argument("--server", action="store_true",
                        help="queue the run on the configuration's run server (steerlab serve) and follow "
                             "it there, instead of running it in this process")
    parser.add_argument("--written-log", metavar="FILE",
                        help="append the index of every shot committed to the run file (one per line, "
                             "flushed at once): what a crash test checks the file against")


def _plan_text(args: argparse.Namespace) -> str:
    """The plan's TOML text with the command line's overrides (validated by the plan parser)."""
    return with_overrides(read_text(args.plan, PlanError), args.plan, shots=args.shots, state=args.state)


class _Progress:
    """Progress on stderr: one redrawn line on a terminal (<= 10 per s), else a line per 10 %."""

    def __init__(self, session: RunSession, enabled: bool) -> None:
        self.session = session
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self._last = 0.0
        self._decile = -1

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        final = p.ok_shots >= p.planned
        if self.tty and now - self._last < 0.1 and not final:
            return
        decile = 10 * p.ok_shots // max(1, p.planned)
        if not self.tty and decile == self._decile:
            return
        self._last, self._decile = now, decile
        width = 30
        done = width * p.ok_shots // max(1, p.planned)
        left = self.session.time_left_s()
        eta = f" {left:.0f} s left" if left is not None and not final else ""
        fail = f", {p.failed_shots} failed" if p.failed_shots else ""
        text = f"[{'#' * done}{'.' * (width - done)}] {p.ok_shots}/{p.planned} shots{fail}{eta}"
        sys.stderr.write(f"\r{text}   " if self.tty else text + "\n")
        sys.stderr.flush()


def summary_lines(results: dict[str, Any]) -> list[str]:
    """Readable lines of the chosen region's numbers from the run's results."""
    crit = results.get("criteria") or []
    if not crit:
        error = str(results.get("error") or "too few shots counted")
        return [error if error.startswith("no criteria") else f"no criteria: {error}"]
    c = crit[0]
    region = results["regions"][0]
    ratio = region.get("splitting_ratio")
    lines = [f"regions: {region['name']}" + (f" (splitting ratio {ratio:.3f})" if ratio else ""),
             f"shots per direction: {c['n_shots']}"]

    cor = c.get("corrected") or {}
    if cor:
        lines.append(f"{'':28s} {'corrected (detection noise, PSF)':>52s}   | raw")

    def one(e: dict[str, Any]) -> str:
        if e["value"] is None:
            return "n/a"
        s = f"{e['value']:8.4f} +- {e['error']:.4f}"
        if "certified" in e:
            # the test uses the bias-corrected value and, for the optimised criteria, the
            # split-sample error, so "0.54 +- 0.13" alone can be uncertified: show its p-value
            p = e.get("p_value")
            ptxt = f"p = {p:.2g}" if p is not None else "p n/a"
            if e["certified"]:
                s += f" CERTIFIED <1 ({ptxt})"
            elif e.get("verdict") == "unresolved":
                s += (f" UNRESOLVED: crosstalk alone gives {e.get('crosstalk_bound', float('nan')):.3f}"
                      f" ({ptxt})")
            else:
                s += f" (not certified, {ptxt})"
        return s

    def fmt(key: str, label: str) -> str:
        if cor:
            return f"{label:28s} {one(cor[key]):>52s}   | {one(c[key])}"
        return f"{label:28s} {one(c[key])}"

    lines += [fmt("N", "N (atoms)"), fmt("xi_R2", "xi_R^2 of A and B"),
              fmt("xi_R2_dB", "xi_R^2 of A and B (dB)")]
    whole = [i for i, r in enumerate(results["regions"]) if r.get("kind") == "whole_cloud"]
    if whole and whole[0] < len(crit):
        w = crit[whole[0]]
        wcor = w.get("corrected") or {}
        for key, label in (("xi_R2", "xi_R^2 whole cloud"), ("xi_R2_dB", "xi_R^2 whole cloud (dB)")):
            lines.append(f"{label:28s} {one(wcor[key]):>52s}   | {one(w[key])}" if wcor
                         else f"{label:28s} {one(w[key])}")
    lines += [fmt("E_Ent", "E_Ent"), fmt("E_EPR_AB", "E_EPR A->B"), fmt("E_EPR_BA", "E_EPR B->A")]
    lines += [f"WARNING: {w}" for w in c.get("warnings") or []]
    if cor:
        dn = c["detection_noise"]
        lines.append(f"subtracted (detection noise from atom-free masks beside the clouds, minus PSF "
                     f"partition terms): Var(S^A) {dn['var_a']:.2f}, Var(S^B) {dn['var_b']:.2f}, "
                     f"Cov {dn['cov_ab']:.2f} hbar^2")
    xt = results.get("crosstalk_chosen")
    if xt:
        lines.append(f"crosstalk: N_AB = {xt['n_ab']:.2f} atoms; coherent-state bound E_EPR >= "
                     f"{xt['epr_bound_ab']:.4f} (A->B), {xt['epr_bound_ba']:.4f} (B->A)")
    lines += scan_point_lines(results.get("scan_points"))
    return lines


def scan_point_lines(scan: dict[str, Any] | None) -> list[str]:
    """One line per scan point (values, then corrected E_Ent, E_EPR both ways, xi_R2 with errors
    and verdicts; raw where no correction exists); none without a scan."""
    if not scan:
        return []
    units = {a["field"]: a.get("unit", "") for a in scan.get("axes", [])}
    lines = [f"per scan point ({scan.get('geometry', '')}; corrected where available):"]
    for p in scan.get("points", []):
        vals = ", ".join(f"{k} = {v:g}{' ' + units[k] if units.get(k) else ''}"
                         if isinstance(v, (int, float)) else f"{k} = {v}"
                         for k, v in p["values"].items())
        c = p.get("criteria")
        if not c:
            lines.append(f"  point {p['point']} ({vals}): {p.get('error') or 'no criteria'}")
            continue
        src = c.get("corrected") or c
        parts = []
        for key, label in (("xi_R2", "xi_R^2"), ("E_Ent", "E_Ent"), ("E_EPR_AB", "E_EPR A->B"),
                           ("E_EPR_BA", "E_EPR B->A")):
            e = src.get(key) or {}
            if e.get("value") is None:
                parts.append(f"{label} n/a")
                continue
            mark = "" if "certified" not in e else (" *" if e["certified"] else "")
            parts.append(f"{label} {e['value']:.3f} +- {e['error']:.3f}{mark}")
        lines.append(f"  point {p['point']} ({vals}; {p['shots_counted']} shots): " + ", ".join(parts))
    lines.append("  (* certified < 1)")
    return lines


def _seed(text: str) -> int:
    """--seed: an integer 0 <= seed < 2**32."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 0") from None
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"{v}: expected an integer from 0 to 2**32 - 1")
    return v


def _input_file(option: str, value: str) -> None:
    """InputError naming the option unless ``value`` is a readable file."""
    p = Path(value)
    shown = value if len(value) <= 80 else value[:60] + "..."
    if not p.exists():
        raise InputError(f"{option} {shown}: file not found")
    if p.is_dir():
        raise InputError(f"{option} {shown}: is a directory; expected a TOML file")


def _load_config(args: argparse.Namespace) -> Any:
    """The lab configuration, once --config and --plan are known to be files (absent: the shipped
    ones, app/paths.py)."""
    args.config = args.config or str(default_config())
    args.plan = args.plan or str(default_plan())
    for option, value in (("--config", args.config), ("--plan", args.plan)):
        _input_file(option, value)
    return load_lab_config(args.config)


def prepare(args: argparse.Namespace) -> tuple[Any, Any, RunSession]:
    """Configuration, plan and session from the command line, every input checked before anything
    starts (:mod:`app.preflight`); raises InputError (and the parsers' errors) on bad input."""
    config = _load_config(args)
    if args.shots is not None and args.shots < 1:
        raise PlanError(f"--shots {args.shots}: expected a number of shots >= 1")
    plan, _ = checked_plan(config, read_text(args.plan, PlanError), args.plan, shots=args.shots,
                           state=args.state, output=args.out)
    return config, plan, RunSession(config, plan, args.out, seed=args.seed)


BAD_INPUT = (LabConfigError, PlanError, SessionError, InputError, LabBuildError, RecordError)


def run_on_server(args: argparse.Namespace) -> int:
    """Queue the plan on the run server and follow it: progress on stderr, the summary at the end.
    Ctrl-C / SIGTERM stops this run on the server after its current shot (a second one aborts)."""
    from app.client import Client, ServerError
    config = _load_config(args)
    client = Client(data_dir=config.data_dir)
    mine: dict[str, Any] = {}
    sub = client.subscribe(["run_started", "progress", "run_finished", "server"])
    item = client.queue_add(_plan_text(args), plan_source=args.plan, seed=args.seed, out=args.out)
    print(f"{PROG}: queued {item['id']} on the run server of {config.data_dir}", file=sys.stderr)

    def stop(verb: str) -> None:
        if not mine.get("started"):
            raise Interrupted("not started")
        print(f"\n{PROG}: {'stopping after the current shot' if verb == 'stop' else 'aborting'}",
              file=sys.stderr)
        try:
            client.call(f"run_{verb}")
        except ServerError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)

    finished: dict[str, Any] | None = None
    try:
        with stop_then_abort(lambda: stop("stop"), lambda: stop("abort")):
            while finished is None:
                got = sub.get(2.0)
                if got is None:
                    client.ping()          # ServerUnavailable if the server is gone
                    continue
                event, data = got
                if event == "run_started" and data.get("id") == item["id"]:
                    mine["started"] = True
                    print(f"{PROG}: running, writing {data['file']}", file=sys.stderr)
                elif event == "progress" and mine.get("started") and not args.no_progress:
                    if data["ok_shots"] % max(1, data["planned"] // 10) == 0 and data["status"] == "ok":
                        print(f"{data['ok_shots']}/{data['planned']} shots"
                              + (f", {data['failed_shots']} failed" if data["failed_shots"] else ""),
                              file=sys.stderr)
                elif event == "run_finished" and data.get("id") == item["id"]:
                    finished = data
                elif event == "server" and data.get("state") == "stopped":
                    print(f"{PROG}: the run server stopped", file=sys.stderr)
                    return 1
    except Interrupted:
        try:
            client.queue_remove(item["id"])
            print(f"{PROG}: interrupted; the queued run was removed", file=sys.stderr)
        except ServerError:
            print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except ServerError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    finally:
        sub.close()
    results = finished.get("results") or {}
    if args.json:
        print(json.dumps(finished, allow_nan=False))
    else:
        print(f"run {finished['final_state']}: {finished['file']}")
        for line in summary_lines(results):
            print(line)
    return 0 if finished["final_state"] == "completed" else 1


def run(args: argparse.Namespace) -> int:
    if args.server:
        try:
            return run_on_server(args)
        except BAD_INPUT as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
    try:
        config, plan, session = prepare(args)
    except BAD_INPUT as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    progress = _Progress(session, not args.no_progress)
    session.add_progress_listener(progress)
    log_file = open(args.written_log, "a", encoding="utf-8") if args.written_log else None  # noqa: SIM115
    if log_file is not None:
        def written(shot: Any) -> None:
            log_file.write(f"{shot.index} {shot.status}\n")
            log_file.flush()
        session.add_written_listener(written)

    resumes = [0]

    def on_state(ev: StateEvent) -> None:
        # headless: nobody to press Resume; reconnect-and-retry a few times, then give up
        if ev.state is RunState.PAUSED and session.error:
            resumes[0] += 1
            if resumes[0] > AUTO_RESUMES:
                print(f"\n{PROG}: paused {AUTO_RESUMES} times on faults, aborting: {session.error}",
                      file=sys.stderr)
                threading.Thread(target=_command, args=(session.abort,), daemon=True).start()
                return
            print(f"\n{PROG}: paused: {session.error} (resume {resumes[0]} of {AUTO_RESUMES} in "
                  f"{RESUME_DELAY_S:g} s; Ctrl-C stops)", file=sys.stderr)
            timer = threading.Timer(RESUME_DELAY_S, _resume, (session,))
            timer.daemon = True
            timer.start()

    session.add_state_listener(on_state)
    started = [False]

    def on_stop() -> None:
        if not started[0]:
            raise Interrupted("start-up")        # nothing runs yet: unwind, start() cleans up
        print(f"\n{PROG}: stopping after the current shot (Ctrl-C again to abort)", file=sys.stderr)
        _command(session.stop)

    def on_abort() -> None:
        if not started[0]:
            raise Interrupted("start-up")
        print(f"\n{PROG}: aborting", file=sys.stderr)
        _command(session.abort)

    try:
        with stop_then_abort(on_stop, on_abort):
            try:
                session.start()
            except DriverError as exc:
                print(f"{PROG}: instruments: {exc}", file=sys.stderr)
                return 1
            except (PulseProgramError, ValueError, OSError, RunFileError) as exc:
                # the connected instruments refuse the plan (e.g. the card's own clock), or the
                # run file cannot be created (permissions, disk): nothing is left running
                print(f"{PROG}: cannot start: {exc}", file=sys.stderr)
                return 2 if isinstance(exc, (PulseProgramError, ValueError)) else 1
            except Interrupted:
                print(f"{PROG}: interrupted during start-up; nothing was run", file=sys.stderr)
                return 130
            started[0] = True
            print(f"{PROG}: {plan.n_shots} shots ({plan.state.kind}) on the {config.name}, writing "
                  f"{session.path}", file=sys.stderr)
            while session.wait(0.2) is None:
                pass
    finally:
        if log_file is not None:
            log_file.close()
    final = session.final_state
    if progress.enabled and progress.tty:
        sys.stderr.write("\n")
    results = session.results or {}
    if args.json:
        print(json.dumps({"file": str(session.path), "final_state": final.value if final else None,
                          "failed_shots": len(session.failed_shots), "results": results}, allow_nan=False))
    else:
        print(f"run {final.value if final else 'unknown'}: {session.path}")
        if session.failed_shots:
            print(f"{len(session.failed_shots)} failed shot(s), e.g. {session.failed_shots[0][1]}")
        for line in summary_lines(results):
            print(line)
    return 0 if final is RunState.COMPLETED else 1


def _resume(session: RunSession) -> None:
    if session.state is RunState.PAUSED:
        _command(session.resume)


def _command(command: Any) -> None:
    try:
        command()
    except SessionError:      # the run moved on meanwhile (stopped, ended)
        pass
