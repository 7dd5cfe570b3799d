"""A 2-axis scan (time of flight x Rabi pulse length) on the virtual lab, end to end: the points
recorded in the run file's typed columns, the edges the emulated card really emitted and the
physics the simulated atoms underwent agree shot by shot."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from app.runfile import open_run
from app.session import RunSession
from drivers.pulse_program import edges_to_pulses
from drivers.simulated.cloud import cloud_geometry
from sequences.control import RunState
from sequences.plan import parse_plan
from tests.app.test_session import lab_config

RABI_HZ = 2000.0          # configs/virtual-lab.toml: rabi_frequency_hz at the reference level
PLAN = """
[run]
cycles = 1
[state]
kind = "coherent"
atom_number_sd = 0.0
[imaging]
reference_delay_s = 5e-3
dark_delay_s = 5e-3
frame_timeout_s = 2.0
[scan]
combine = "{combine}"
order = "shuffled"
seed = 5
repeats = {repeats}
[[scan.axes]]
field = "imaging.tof_s"
values = {tofs}
[[scan.axes]]
field = "microwave.x.pulse_s"
values = {pulses}
"""


@pytest.mark.parametrize("combine, tofs, pulses, repeats", [
    ("product", [2.2e-3, 2.5e-3], [40e-6, 125e-6], 2),
    ("zip", [2.2e-3, 2.35e-3, 2.5e-3], [40e-6, 80e-6, 125e-6], 1),
])
def test_recorded_points_card_edges_and_physics_agree(tmp_path: Path, combine: str, tofs: list[float],
                                                      pulses: list[float], repeats: int) -> None:
    cfg = lab_config(tmp_path)
    text = PLAN.format(combine=combine, tofs=tofs, pulses=pulses, repeats=repeats)
    plan = parse_plan(text, "scan.toml", cfg.microwave_calibration)
    assert plan.scan is not None
    with RunSession(cfg, plan, f"{combine}.h5", seed=3) as s:
        s.start()
        assert s.wait(120) is RunState.COMPLETED
        lab = s.lab
        records = lab.card_emulator.records
        truths = list(lab.truths)
    channels = cfg.sequencer.channels
    with open_run(s.path) as run:
        cols = run.columns()
        n = run.n_shots
        assert run.units("shots/columns/scan_imaging_tof_s") == "s"
        assert run.units("shots/columns/scan_microwave_x_pulse_s") == "s"
        directions = list(run.table()["direction"])
    assert n == plan.n_shots == len(plan.scan.points) * repeats * 3
    # the recorded points follow the seeded order: visit k holds shots 3k..3k+2
    assert list(cols["scan_point"]) == [p for p in plan.scan.visits for _ in range(3)]
    assert list(cols["scan_visit"]) == [k for k in range(len(plan.scan.visits)) for _ in range(3)]
    assert sorted(set(cols["scan_point"])) == list(range(len(plan.scan.points)))
    assert len(records) == len(truths) == n
    fractions: dict[float, list[float]] = {}
    for i in range(n):
        tof, pulse = float(cols["scan_imaging_tof_s"][i]), float(cols["scan_microwave_x_pulse_s"][i])
        point = plan.scan.points[int(cols["scan_point"][i])]
        assert (tof, pulse) == point.values
        if combine == "product":
            assert (int(cols["scan_imaging_tof_s_index"][i]),
                    int(cols["scan_microwave_x_pulse_s_index"][i])) == point.indices
        emitted = edges_to_pulses(records[i].edges, channels)
        # the card's first probe pulse starts at the recorded time of flight
        assert emitted["probe"][0][0] == pytest.approx(tof, abs=1e-8)
        gate = emitted["mw_gate"]
        if directions[i] == "x":
            assert len(gate) == 1 and gate[0][1] == pytest.approx(pulse, abs=1e-8)
            assert cols["pulse_mw_gate_s"][i] == pytest.approx(pulse)
        elif directions[i] == "z":
            assert gate == []
        truth = truths[i].truth
        # the atoms were imaged at the emitted probe time: the cloud of that time of flight
        assert truth.exposures.atoms2_time_s == pytest.approx(tof, abs=1e-8)
        expected = cloud_geometry(lab.atoms.config.cloud, tof)
        assert truth.geometry2.half_width_px == pytest.approx(expected.half_width_px, rel=1e-9)
        if directions[i] == "x":
            fractions.setdefault(pulse, []).append(truth.n2 / truth.n_atoms)
    # the cloud grows with the time of flight
    widths = {t: cloud_geometry(lab.atoms.config.cloud, t).half_width_px[1] for t in tofs}
    assert all(widths[a] < widths[b] for a, b in zip(sorted(tofs), sorted(tofs)[1:]))
    # the |2> fraction of the x shots follows the Rabi curve of the emitted pulse length: a
    # coherent state along x rotated by 2 pi f t about y has p2 = (1 + sin(2 pi f t)) / 2
    for pulse, values in fractions.items():
        p2 = (1 + math.sin(2 * math.pi * RABI_HZ * pulse)) / 2
        sd = math.sqrt(max(p2 * (1 - p2), 1e-3) / 530)
        assert abs(float(np.mean(values)) - p2) < 5 * sd + 0.01, (pulse, values, p2)
    assert len(fractions) == len(set(pulses))


def test_a_scan_of_the_virtual_labs_atom_number_prepares_each_point(tmp_path: Path) -> None:
    cfg = lab_config(tmp_path)
    text = PLAN.split("[scan]")[0] + """
[scan]
[[scan.axes]]
field = "state.atom_number"
values = [150, 400]
"""
    plan = parse_plan(text, "atoms.toml", cfg.microwave_calibration)
    with RunSession(cfg, plan, "atoms.h5", seed=3) as s:
        s.start()
        assert s.wait(120) is RunState.COMPLETED
        truths = list(s.lab.truths)
    with open_run(s.path) as run:
        recorded = list(run.columns()["scan_state_atom_number"])
        assert run.units("shots/columns/scan_state_atom_number") == "1"
    assert recorded == [150.0] * 3 + [400.0] * 3
    assert [t.truth.n_atoms for t in truths] == [150] * 3 + [400] * 3
    # repair rebuilds the scan columns from the shots' settings, with their attributes
    from app.runfile import repair
    fixed = tmp_path / "repaired.h5"
    repair(s.path, fixed)
    with open_run(fixed) as run:
        cols = run.columns()
        assert list(cols["scan_state_atom_number"]) == recorded
        assert list(cols["scan_point"]) == [0] * 3 + [1] * 3
        assert run.units("shots/columns/scan_state_atom_number") == "1"


def test_a_real_lab_refuses_a_scan_of_the_prepared_state(tmp_path: Path) -> None:
    from app.labconfig import parse_lab_config
    from app.preflight import InputError, check_virtual_lab
    from tests.app.test_session import CONFIG, _with_viky
    template = CONFIG.parent / "real-lab.template.toml"
    real = parse_lab_config(_with_viky(template.read_text()), str(template), base_dir=CONFIG.parent)
    plan = parse_plan(PLAN.split("[scan]")[0] + '[scan]\n[[scan.axes]]\nfield = "state.atom_number"\n'
                      'values = [150, 400]\n', "atoms.toml", real.microwave_calibration)
    with pytest.raises(InputError, match=r"^atoms\.toml: scan of state\.atom_number: only the virtual "
                                         r"lab prepares its atoms"):
        check_virtual_lab(real, plan)


def test_user_steps_on_the_labs_own_channels_are_emitted_by_the_card(tmp_path: Path) -> None:
    from app.labconfig import parse_lab_config
    from tests.app.test_session import CONFIG, SMALL_LAB
    text = CONFIG.read_text().replace('data_dir = "../../runs"', f'data_dir = "{tmp_path}"')
    text = text.replace("[virtual_lab]\n", SMALL_LAB.strip() + "\n", 1)
    text = text.replace("tof_marker = 5\n", 'tof_marker = 5\ncoil = 6\nshutter = { bit = 8, idle = "high" }\n')
    cfg = parse_lab_config(text, "steps-lab.toml", base_dir=CONFIG.parent)
    assert cfg.sequencer.idle_high == ("shutter",)
    plan = parse_plan(PLAN.split("[scan]")[0] + """
[[steps]]
name = "coil_off"
channel = "coil"
at = "trap_off"
duration_s = 500e-6
[[steps]]
name = "shutter_open"
channel = "shutter"
at = "probe1"
offset_s = -300e-6
until = "probe2"
until_offset_s = 100e-6
[scan]
[[scan.axes]]
field = "steps.coil_off.duration_s"
values = [500e-6, 1.5e-3]
""", "steps.toml", cfg.microwave_calibration)
    with RunSession(cfg, plan, "steps.h5", seed=3) as s:
        s.start()
        assert s.wait(120) is RunState.COMPLETED
        records = s.lab.card_emulator.records
        # after the run the card holds the idle word: the shutter (active low) high, all else low
        assert s.lab.card_emulator.outputs == 1 << cfg.sequencer.channels["shutter"]
    assert len(records) == 6
    ch = cfg.sequencer.channels
    for k, rec in enumerate(records):
        emitted = edges_to_pulses(rec.edges, ch)
        assert emitted["coil"] == [pytest.approx((0.0, [500e-6, 1.5e-3][k // 3]), abs=1e-8)]
        # active low: the card holds the shutter high except from probe1 - 300 us to probe2 + 100 us
        assert rec.edges[0][1] >> ch["shutter"] & 1 == 1 and rec.edges[-1][1] >> ch["shutter"] & 1 == 1
        low = [(t, w) for t, w in rec.edges if not w >> ch["shutter"] & 1]
        assert low[0][0] == pytest.approx(2.2e-3 - 300e-6, abs=1e-8)
        back_high = [t for t, w in rec.edges if t > low[0][0] and w >> ch["shutter"] & 1][0]
        assert back_high == pytest.approx(2.2e-3 + 1.5e-3 + 100e-6, abs=1e-8)


def test_a_step_before_the_switch_off_leaves_the_atoms_physics_unchanged(tmp_path: Path) -> None:
    """A trap light from 30 ms before the release: the card's program starts then and tof_marker
    rises at the switch-off; the virtual lab takes the release from it, so the atoms undergo and
    the camera records exactly what the same seed gives without the step."""
    from app.labconfig import parse_lab_config
    from tests.app.test_session import CONFIG, SMALL_LAB
    text = CONFIG.read_text().replace('data_dir = "../../runs"', f'data_dir = "{tmp_path}"')
    text = text.replace("[virtual_lab]\n", SMALL_LAB.strip() + "\n", 1)
    cfg = parse_lab_config(text.replace("tof_marker = 5\n", "tof_marker = 5\ntrap = 6\n"),
                           "trap-lab.toml", base_dir=CONFIG.parent)
    base = PLAN.split("[scan]")[0]
    runs = {}
    for name, steps in (("plain", ""), ("trap", '[[steps]]\nname = "dipole_trap"\nchannel = "trap"\n'
                                                'at = "trap_off"\noffset_s = -30e-3\nuntil = "trap_off"\n')):
        plan = parse_plan(base + steps, f"{name}.toml", cfg.microwave_calibration)
        with RunSession(cfg, plan, f"{name}.h5", seed=8) as s:
            s.start()
            assert s.wait(120) is RunState.COMPLETED
            runs[name] = (s.path, list(s.lab.card_emulator.records), list(s.lab.truths))
    ch = cfg.sequencer.channels
    (plain_path, plain_rec, plain_truth), (trap_path, trap_rec, trap_truth) = runs["plain"], runs["trap"]
    assert len(trap_rec) == len(plain_rec) == 3
    for a, b in zip(plain_rec, trap_rec):
        pa, pb = edges_to_pulses(a.edges, ch), edges_to_pulses(b.edges, ch)
        assert pb["trap"] == [pytest.approx((0.0, 30e-3), abs=1e-8)]
        assert pb["tof_marker"][0][0] == pytest.approx(30e-3, abs=1e-8)
        for name in ("mw_gate", "probe", "camera"):
            assert [(t + 30e-3, d) for t, d in pa[name]] == [pytest.approx(x, abs=1e-8) for x in pb[name]]
    for a, b in zip(plain_truth, trap_truth):
        # equal up to the float rounding of t + 30 ms - 30 ms (the card's clock grid is the same)
        assert dataclasses.astuple(a.truth.exposures) == pytest.approx(dataclasses.astuple(b.truth.exposures),
                                                                      abs=1e-15)
        assert [dataclasses.astuple(p) for p in a.pulses] == \
            [pytest.approx(dataclasses.astuple(p), rel=1e-9) for p in b.pulses]
        assert (a.truth.n1, a.truth.n2) == (b.truth.n1, b.truth.n2)
    with open_run(plain_path) as pr, open_run(trap_path) as tr:
        for i in range(3):
            assert np.array_equal(pr.frames(i), tr.frames(i))
            assert tr.shot(i).settings["card.trap_off_s"] == pytest.approx(30e-3)
            assert pr.shot(i).settings["card.trap_off_s"] == 0.0
