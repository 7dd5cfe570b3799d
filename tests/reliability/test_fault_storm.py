"""Instrument faults during a run, CI size: 12 faults of every kind at random shots of a 72-shot
virtual-lab run; no lost, duplicated or mislabelled shot. benchmarks/fault_storm.py injects 100."""
from __future__ import annotations

from pathlib import Path

from tests.reliability.storm import storm


def test_a_run_survives_injected_faults(tmp_path: Path) -> None:
    r = storm(tmp_path, shots=72, faults=12, seed=3)
    assert r.final == "completed", r
    assert r.problems == [], r.problems
    assert r.ok_shots == 72 and sum(r.faults.values()) == 12
    assert r.failed_shots >= 6              # most faults fail the shot they hit (then it is retried)
