"""The virtual lab through the real drivers and sequencer: what the operator does to the instruments
(RF off, wrong gate length) reaches the atoms; faults injected in the emulators reach the sequencer as
driver errors and the run recovers; stop() leaves no thread behind."""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from drivers.prawndo import PrawnDO
from drivers.pulse_program import compile_program
from drivers.simulated.atoms import count_atoms_plain
from drivers.simulated.lab import VirtualLab, VirtualLabConfig
from drivers.simulated.lab_pulses import pulses_from_timeline, state_in_force
from drivers.simulated.sma100b_emulator import MicrowaveState
from drivers.sma100b import SMA100B
from sequences.control import RunState
from sequences.instruments import Instruments, SequencerConfig
from sequences.plan import parse_plan
from sequences.publish import Overflow, ShotPublisher
from sequences.sequencer import Sequencer
from tests.simulated.test_lab import SMALL, calibration

RETRY_PLAN = """
[run]
shots = {shots}
[imaging]
reference_delay_s = 5e-3
dark_delay_s = 5e-3
frame_timeout_s = 0.5
[retry]
max_attempts = 3
reconnect_attempts = 2
reconnect_delay_s = 0.05
on_exhausted = "abort"
"""


@pytest.fixture
def lab() -> Iterator[VirtualLab]:
    with VirtualLab(VirtualLabConfig.from_mapping(SMALL, "test"), seed=5) as lab:
        yield lab


def run(lab: VirtualLab, shots: int, *, x_len: float = 1.0,
        before_run: Callable[[SMA100B], None] | None = None) -> tuple[RunState, list]:
    """Run ``shots`` through SMA100B/PrawnDO drivers and the sequencer; (final state, records)."""
    cfg = lab.config
    plan = parse_plan(RETRY_PLAN.format(shots=shots), "retry-plan.toml", calibration(cfg, x_len=x_len))
    h, w = cfg.frame_shape
    mw, card = SMA100B(lab.microwave_address, timeout_s=1.0), PrawnDO(lab.card_address, timeout_s=1.0)
    pub = ShotPublisher()
    sub = pub.subscribe("test", maxsize=10000, overflow=Overflow.BLOCK)
    try:
        seq = Sequencer(plan, Instruments(mw, card, lab.camera),
                        SequencerConfig(channels=cfg.channels, camera_width=w, camera_height=h),
                        publisher=pub)
        seq.prepare()
        if before_run is not None:
            before_run(mw)
        final = seq.run()
    finally:
        mw.close()
        card.close()
    return final, list(sub)


def x_contrast(lab: VirtualLab, shots: list) -> np.ndarray:
    """(N1 - N2) / N of the atoms' truth for every x shot."""
    ok = [s for s in shots if s.is_ok]
    assert len(ok) == len(lab.truths)
    return np.array([(d.truth.n1 - d.truth.n2) / d.truth.n_atoms
                     for s, d in zip(ok, lab.truths) if s.direction == "x"])


def test_rf_switched_off_reaches_the_atoms_and_fails_that_shot(lab: VirtualLab) -> None:
    def off(mw: SMA100B) -> None:
        mw.output_enabled = False

    final, shots = run(lab, 6, before_run=off)
    assert final is RunState.COMPLETED
    first = lab.truths[0]                     # the atoms saw no pulse in the first shot ...
    assert first.pulses == () and not first.microwave.output_enabled
    failed = [s for s in shots if not s.is_ok]   # ... which is stored failed, naming the setting
    assert len(failed) == 1 and failed[0].index == 0
    assert "mw.output_enabled asked True, read False" in failed[0].reason
    assert failed[0].settings["mw.output_enabled"] is False
    assert all(t.microwave.output_enabled for t in list(lab.truths)[1:])   # re-applied
    assert sum(s.is_ok for s in shots) == 6


def test_the_virtual_cameras_frames_carry_the_card_edge_times(lab: VirtualLab) -> None:
    final, shots = run(lab, 3)
    assert final is RunState.COMPLETED and all(s.is_ok for s in shots)
    stamps = np.array(lab.camera.frame_timestamps())      # the last shot's frames
    assert len(stamps) == 5
    assert np.diff(stamps)[0] == pytest.approx(1.5e-3, abs=1e-9)    # the atoms pair, as programmed


def test_half_gate_length_gives_a_quarter_turn(lab: VirtualLab) -> None:
    final, shots = run(lab, 6, x_len=0.5)
    assert final is RunState.COMPLETED
    x = [d for s, d in zip(shots, lab.truths) if s.direction == "x"]
    assert all(d.pulses[0].area_rad == pytest.approx(math.pi / 4, rel=1e-6) for d in x)
    # a pi/4 turn about y: N1 - N2 = -N sin(pi/4) (a full pi/2 gives -N)
    assert np.mean(x_contrast(lab, shots)) == pytest.approx(-math.sin(math.pi / 4), abs=0.08)


def _inject_after(lab: VirtualLab, n: int, fault: Callable[[], None]) -> None:
    """Apply ``fault`` once, right after the lab has rendered its ``n``-th program run."""
    def hook(_edges: object) -> None:
        if lab.sequences_run == n:
            fault()
    lab.card_emulator.on_sequence(hook)


@pytest.mark.parametrize("fault, instrument, text", [
    ("error reply", "microwave", "Settings conflict"),
    ("card dropped", "timing_card", ""),
    ("frames lost", "camera", "frames arrived"),
])
def test_emulator_faults_reach_the_sequencer_as_driver_errors(lab: VirtualLab, fault: str,
                                                               instrument: str, text: str) -> None:
    inject = {"error reply": lambda: lab.microwave_emulator.push_error(-221, "Settings conflict"),
              "card dropped": lab.card_emulator.drop_connections,
              "frames lost": lambda: lab.camera.drop_next_frames(2)}[fault]
    _inject_after(lab, 2, inject)
    final, shots = run(lab, 6)
    assert final is RunState.COMPLETED
    failed = [s for s in shots if not s.is_ok]
    assert len(failed) == 1 and failed[0].reason.startswith(f"{instrument}:") and text in failed[0].reason
    ok = [s for s in shots if s.is_ok]
    assert [s.direction for s in ok] == list("xyzxyz")
    # a failed attempt may have run its program; the frames after the retry are still their own
    assert len(lab.truths) == lab.sequences_run >= len(ok)
    last = lab.truths[-1].truth
    n1, n2 = count_atoms_plain(ok[-1].frames, lab.config.simulation, last.exposures)
    assert (n1, n2) == pytest.approx((last.n1, last.n2), abs=25)


def test_program_without_armed_camera_counts_missed_triggers(lab: VirtualLab) -> None:
    final, _ = run(lab, 1)
    assert final is RunState.COMPLETED and lab.camera.stats.triggers_missed == 0
    card = PrawnDO(lab.card_address, timeout_s=1.0)
    try:                  # the card runs its last program again, the camera is disarmed
        card.connect()
        card.start()
        card.wait_until_stopped(2.0)
    finally:
        card.close()
    assert lab.sequences_run == 2 and lab.truths[-1].exposure_kinds[0] == "atoms2"
    assert lab.camera.stats.triggers_missed == 5


def test_stop_joins_every_thread() -> None:
    before = set(threading.enumerate())
    lab = VirtualLab(VirtualLabConfig.from_mapping({**SMALL, "trigger_period_s": 0.01}, "test"), seed=1)
    lab.start()
    final, shots = run(lab, 3)
    assert final is RunState.COMPLETED and lab.render_seconds >= lab.simulation_time_s > 0
    assert len(set(threading.enumerate()) - before) > 0
    lab.stop()
    lab.stop()                  # idempotent
    assert set(threading.enumerate()) - before == set()


def test_a_setting_changed_during_the_gate_splits_the_pulse() -> None:
    """In real time (time_scale 1) the phase the generator held at each moment of the gate counts."""
    cfg = VirtualLabConfig.from_mapping({**SMALL, "time_scale": 1.0}, "test")
    program = compile_program({"mw_gate": [(1e-3, 0.3)], "probe": [(0.31, 50e-6)],
                               "camera": [(0.31, 100e-6)]}, cfg.channels)
    with VirtualLab(cfg, seed=2) as lab:
        mw, card = SMA100B(lab.microwave_address, timeout_s=1.0), PrawnDO(lab.card_address, timeout_s=1.0)
        try:
            mw.connect()
            mw.frequency_hz, mw.level_dbm = cfg.resonance_hz, cfg.reference_level_dbm
            mw.pulse_source, mw.pulse_polarity = "EXT", "NORM"
            mw.pulse_modulation_enabled = mw.output_enabled = True
            mw.phase_deg = 90.0
            card.connect()
            card.program(program.instructions)
            card.start()
            time.sleep(0.15)
            mw.phase_deg = 0.0
            card.wait_until_stopped(3.0)
        finally:
            mw.close()
            card.close()
        (done,) = lab.truths
    first, second = done.pulses
    assert (first.phase_rad, second.phase_rad) == (pytest.approx(math.pi / 2), 0.0)
    omega = 2 * math.pi * cfg.rabi_frequency_hz
    assert first.area_rad + second.area_rad == pytest.approx(omega * 0.3, rel=1e-6)
    # the change came ~0.15 s after the start (scheduling on a busy machine: generous bounds)
    assert 0.08 < first.area_rad / omega < 0.25
    assert done.microwave.phase_deg == 0.0


def _mw(phase: float, output: bool = True) -> MicrowaveState:
    return MicrowaveState(6.834682611e9, -10.0, phase, "EXT", "NORM", True, output)


def test_pulses_follow_the_timeline_of_settings() -> None:
    cfg = VirtualLabConfig()
    gate = [(0.0, 0), (1e-3, 1), (3e-3, 0)]
    kw = dict(gate_bit=0, rabi_hz_at=cfg.rabi_frequency_at, resonance_hz=cfg.resonance_hz)
    omega = 2 * math.pi * cfg.rabi_frequency_hz
    # phase changes at 2 ms: two pulses; RF off from 2.5 ms: the second is cut short
    timeline = [(0.0, _mw(90.0)), (2e-3, _mw(0.0)), (2.5e-3, _mw(0.0, output=False))]
    a, b = pulses_from_timeline(gate, timeline, 5e-3, **kw)  # type: ignore[arg-type]
    assert (a.area_rad, a.phase_rad) == pytest.approx((omega * 1e-3, math.pi / 2))
    assert (b.area_rad, b.phase_rad) == pytest.approx((omega * 0.5e-3, 0.0))
    # a change that repeats the same carrier does not split the pulse
    (c,) = pulses_from_timeline(gate, [(0.0, _mw(90.0)), (2e-3, _mw(90.0))], 5e-3, **kw)  # type: ignore[arg-type]
    assert c.area_rad == pytest.approx(omega * 2e-3)
    assert state_in_force(timeline, 2.2e-3).phase_deg == 0.0 and state_in_force(timeline, -1).phase_deg == 90.0


def test_timeline_maps_monotonic_time_onto_the_program(lab: VirtualLab) -> None:
    tl = lab.microwave_timeline
    t0 = time.monotonic()
    lab.microwave_emulator.device.execute(":SOUR:PHAS 45")
    end_r = time.monotonic()
    # program of 1 s at time_scale 1 that ended at end_r: the change lies ~1 s - (end_r - t0) in
    timeline = tl.program_timeline(end_r, 1.0, 1.0)
    assert timeline[0][1].phase_deg == 0.0 and timeline[-1][1].phase_deg == 45.0
    assert timeline[-1][0] == pytest.approx(1.0 - (end_r - t0), abs=0.05)
    # time_scale 0: the program took no time, the state at its end held throughout
    assert [s.phase_deg for _, s in tl.program_timeline(end_r, 1.0, 0.0)] == [45.0]
    assert [s.phase_deg for _, s in tl.program_timeline(t0 - 1e-6, 1.0, 0.0)] == [0.0]
