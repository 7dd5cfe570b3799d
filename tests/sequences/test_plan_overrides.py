"""Plans as data: overrides and documents built by a TOML library, validated as plan files are."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sequences.plan import AxisPulse, MicrowaveCalibration, PlanError, build_plan, load_plan

DEFAULT = Path(__file__).resolve().parents[2] / "configs" / "plans" / "default.toml"
CAL = MicrowaveCalibration(6.8e9, -10.0, AxisPulse(90.0, 125e-6), AxisPulse(0.0, 125e-6), "test")


def test_overrides_give_a_new_validated_plan() -> None:
    plan = load_plan(DEFAULT, CAL)
    other = plan.with_overrides(shots=31, state="coherent", calibration=CAL)
    assert (plan.n_shots, plan.state.kind) == (300, "squeezed")
    assert (other.n_shots, other.state.kind, other.state.squeezing_dB) == (31, "coherent", 0.0)
    doc = tomllib.loads(other.to_toml())
    assert doc["run"] == {"shots": 31, "min_shot_period_s": 0.0} and "cycles" not in doc["run"]
    assert doc["imaging"] == tomllib.loads(DEFAULT.read_text())["imaging"]
    with pytest.raises(PlanError, match="run.shots = 0"):
        plan.with_overrides(shots=0, calibration=CAL)


def test_a_plan_from_data() -> None:
    p = build_plan({"name": "t", "run": {"shots": 6}, "directions": {"sequence": ["x", "z"]}}, "t", CAL)
    assert p.n_shots == 6 and [p.slot(i).direction for i in range(4)] == ["x", "z", "x", "z"]
    with pytest.raises(PlanError, match="cannot be written as TOML"):
        build_plan({"run": {"shots": object()}}, "t", CAL)
    with pytest.raises(PlanError, match="state.kind"):
        build_plan({"run": {"shots": 6}, "state": {"kind": "thermal"}}, "t", CAL)
