"""A virtual-lab run with instrument faults injected through the emulators at random shots:
dropped connections, error replies, slow replies, garbage bytes, wrong replies, missing frames.
Then the run file is checked: every planned slot exactly one ok shot with the right direction and
the microwave phase of that direction, no index twice, every failure recorded with its reason."""
from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from app.labconfig import parse_lab_config
from app.runfile import open_run
from app.session import RunSession
from sequences.control import RunState
from sequences.plan import parse_plan
from tests.reliability.harness import small_config

PLAN = """[run]
shots = {shots}
[imaging]
reference_delay_s = 5e-3
dark_delay_s = 5e-3
frame_timeout_s = 0.5
[retry]
max_attempts = 3
reconnect_attempts = 3
reconnect_delay_s = 0.05
on_exhausted = "pause"
"""
KINDS = ("mw-drop", "card-drop", "mw-error-reply", "mw-slow-reply", "mw-garbage", "card-garbage",
         "card-wrong-reply", "camera-missing-frames")
PHASE = {"x": 90.0, "y": 0.0}


@dataclass
class StormReport:
    final: str
    faults: Counter = field(default_factory=Counter)
    ok_shots: int = 0
    failed_shots: int = 0
    pauses: int = 0
    problems: list[str] = field(default_factory=list)


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def storm(directory: Path, shots: int, faults: int, seed: int = 0) -> StormReport:
    text = small_config(directory).read_text()
    text = text.replace("[microwave]                      # SMA100B (address comes from the virtual lab)\ntimeout_s = 2.0",
                        "[microwave]\ntimeout_s = 0.3")
    text = text.replace("[timing_card]                    # PrawnDO (address comes from the virtual lab)\ntimeout_s = 2.0",
                        "[timing_card]\ntimeout_s = 0.3")
    cfg = parse_lab_config(text, "storm.toml", base_dir=directory)
    plan = parse_plan(PLAN.format(shots=shots), "storm", cfg.microwave_calibration)
    rng = random.Random(seed)
    at = set(rng.sample(range(2, shots - 1), faults))           # ok-shot counts after which to inject
    report = StormReport("")
    session = RunSession(cfg, plan, "storm.h5", seed=seed)
    injected: set[int] = set()

    def clear() -> None:
        lab = session.lab
        lab.microwave_emulator.reply_delay_s = 0.0
        lab.microwave_emulator.garbage_replies = False
        lab.card_emulator.faults.wrong_replies = {}

    def inject(kind: str) -> None:
        lab = session.lab
        mw, card = lab.microwave_emulator, lab.card_emulator
        if kind == "mw-drop":
            mw.drop_connections()
        elif kind == "card-drop":
            card.drop_connections()
        elif kind == "mw-error-reply":
            mw.push_error(-222, "Data out of range")
        elif kind == "mw-slow-reply":
            mw.reply_delay_s = 0.6
        elif kind == "mw-garbage":
            mw.garbage_replies = True
        elif kind == "card-garbage":
            card.faults.garbage = b"\x00\xff#!garbage\r\n"
        elif kind == "card-wrong-reply":
            card.faults.wrong_replies = {"sts": "Invalid command: sts"}
        else:
            lab.camera.drop_next_frames(1)

    def on_progress(p) -> None:
        clear()
        if p.ok_shots in at and p.ok_shots not in injected:
            injected.add(p.ok_shots)
            kind = rng.choice(KINDS)
            report.faults[kind] += 1
            inject(kind)

    def on_state(ev) -> None:
        if ev.state is RunState.PAUSED and session.error:
            report.pauses += 1
            clear()
            threading.Timer(0.05, lambda: session.resume() if session.state is RunState.PAUSED else None).start()

    session.add_progress_listener(on_progress)
    session.add_state_listener(on_state)
    with session:
        session.start()
        final = session.wait(3600)
    report.final = final.value if final else "timeout"
    with open_run(session.path) as run:
        t = run.table()
        seen: set[int] = set()
        prev = -1
        for i in range(run.n_shots):
            row = {k: t[k][i] for k in t}
            idx = int(row["index"])
            if idx <= prev:
                report.problems.append(f"index {idx} after {prev}")
            prev = idx
            status = _text(row["status"])
            direction = _text(row["direction"])
            slot = int(row["cycle"]) * 3 + int(row["sequence_index"])
            if direction != "xyz"[slot % 3]:
                report.problems.append(f"shot {idx}: direction {direction} in slot {slot}")
            if status == "ok":
                report.ok_shots += 1
                if slot in seen:
                    report.problems.append(f"slot {slot} has two ok shots")
                seen.add(slot)
                if direction in PHASE:
                    phase = run.shot_text(i)["settings"].get("mw.phase_deg")
                    if phase is None or abs(float(phase) - PHASE[direction]) > 1e-6:
                        report.problems.append(f"shot {idx} ({direction}): microwave phase {phase}")
            else:
                report.failed_shots += 1
                if not run.shot_text(i)["reason"]:
                    report.problems.append(f"failed shot {idx} without a reason")
        missing = sorted(set(range(shots)) - seen)
        if missing:
            report.problems.append(f"slots without an ok shot: {missing[:10]}")
    return report
