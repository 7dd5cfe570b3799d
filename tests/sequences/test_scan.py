"""Scans and user steps in the plan: parsing, point order, seeds, and the one-line errors."""
from __future__ import annotations

import math

import pytest

from drivers.pulse_program import MEMORY_INSTRUCTIONS, edges_to_pulses
from sequences.plan import AxisPulse, MicrowaveCalibration, PlanError, parse_plan
from sequences.steps import StepError, check_programs, events_s, step_pulses

CAL = MicrowaveCalibration(6.834682611e9, -10.0, AxisPulse(90.0, 125e-6), AxisPulse(0.0, 125e-6))
CHANNELS = {"mw_gate": 0, "probe": 1, "camera": 2, "coil": 6, "shutter": 7}
BASE = """
[run]
cycles = 1
"""
TWO_AXES = BASE + """
[scan]
combine = "{combine}"
order = "{order}"
{seed}
repeats = {repeats}
[[scan.axes]]
field = "imaging.tof_s"
values = [2.2e-3, 2.6e-3]
[[scan.axes]]
field = "microwave.x.pulse_s"
linspace = {{ start = 40e-6, stop = 125e-6, num = 2 }}
"""


def scan_plan(combine: str = "product", order: str = "sequential", seed: int | None = None,
              repeats: int = 1):
    text = TWO_AXES.format(combine=combine, order=order, repeats=repeats,
                           seed="" if seed is None else f"seed = {seed}")
    return parse_plan(text, "scan.toml", CAL)


def test_product_and_zip_points_and_their_plans() -> None:
    p = scan_plan()
    assert p.scan is not None and p.scan.shape == (2, 2)
    assert [pt.indices for pt in p.scan.points] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert p.n_shots == 4 * 3 and p.shots_per_visit == 3
    assert [(s.point, s.direction) for s in p.slots()][:4] == [(0, "x"), (0, "y"), (0, "z"), (1, "x")]
    assert p.at(3).imaging.tof_s == 2.6e-3 and p.at(3).microwave.pulse("x").pulse_s == 125e-6
    assert p.at(2).microwave.pulse("x").pulse_s == pytest.approx(40e-6)
    assert p.at(2).microwave.pulse("y") == CAL.y                  # not scanned: calibration
    z = scan_plan("zip")
    assert z.scan is not None and [pt.values for pt in z.scan.points] == [(2.2e-3, 40e-6),
                                                                           (2.6e-3, 125e-6)]
    assert z.to_dict()["scan"]["shape"] == [2]


def test_orders_and_repeats() -> None:
    assert scan_plan(repeats=2).scan.visits == (0, 0, 1, 1, 2, 2, 3, 3)          # type: ignore[union-attr]
    assert scan_plan("product", "interleaved", repeats=2).scan.visits == (0, 1, 2, 3) * 2  # type: ignore[union-attr]


def test_a_shuffled_scan_is_reproducible_from_its_seed() -> None:
    a = scan_plan(order="shuffled", seed=11, repeats=3)
    b = scan_plan(order="shuffled", seed=11, repeats=3)
    c = scan_plan(order="shuffled", seed=12, repeats=3)
    slots_a = [(s.point, s.direction) for s in a.slots()]
    assert slots_a == [(s.point, s.direction) for s in b.slots()]
    assert a.scan is not None and c.scan is not None and a.scan.visits != c.scan.visits
    assert sorted(a.scan.visits) == sorted(v for v in range(4) for _ in range(3))   # each point 3 x
    assert a.scan.visits != tuple(sorted(a.scan.visits))


def test_logspace_integer_and_detuning_axes() -> None:
    p = parse_plan(BASE + """
[scan]
combine = "zip"
[[scan.axes]]
field = "microwave.detuning_hz"
logspace = { start = 10.0, stop = 1000.0, num = 3 }
[[scan.axes]]
field = "state.atom_number"
values = [100, 200, 300]
""", "s.toml", CAL)
    assert [pp.microwave.frequency_hz - CAL.frequency_hz for pp in p.point_plans] == pytest.approx(
        [10.0, 100.0, 1000.0])
    assert [pp.state.atom_number for pp in p.point_plans] == [100, 200, 300]


@pytest.mark.parametrize("scan, match", [
    ('[[scan.axes]]\nfield = "imaging.camera_exposure_s"\nvalues = [1e-4]',
     r"scan\.axes\[0\]\.field = 'imaging\.camera_exposure_s': expected a scannable field"),
    ('[[scan.axes]]\nfield = "imaging.tof_s"\nvalues = [2e-3, -1.0]',
     r"^scan point 1 \(imaging\.tof_s = -1\.0\): scan\.toml: imaging\.tof_s = -1\.0: expected a finite"),
    ('order = "shuffled"\n[[scan.axes]]\nfield = "imaging.tof_s"\nvalues = [2e-3]',
     r"scan\.seed: missing; expected an integer seed"),
    ('combine = "zip"\n[[scan.axes]]\nfield = "imaging.tof_s"\nvalues = [2e-3, 3e-3]\n'
     '[[scan.axes]]\nfield = "microwave.x.pulse_s"\nvalues = [1e-4]',
     r"scan\.axes\[1\] \(microwave\.x\.pulse_s\): 1 values; expected 2"),
    ('[[scan.axes]]\nfield = "state.atom_number"\nvalues = [100.5]',
     r"scan\.axes\[0\]\.values = \[100\.5\]: expected whole numbers"),
    ('[[scan.axes]]\nfield = "imaging.tof_s"\nvalues = [2e-3]\nlinspace = {start = 1, stop = 2, num = 2}',
     r"expected exactly one of values, linspace"),
])
def test_bad_scans_give_one_line_naming_the_field(scan: str, match: str) -> None:
    with pytest.raises(PlanError, match=match) as err:
        parse_plan(BASE + "[scan]\n" + scan, "scan.toml", CAL)
    assert "\n" not in str(err.value)


STEPS = BASE + """
[[steps]]
name = "coil_off"
channel = "coil"
at = "trap_off"
offset_s = 0.0
duration_s = 1e-3
[[steps]]
name = "shutter"
channel = "shutter"
at = "probe1"
offset_s = -200e-6
until = "end"
"""


def test_steps_are_timed_from_the_events_and_compiled_with_the_imaging() -> None:
    p = parse_plan(STEPS, "steps.toml", CAL)
    ev = events_s(p, "x")
    assert ev["probe1"] == pytest.approx(2.2e-3) and ev["probe2"] == pytest.approx(3.7e-3)
    pulses = step_pulses(p, "x")
    assert pulses["coil"] == [(0.0, 1e-3)]
    (start, dur), = pulses["shutter"]
    assert start == pytest.approx(2.0e-3) and start + dur == pytest.approx(ev["end"])
    programs = check_programs(p, CHANNELS, clock_hz=100e6, max_instructions=30_000,
                              idle_high=("shutter",))
    emitted = edges_to_pulses(programs[(-1, "x")].edges(), CHANNELS)
    assert emitted["coil"] == [pytest.approx((0.0, 1e-3))]
    # the shutter idles high: low from probe1 - 200 us to the end, high after
    assert programs[(-1, "x")].instructions[-1].word >> 7 & 1 == 1
    assert programs[(-1, "x")].instructions[0].word >> 7 & 1 == 1


@pytest.mark.parametrize("edit, match", [
    (("duration_s = 1e-3", "duration_s = 2e-8"),
     r"^steps\.toml: step 'coil_off': the x shot's timing-card program: instruction at 0 s would last 2 cycles .*50 ns between edges\)$"),
    (('at = "trap_off"\noffset_s = 0.0', 'at = "mw_start"\noffset_s = -2e-4'),
     r"^steps\.toml: step 'coil_off' \(coil, x shot\): starts 0\.0001 s before the trap switch-off; "
     r"expected a tof_marker output"),
    (('channel = "coil"', 'channel = "coils"'),
     r"step 'coil_off': channel 'coils' is not in the lab configuration's"),
])
def test_a_step_outside_the_cards_limits_is_refused_before_the_run(edit: tuple[str, str],
                                                                   match: str) -> None:
    p = parse_plan(STEPS.replace(*edit), "steps.toml", CAL)
    with pytest.raises(StepError, match=match) as err:
        check_programs(p, CHANNELS, clock_hz=100e6, max_instructions=30_000)
    assert "\n" not in str(err.value)


def test_steps_before_the_switch_off_start_the_program_earlier_and_tof_marker_marks_it() -> None:
    """A trap step from 200 ms before the release: the card's program starts then, everything of
    the imaging sequence is 200 ms later in it, and tof_marker rises at the switch-off."""
    channels = dict(CHANNELS, tof_marker=5)
    plain = check_programs(parse_plan(BASE, "plain.toml", CAL), channels, clock_hz=100e6,
                           max_instructions=30_000)
    p = parse_plan(BASE + """
[[steps]]
name = "trap"
channel = "coil"
at = "trap_off"
offset_s = -0.2
until = "trap_off"
""", "trap.toml", CAL)
    assert step_pulses(p, "x")["coil"] == [pytest.approx((-0.2, 0.2))]
    programs = check_programs(p, channels, clock_hz=100e6, max_instructions=30_000)
    for d in ("x", "y", "z"):
        before = edges_to_pulses(plain[(-1, d)].edges(), channels)
        after = edges_to_pulses(programs[(-1, d)].edges(), channels)
        assert after["coil"] == [pytest.approx((0.0, 0.2))]
        assert after["tof_marker"][0][0] == pytest.approx(0.2) == before["tof_marker"][0][0] + 0.2
        for ch in ("mw_gate", "probe", "camera", "tof_marker"):
            assert [(a + 0.2, b) for a, b in before[ch]] == [pytest.approx(x) for x in after[ch]]
        assert programs[(-1, d)].duration_s == pytest.approx(plain[(-1, d)].duration_s + 0.2)


def test_too_many_steps_for_the_cards_memory() -> None:
    n = MEMORY_INSTRUCTIONS["pico1"] // 2
    steps = "".join(f'[[steps]]\nname = "s{k}"\nchannel = "coil"\nat = "end"\noffset_s = {k * 2e-6}\n'
                    f'duration_s = 1e-6\n' for k in range(n))
    p = parse_plan(BASE + steps, "many.toml", CAL)
    with pytest.raises(StepError, match=r"^many\.toml: steps: the x shot's program: program needs "
                                        r"\d+ instructions .* the card holds 30000 \(15000 user steps\)"):
        check_programs(p, CHANNELS, clock_hz=100e6, max_instructions=30_000)


def test_a_scanned_step_duration_is_checked_per_point() -> None:
    p = parse_plan(STEPS + """
[scan]
[[scan.axes]]
field = "steps.coil_off.duration_s"
values = [1e-3, 3e-8]
""", "steps.toml", CAL)
    assert [pp.steps[0].duration_s for pp in p.point_plans] == [1e-3, 3e-8]
    with pytest.raises(StepError, match=r"^scan point 1 \(steps\.coil_off\.duration_s = 3e-08\): "
                                        r"steps\.toml: step 'coil_off'"):
        check_programs(p, CHANNELS, clock_hz=100e6, max_instructions=30_000)
    assert math.isfinite(p.at(0).steps[0].duration_s or math.nan)


def test_zip_groups_inside_an_outer_product() -> None:
    p = parse_plan(BASE + """
[scan]
[[scan.axes]]
field = "imaging.tof_s"
values = [2.2e-3, 2.4e-3, 2.6e-3]
group = "flight"
[[scan.axes]]
field = "microwave.x.pulse_s"
values = [40e-6, 125e-6]
[[scan.axes]]
field = "imaging.exposure_separation_s"
values = [1.5e-3, 1.6e-3, 1.7e-3]
group = "flight"
""", "g.toml", CAL)
    scan = p.scan
    assert scan is not None and scan.groups == ((0, 2), (1,)) and scan.shape == (3, 2)
    assert [pt.indices for pt in scan.points] == [(0, 0, 0), (0, 1, 0), (1, 0, 1), (1, 1, 1),
                                                  (2, 0, 2), (2, 1, 2)]
    from sequences.scan import point_indices
    d = p.to_dict()["scan"]
    assert [point_indices(d, k) for k in range(6)] == [pt.indices for pt in scan.points]
    assert p.at(5).imaging.exposure_separation_s == 1.7e-3 and p.at(5).imaging.tof_s == 2.6e-3
    with pytest.raises(PlanError, match=r"scan\.axes\[2\] \(imaging\.exposure_separation_s\): 2 "
                                        r"values; expected 3 like scan\.axes\[0\] \(group 'flight'\)"):
        parse_plan(BASE + """
[scan]
[[scan.axes]]
field = "imaging.tof_s"
values = [2.2e-3, 2.4e-3, 2.6e-3]
group = "flight"
[[scan.axes]]
field = "microwave.x.pulse_s"
values = [40e-6]
[[scan.axes]]
field = "imaging.exposure_separation_s"
values = [1.5e-3, 1.6e-3]
group = "flight"
""", "g.toml", CAL)
