"""The camera before and during a run, on the virtual camera: a camera without a hardware trigger or
too slow for the 1.5 ms pair is refused before the run with one line naming the feature or limit;
software triggering, where the lab allows it, really triggers; a frame-id gap fails the shot."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from drivers.simulated.virtual_camera import VirtualCamera
from sequences.camera_check import CameraRefused
from sequences.control import RunState
from sequences.publish import Overflow, ShotPublisher
from sequences.sequencer import Sequencer
from tests.sequences.minilab import H, W, MiniLab, config, plan
from tests.sequences.test_sequencer_faults import check_run, run


def lab_with(**camera: object) -> MiniLab:
    lab = MiniLab()
    lab.camera = VirtualCamera(sensor_width=W + 4, sensor_height=H + 2, serial_number="T1",
                               **camera)  # type: ignore[arg-type]
    return lab


def test_no_hardware_trigger_is_refused_before_the_run() -> None:
    with lab_with(trigger_lines=()) as lab:
        seq = Sequencer(plan(3), lab.instruments, config(), publisher=ShotPublisher())
        with pytest.raises(CameraRefused) as info:
            seq.prepare()
        assert str(info.value) == (
            "camera VirtualCamera T1: no hardware trigger (TriggerSelector FrameStart/FrameBurstStart "
            "with a Line source): a run needs the timing card's TTL to start each exposure; set "
            "[sequencer] allow_software_trigger = true for bench tests")
        sub = seq.publisher.subscribe("test", maxsize=100, overflow=Overflow.BLOCK)
        assert seq.run() is RunState.FAULTED and "no hardware trigger" in seq.control.error
        assert list(sub) == []                       # not one shot taken


def test_a_camera_too_slow_for_the_pair_is_refused_naming_the_limit() -> None:
    with lab_with(frame_overhead_s=2e-3) as lab:
        seq = Sequencer(plan(3), lab.instruments, config(), publisher=ShotPublisher())
        with pytest.raises(CameraRefused, match=r"^camera VirtualCamera T1: readout 0.016 ms \(8 rows x 2 us\) "
                                                r"\+ overhead 2e\+03 us \+ exposure 100 us, not overlapped: "
                                                r"frames at least 2.12 ms apart, the plan needs 1.5 ms$"):
            seq.prepare()


def test_software_triggering_where_allowed_really_triggers() -> None:
    frame = np.full((H + 2, W + 4), 1234, dtype=np.uint16)
    with lab_with(trigger_lines=(), frame_source=lambda: frame) as lab:
        cfg = dataclasses.replace(config(), allow_software_trigger=True)
        seq = Sequencer(plan(3), lab.instruments, cfg, publisher=ShotPublisher())
        sub = seq.publisher.subscribe("test", maxsize=100, overflow=Overflow.BLOCK)
        assert seq.prepare()["camera"]["settings"]["trigger"] == "software"
        assert seq.run() is RunState.COMPLETED, seq.control.error
        shots = list(sub)
        assert [s.status for s in shots] == ["ok"] * 3
        assert all(s.settings["camera.trigger"] == "software" for s in shots)
        assert all((s.frames == 1234).all() for s in shots)   # the frame source's, at each trigger
        assert lab.camera.stats.exposures_queued == 3 * 5
        assert lab.camera.stats.triggers_missed == 3 * 5          # the card's TTL edges go nowhere


def test_a_frame_id_gap_fails_the_shot_and_the_slot_is_retried() -> None:
    with lab_with() as lab:
        stray = np.zeros((H + 2, W + 4), dtype=np.uint16)

        def stray_and_lost(n: int) -> bool:
            if n == 2:
                lab.camera.expose(stray)           # a stray trigger edge: one frame too many ...
                lab.camera.drop_next_frames(1)     # ... and one of the shot's frames lost
            return True
        lab.before_render = stray_and_lost
        seq, shots = run(lab, plan(6))
        assert seq.control.state is RunState.COMPLETED
        failed = [s for s in shots if not s.is_ok]
        assert [f.reason for f in failed] == [
            "camera: frame ids: ProtocolError: frame id gap: id 3 follows 1 (1 frame(s) lost); "
            "ids [1, 3, 4, 5, 6]"]
        check_run(shots, 6)


def test_a_software_started_run_on_prawndo_1_3_0_is_refused() -> None:
    from drivers.simulated.prawndo_emulator import PrawnDOEmulator
    from sequences.camera_check import RunRefused

    lab = MiniLab()
    lab.card_emu = PrawnDOEmulator(time_scale=0.02, version="1.3.0")
    with lab:
        seq = Sequencer(plan(3), lab.instruments, config(), publisher=ShotPublisher())
        with pytest.raises(RunRefused, match=r"start_mode = 'software', but the timing card \(firmware "
                                             r"1.3.0\) waits for a hardware trigger after swr"):
            seq.prepare()


def test_trigger_width_exposure_where_the_camera_offers_it() -> None:
    cfg = dataclasses.replace(config(), camera_exposure_mode="trigger_width")
    with lab_with(trigger_width=True) as lab:
        seq = Sequencer(plan(3), lab.instruments, cfg, publisher=ShotPublisher())
        sub = seq.publisher.subscribe("test", maxsize=100, overflow=Overflow.BLOCK)
        assert seq.run() is RunState.COMPLETED, seq.control.error
        shots = list(sub)
        assert [s.status for s in shots] == ["ok"] * 3
        assert shots[0].settings["camera.exposure_mode"] == "trigger_width"
    with lab_with() as lab:
        seq = Sequencer(plan(3), lab.instruments, cfg, publisher=ShotPublisher())
        with pytest.raises(CameraRefused, match="exposure_mode = 'trigger_width' needs a hardware trigger "
                                                "and ExposureMode TriggerWidth"):
            seq.prepare()


def test_frames_whose_timestamps_do_not_match_the_program_fail_the_shot() -> None:
    with lab_with() as lab:
        frame = np.full((H + 2, W + 4), 1000, dtype=np.uint16)

        def wrongly_spaced(n: int) -> bool:
            if n == 2:                          # five frames, but 2 ms apart: not this program's
                lab.camera.deliver([frame] * 5, [0.0, 2e-3, 4e-3, 6e-3, 8e-3])
                return False
            return True
        lab.before_render = wrongly_spaced
        seq, shots = run(lab, plan(3))
        assert seq.control.state is RunState.COMPLETED
        assert [f.reason for f in shots if not f.is_ok] == [
            "camera: frame timestamps: ProtocolError: frame timestamps: frames 0 and 1 are 2 ms apart, "
            "the program exposes them 1.5 ms apart"]
        check_run(shots, 3)


def test_frame_spacing_tolerance() -> None:
    from sequences.camera_check import frame_spacing_mismatch
    starts = [0.0, 1.5e-3, 6.5e-3]
    assert frame_spacing_mismatch([10.0, 10.0015, 10.0065], starts) is None
    assert frame_spacing_mismatch([10.0, 10.00151, 10.0065], starts) is None        # 10 us off: ok
    assert frame_spacing_mismatch([10.0, 10.00155, 10.0065], starts) is not None    # 50 us off
    assert frame_spacing_mismatch([10.0, 10.0015], starts) is None                  # not all stamped
