"""Run plans: the shipped default, direction cycles, calibration values, and clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sequences.plan import (AxisPulse, MicrowaveCalibration, PlanError, load_plan, parse_plan)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "configs" / "plans" / "default.toml"
CAL = MicrowaveCalibration(6.834682611e9, -10.0, AxisPulse(90.0, 120e-6), AxisPulse(0.0, 120e-6),
                           record="cal-2025-01-01")
MINIMAL = "[run]\nshots = 6\n"


def test_default_plan_loads_with_calibration_values() -> None:
    plan = load_plan(DEFAULT, CAL)
    assert plan.n_shots == 300 and plan.cycle.directions == ("x", "y", "z")
    assert plan.state.kind == "squeezed" and plan.state.squeezing_dB == -3.2
    assert plan.imaging.tof_s == 2.2e-3 and plan.imaging.exposure_separation_s == 1.5e-3
    assert plan.imaging.frame_names == ("atoms2", "atoms1", "ref2", "ref1", "dark")
    assert plan.microwave.pulse("x") == AxisPulse(90.0, 120e-6)
    assert plan.microwave.pulse("z") == AxisPulse(0.0, 0.0)
    assert plan.microwave.origin["microwave.x.phase_deg"] == "calibration"
    assert plan.microwave.calibration_record == "cal-2025-01-01"
    assert plan.text == DEFAULT.read_text()
    d = json.loads(plan.to_json())
    assert d["microwave"]["axes"]["y"]["pulse_s"] == 120e-6 and d["n_shots"] == 300
    starts = plan.imaging.exposure_starts_s()
    assert starts["atoms1"] - starts["atoms2"] == pytest.approx(1.5e-3)
    assert starts["atoms2"] == pytest.approx(2.2e-3 - 20e-6)


def test_direction_cycles_and_slots() -> None:
    blocks = parse_plan("[run]\ncycles = 2\n[directions]\norder = 'zx'\nblock = 2\n", "b.toml", CAL)
    assert blocks.cycle.directions == ("z", "z", "x", "x") and blocks.cycle.mode == "blocks"
    assert [s.direction for s in blocks.slots()] == list("zzxxzzxx")
    s = blocks.slot(6)
    assert (s.cycle, s.sequence_index, s.direction) == (1, 2, "x")
    explicit = parse_plan("[run]\nshots = 5\n[directions]\nsequence = ['x', 'z', 'z']\n", "e", CAL)
    assert [s.direction for s in explicit.slots()] == list("xzzxz")
    with pytest.raises(IndexError):
        explicit.slot(5)


def test_plan_values_override_calibration_and_z_only_needs_no_calibration() -> None:
    plan = parse_plan(MINIMAL + "[microwave]\nfrequency_hz = 6.8e9\n[microwave.x]\nphase_deg = 45\n",
                      "o.toml", CAL)
    assert plan.microwave.frequency_hz == 6.8e9 and plan.microwave.pulse("x").phase_deg == 45
    assert plan.microwave.origin["microwave.x.phase_deg"] == "plan"
    assert plan.microwave.pulse("x").pulse_s == 120e-6
    z = parse_plan(MINIMAL + "[directions]\norder = 'z'\n[microwave]\nfrequency_hz = 6.8e9\n"
                   "power_dbm = -10\n", "z.toml")
    assert set(z.microwave.axes) == {"z"}


def test_calibration_from_mapping_validates() -> None:
    cal = MicrowaveCalibration.from_mapping(
        {"frequency_hz": 6.8e9, "power_dbm": 0, "x": {"phase_deg": 90, "pulse_s": 1e-4},
         "y": {"phase_deg": 0, "pulse_s": 1e-4}, "record": "r1"}, "cal.json")
    assert cal.x.phase_deg == 90 and cal.record == "r1"
    with pytest.raises(PlanError,
                       match=r"cal.json: y.pulse_s = -1.0: expected a finite number in s \(> 0\)"):
        MicrowaveCalibration.from_mapping(
            {"frequency_hz": 6.8e9, "power_dbm": 0, "x": {"phase_deg": 90, "pulse_s": 1e-4},
             "y": {"phase_deg": 0, "pulse_s": -1}}, "cal.json")


@pytest.mark.parametrize("text, match", [
    ("", "missing field run"),
    ("[run]\n", "exactly one of run.shots or run.cycles, got neither"),
    ("[run]\nshots = 3\ncycles = 1\n", "got both"),
    ("[run]\nshots = 0\n", r"run.shots = 0: expected an integer \(>= 1"),
    ("[run]\nshots = 2.5\n", "run.shots = 2.5"),
    ("[run]\nshots = 3\nshot_period = 1\n", "unknown field.*run.shot_period"),
    (MINIMAL + "[state]\nkind = 'cat'\n", "state.kind = 'cat': expected one of 'squeezed', 'coherent'"),
    (MINIMAL + "[state]\nkind = 'coherent'\nsqueezing_dB = -3\n", "no squeezing_dB"),
    (MINIMAL + "[state]\nsqueezing_dB = 2\n", "state.squeezing_dB = 2.0"),
    (MINIMAL + "[state]\natom_number = true\n", "state.atom_number = True"),
    (MINIMAL + "[directions]\norder = 'xxz'\n", "directions.order = 'xxz'"),
    (MINIMAL + "[directions]\norder = 'xw'\n", "directions.order = 'xw'"),
    (MINIMAL + "[directions]\nsequence = ['x', 'q']\n", r"directions.sequence = \['x', 'q'\]"),
    (MINIMAL + "[directions]\nsequence = ['x']\nblock = 2\n", "not both"),
    (MINIMAL + "[imaging]\ntof_s = -1\n", r"imaging.tof_s = -1.0: expected a finite number in s"),
    (MINIMAL + "[imaging]\ntof_s = nan\n", "imaging.tof_s = nan"),
    (MINIMAL + "[imaging]\ntof_s = '2.2 ms'\n", "imaging.tof_s = '2.2 ms'"),
    (MINIMAL + "[imaging]\nexposure_separation_s = 50e-6\n", "exposures overlap"),
    (MINIMAL + "[imaging]\ncamera_exposure_s = 30e-6\n", "covers the probe"),
    (MINIMAL + "[imaging]\nreference_frames = 1\n", "imaging.reference_frames = 1: expected true or false"),
    (MINIMAL + "[microwave]\npulse_start_s = 2.1e-3\n", "overlaps the first exposure"),
    (MINIMAL + "[retry]\non_exhausted = 'ignore'\n", "retry.on_exhausted = 'ignore'"),
    (MINIMAL + "[retry]\nmax_attempts = 0\n", "retry.max_attempts = 0"),
    ("[run\nshots = 3\n", "not valid TOML.*line 1"),
    ("run = 3\n", "run = 3: expected a table"),
    (MINIMAL + "extra = 1\n", "unknown field.*extra"),
])
def test_invalid_plans_are_rejected_with_file_field_value_expected(text, match) -> None:
    with pytest.raises(PlanError, match=match) as info:
        parse_plan(text, "bad.toml", CAL)
    assert str(info.value).startswith("bad.toml")


def test_missing_calibration_is_named() -> None:
    with pytest.raises(PlanError, match="bad.toml: missing field microwave.frequency_hz: not in the "
                                        "plan and no calibration"):
        parse_plan(MINIMAL, "bad.toml")
    with pytest.raises(PlanError, match=r"missing field microwave.x.phase_deg"):
        parse_plan(MINIMAL + "[microwave]\nfrequency_hz = 6.8e9\npower_dbm = 0\n", "bad.toml")


def test_plan_file_errors(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="file not found"):
        load_plan(tmp_path / "nope.toml", CAL)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"name = '\xe9'\n")
    with pytest.raises(PlanError, match="latin1.toml: not UTF-8"):
        load_plan(bad, CAL)


_VALUES = st.one_of(st.integers(-10, 10**6), st.floats(allow_nan=True), st.booleans(),
                    st.text(max_size=5), st.lists(st.sampled_from("xyzq"), max_size=4))
_KEYS = {"run": ["shots", "cycles", "min_shot_period_s"],
         "state": ["kind", "atom_number", "atom_number_sd", "squeezing_dB", "seed"],
         "directions": ["order", "block", "sequence"],
         "imaging": ["tof_s", "probe_pulse_s", "exposure_separation_s", "dark_frame",
                     "camera_exposure_s", "camera_lead_s", "reference_delay_s"],
         "microwave": ["frequency_hz", "pulse_start_s"],
         "retry": ["max_attempts", "reconnect_delay_s", "on_exhausted"]}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if v == v and abs(v) != float("inf") else ("nan" if v != v else
                                                               ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(json.dumps(x) for x in v) + "]"
    return str(v)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(_KEYS)),
                       st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=3)
                                       | st.sampled_from(sum(_KEYS.values(), [])), _VALUES,
                                       max_size=4), max_size=6))
def test_fuzzed_plans_either_load_or_raise_plan_error(doc) -> None:
    text = "".join(f"[{sec}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in kv.items())
                   for sec, kv in doc.items())
    try:
        plan = parse_plan(text, "fuzz.toml", CAL)
    except PlanError as exc:
        assert str(exc).startswith("fuzz.toml")
    else:
        assert plan.n_shots >= 1 and len(plan.cycle) >= 1
