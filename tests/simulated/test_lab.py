"""The virtual lab: real drivers + sequencer on the emulators, frames rendered by the simulated atoms
from what the instruments really did."""
from __future__ import annotations

import math
import os
import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from drivers.prawndo import PrawnDO
from drivers.simulated.atoms import count_atoms_plain
from drivers.simulated.lab import (PHYSICS_NICE, VirtualLab, VirtualLabConfig, VirtualLabConfigError,
                                   high_intervals, pulses_from_instruments)
from drivers.simulated.sma100b_emulator import MicrowaveState
from drivers.sma100b import SMA100B
from sequences.control import RunState
from sequences.instruments import Instruments, SequencerConfig
from sequences.plan import AxisPulse, MicrowaveCalibration, parse_plan
from sequences.publish import Overflow, ShotPublisher
from sequences.sequencer import Sequencer

# technical noise off (as atom_number_rms): these tests check the plumbing with shot-noise-limited
# thresholds for 50 shots per direction, set on the noiseless spin's random stream
SMALL = {"frame_shape": [224, 64], "cloud_centre_px": [32.0, 60.0], "atom_number_rms": 0.0,
         "dephasing_rms_rad": 0.0}
PLAN = """
[run]
shots = {shots}
[imaging]
reference_delay_s = 5e-3
dark_delay_s = 5e-3
frame_timeout_s = 2.0
"""


def calibration(cfg: VirtualLabConfig, *, x_phase: float = 90.0, x_len: float = 1.0,
                level: float | None = None) -> MicrowaveCalibration:
    t = cfg.pi2_pulse_s()
    return MicrowaveCalibration(cfg.resonance_hz, cfg.reference_level_dbm if level is None else level,
                                AxisPulse(x_phase, x_len * t), AxisPulse(0.0, t), record="test")


def run(lab: VirtualLab, shots: int, cal: MicrowaveCalibration, *, start_mode: str = "software"
        ) -> list:
    cfg = lab.config
    plan = parse_plan(PLAN.format(shots=shots), "test-plan.toml", cal)
    h, w = cfg.frame_shape
    mw, card = SMA100B(lab.microwave_address, timeout_s=1.0), PrawnDO(lab.card_address, timeout_s=1.0)
    pub = ShotPublisher()
    sub = pub.subscribe("test", maxsize=10000, overflow=Overflow.BLOCK)
    try:
        seq = Sequencer(plan, Instruments(mw, card, lab.camera),
                        SequencerConfig(channels=cfg.channels, camera_width=w, camera_height=h,
                                        start_mode=start_mode),  # type: ignore[arg-type]
                        publisher=pub)
        seq.prepare()
        assert seq.run() is RunState.COMPLETED
    finally:
        mw.close()
        card.close()
    return list(sub)


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[VirtualLab]:
    extra = getattr(request, "param", {})
    with VirtualLab(VirtualLabConfig.from_mapping({**SMALL, **extra}, "test"), seed=11) as lab:
        yield lab


def test_shots_through_the_instruments_render_the_truth(lab: VirtualLab) -> None:
    shots = run(lab, 6, calibration(lab.config))
    assert [s.direction for s in shots] == list("xyzxyz") and all(s.is_ok for s in shots)
    assert len(lab.truths) == 6 and lab.errors == []
    for shot, done in zip(shots, lab.truths):
        assert done.exposure_kinds == ("atoms2", "atoms1", "ref2", "ref1", "dark")
        if shot.direction == "z":
            assert done.pulses == ()
        else:
            (p,) = done.pulses
            assert p.area_rad == pytest.approx(math.pi / 2, rel=1e-6)
            assert p.phase_rad == pytest.approx(math.pi / 2 if shot.direction == "x" else 0.0)
        assert shot.frames.shape == (5, *lab.config.frame_shape)
        n1, n2 = count_atoms_plain(shot.frames, lab.config.simulation, done.truth.exposures)
        # count_atoms_plain applies the known calibration; detection noise ~6 atoms rms per picture
        assert n1 == pytest.approx(done.truth.n1, abs=25)
        assert n2 == pytest.approx(done.truth.n2, abs=25)
    # x measures a coherent-ish state along x: nearly every atom ends in one state
    x_truth = [d.truth for s, d in zip(shots, lab.truths) if s.direction == "x"]
    assert all(min(t.n1, t.n2) < 20 for t in x_truth)


def test_wrong_phase_and_length_change_what_the_atoms_measure(lab: VirtualLab) -> None:
    run(lab, 3, calibration(lab.config, x_phase=0.0, x_len=2.0))
    x = lab.truths[0]
    (p,) = x.pulses
    assert p.phase_rad == 0.0 and p.area_rad == pytest.approx(math.pi, rel=1e-6)
    # a pi pulse about x maps S_z -> -S_z: the squeezed S_z stays near 0, not the x polarisation
    assert abs(x.truth.n1 - x.truth.n2) < 60


@pytest.mark.parametrize("lab", [{"trigger_period_s": 0.005}], indirect=True)
def test_hardware_start_waits_for_the_experiment_trigger(lab: VirtualLab) -> None:
    shots = run(lab, 3, calibration(lab.config), start_mode="hardware")
    assert all(s.is_ok for s in shots)
    assert all(r.hardware_start for r in lab.card_emulator.records)


def _moments(lab: VirtualLab, shots: list, *, from_frames: bool) -> tuple[float, float, float]:
    """(Wineland xi_R^2, mean x reading, Var y reading) of (N1 - N2)/2, from the truth or counted
    back from the frames (count_atoms_plain, with the known detectivities)."""
    by: dict[str, list[float]] = {"x": [], "y": [], "z": []}
    n_tot = []
    for s, d in zip(shots, lab.truths):
        n1, n2 = d.truth.n1, d.truth.n2
        if from_frames:
            n1, n2 = count_atoms_plain(s.frames, lab.config.simulation, d.truth.exposures)
        by[s.direction].append((n1 - n2) / 2)
        n_tot.append(n1 + n2)
    xi2 = float(np.mean(n_tot) * np.var(by["z"], ddof=1) / np.mean(by["x"]) ** 2)
    return xi2, float(np.mean(by["x"])), float(np.var(by["y"], ddof=1))


@pytest.mark.parametrize("state, low, high", [("squeezed", 0.3, 0.75), ("coherent", 0.7, 1.5)])
def test_prepared_state_reaches_the_measurement(state: str, low: float, high: float) -> None:
    cfg = VirtualLabConfig.from_mapping({**SMALL, "state": state}, "test")
    with VirtualLab(cfg, seed=3) as lab:
        shots = run(lab, 150, calibration(cfg))
        n = np.mean([d.truth.n_atoms for d in lab.truths])
        for from_frames in (False, True):
            xi2, x_mean, y_var = _moments(lab, shots, from_frames=from_frames)
            assert low < xi2 < high
            # the plan's x pulse (phase +90 deg) reads -S_x: the polarisation comes out negative
            assert x_mean == pytest.approx(-n / 2, rel=0.1)
            # the squeezed state's anti-squeezed S_y; coherent: N/4 (+ detection noise from frames)
            assert (y_var > 0.5 * n) if state == "squeezed" else (y_var < 0.4 * n)


def _state(**kw: object) -> MicrowaveState:
    base = dict(frequency_hz=6.834682611e9, level_dbm=-10.0, phase_deg=90.0, pulse_source="EXT",
                pulse_polarity="NORM", pulse_modulation_enabled=True, output_enabled=True)
    base.update(kw)
    return MicrowaveState(**base)  # type: ignore[arg-type]


def test_pulses_follow_the_generator_state() -> None:
    cfg = VirtualLabConfig()
    t = cfg.pi2_pulse_s()
    edges = [(0.0, 0), (1e-4, 1), (1e-4 + t, 0), (2.2e-3, 2)]
    (p,) = pulses_from_instruments(cfg, edges, _state(), 2.2e-3)
    assert (p.area_rad, p.phase_rad, p.detuning_area_rad) == pytest.approx((math.pi / 2, math.pi / 2, 0))
    assert pulses_from_instruments(cfg, edges, _state(output_enabled=False), 2.2e-3) == ()
    (cw,) = pulses_from_instruments(cfg, edges, _state(pulse_modulation_enabled=False), 2.2e-3)
    assert cw.area_rad == pytest.approx(2 * math.pi * cfg.rabi_frequency_hz * 2.2e-3)
    inv = pulses_from_instruments(cfg, edges, _state(pulse_polarity="INV"), 2.2e-3)
    assert sum(p.area_rad for p in inv) == pytest.approx(2 * math.pi * cfg.rabi_frequency_hz * (2.2e-3 - t))
    (loud,) = pulses_from_instruments(cfg, edges, _state(level_dbm=-10.0 + 20 * math.log10(2)), 2.2e-3)
    assert loud.area_rad == pytest.approx(math.pi)
    (det,) = pulses_from_instruments(cfg, edges, _state(frequency_hz=cfg.resonance_hz + 1000.0), 2.2e-3)
    assert det.detuning_area_rad == pytest.approx(2 * math.pi * 1000.0 * t)
    # a gate still open at the first image is cut there
    (cut,) = pulses_from_instruments(cfg, [(0.0, 1)], _state(), 1e-4)
    assert cut.area_rad == pytest.approx(2 * math.pi * cfg.rabi_frequency_hz * 1e-4)
    with pytest.raises(ValueError, match="EXT"):
        pulses_from_instruments(cfg, edges, _state(pulse_source="INT"), 2.2e-3)


def test_high_intervals() -> None:
    edges = [(0.0, 0b01), (1.0, 0b11), (2.0, 0b10), (3.0, 0b00)]
    assert high_intervals(edges, 0) == [(0.0, 2.0)]
    assert high_intervals(edges, 1) == [(1.0, 3.0)]
    assert high_intervals([(0.0, 1)], 0, end_s=5.0) == [(0.0, 5.0)]


@pytest.mark.parametrize("data, match", [
    ({"state": "thermal"}, "state"),
    ({"frame_shape": [10]}, "frame_shape"),
    ({"rabi_frequency_hz": -1.0}, "rabi_frequency_hz"),
    ({"channels": {"probe": 1, "camera": 2}}, "mw_gate"),
    ({"channels": {"mw_gate": 0, "probe": 99, "camera": 2}}, "probe"),
    ({"imaging": {"pixel_size": 1.0}}, "pixel_size"),
    ({"atoms": 3}, "unknown"),
    ({"time_scale": "fast"}, "time_scale"),
])
def test_config_errors_name_the_field(data: dict, match: str) -> None:
    with pytest.raises(VirtualLabConfigError, match=match) as info:
        VirtualLabConfig.from_mapping(data, "lab.toml")
    assert "lab.toml" in str(info.value)


def test_config_from_mapping_sets_the_simulation() -> None:
    cfg = VirtualLabConfig.from_mapping({"state": "coherent", "atom_number": 400, **SMALL,
                                         "rabi_frequency_hz": 1000.0}, "lab.toml")
    assert cfg.simulation.spin.state == "coherent" and cfg.simulation.spin.atom_number_mean == 400
    assert cfg.frame_shape == (224, 64) and cfg.simulation.cloud.centre_px == (32.0, 60.0)
    assert cfg.pi2_pulse_s() == pytest.approx(250e-6)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_the_atoms_are_simulated_on_a_lower_priority_thread(lab: VirtualLab) -> None:
    """The simulation (the stand-in for the physical world) runs on its own thread at nice
    +PHYSICS_NICE, so that on a busy host it yields to the acquisition and the window."""
    run(lab, 3, calibration(lab.config))
    physics = [t for t in threading.enumerate() if t.name.startswith("virtual-lab-physics")]
    assert len(physics) == 1 and physics[0].native_id is not None
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert os.getpriority(os.PRIO_PROCESS, physics[0].native_id) == min(base + PHYSICS_NICE, 19)
    assert lab.errors == [] and len(lab.truths) >= 3
