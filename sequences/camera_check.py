"""The camera before and during a run: trigger kind, the 1.5 ms frame pair, frame-id continuity.

- ``choose_trigger``: a run needs the camera's hardware trigger (the timing card's TTL); a camera
  without one is refused unless the lab configuration sets ``allow_software_trigger`` (bench tests),
  and then the sequencer sends a software trigger at each exposure time of the shot.
- ``check_timing``: the shortest interval between two exposures of the plan (the atoms pair,
  ``exposure_separation_s``, 1.5 ms by default) must be at least the camera's own limit at the
  configured ROI, exposure and pixel format (``Camera.timing()``); else the plan is refused, naming
  the limit. A camera that states no limit at all is refused too: nothing shows it can keep up.
- ``frame_id_gap``: within a shot the device's frame ids must follow each other (and start at the
  device's first id after ``start()`` where it restarts its count); a gap means a frame was lost
  and another took its place, so the shot fails.
- ``frame_spacing_mismatch``: where every frame carries a device timestamp (chunk Timestamp, GenTL
  buffer timestamp, the virtual lab's edge times), consecutive frames must be as far apart as the
  program's exposures (hardware trigger only; software triggers are timed by the host).
"""
from __future__ import annotations

from typing import Literal

from drivers.camera_base import CameraFeatures, CameraTiming
from drivers.errors import DriverError
from sequences.plan import ImagingTimings


class RunRefused(DriverError, ValueError):
    """An instrument cannot serve this run as configured (found before the first shot); the message
    names the feature or the limit. A DriverError, so callers that report instrument problems in one
    line (``steerlab run``) do so; the sequencer ends the run FAULTED instead of retrying."""


class CameraRefused(RunRefused):
    """The camera cannot serve this run; the message names the missing feature or the limit."""


def choose_trigger(features: CameraFeatures, *, allow_software_trigger: bool, camera: str,
                   exposure_mode: str = "timed") -> Literal["hardware", "software"]:
    """'hardware' if the camera has a hardware trigger; 'software' only where allowed; else refuse.
    ``exposure_mode = "trigger_width"`` needs the hardware trigger and ExposureMode TriggerWidth."""
    if exposure_mode == "trigger_width":
        if not (features.hardware_trigger and features.trigger_width):
            raise CameraRefused(f"camera {camera}: exposure_mode = 'trigger_width' needs a hardware "
                                "trigger and ExposureMode TriggerWidth, which this camera does not offer")
        return "hardware"
    if features.hardware_trigger:
        return "hardware"
    if allow_software_trigger and features.software_trigger:
        return "software"
    if allow_software_trigger:
        raise CameraRefused(f"camera {camera}: no hardware trigger and no software trigger "
                            "(TriggerSoftware): frames could not be matched to shots")
    raise CameraRefused(f"camera {camera}: no hardware trigger (TriggerSelector FrameStart/"
                        "FrameBurstStart with a Line source): a run needs the timing card's TTL to "
                        "start each exposure; set [sequencer] allow_software_trigger = true for bench tests")


def min_exposure_interval_s(imaging: ImagingTimings) -> float:
    """The shortest time (s) between the starts of two consecutive exposures of a shot."""
    starts = sorted(imaging.exposure_starts_s().values())
    return min(b - a for a, b in zip(starts, starts[1:]))


def check_timing(timing: CameraTiming, imaging: ImagingTimings, *, camera: str) -> None:
    """Refuse (CameraRefused) a plan whose exposures are closer than the camera can take them."""
    needed = min_exposure_interval_s(imaging)
    if timing.min_frame_interval_s is None:
        raise CameraRefused(f"camera {camera}: states no frame-rate maximum, readout time or burst "
                            f"feature ({timing.limit}): cannot show it takes two frames "
                            f"{needed * 1e3:.3g} ms apart")
    if timing.min_frame_interval_s > needed * (1 + 1e-9):
        raise CameraRefused(f"camera {camera}: {timing.limit}: frames at least "
                            f"{timing.min_frame_interval_s * 1e3:.3g} ms apart, the plan needs "
                            f"{needed * 1e3:.3g} ms")


TIMESTAMP_ABS_TOL_S = 20e-6
TIMESTAMP_REL_TOL = 0.005


def frame_spacing_mismatch(stamps: list[float], starts_s: list[float]) -> str | None:
    """A sentence naming the first pair of frames whose device timestamps are not as far apart as
    the program's exposure starts ``starts_s`` (s, in frame order), within 20 us or 0.5 %; None if
    they all agree, or if not every frame carries a timestamp."""
    if len(stamps) != len(starts_s) or len(stamps) < 2:
        return None
    for k in range(len(stamps) - 1):
        got, want = stamps[k + 1] - stamps[k], starts_s[k + 1] - starts_s[k]
        if abs(got - want) > max(TIMESTAMP_ABS_TOL_S, TIMESTAMP_REL_TOL * want):
            return (f"frame timestamps: frames {k} and {k + 1} are {got * 1e3:.4g} ms apart, the "
                    f"program exposes them {want * 1e3:.4g} ms apart")
    return None


def frame_id_gap(ids: list[int], *, expected: int, first_id: int | None) -> str | None:
    """A sentence naming the first gap in a shot's frame ids, or None if they follow each other.

    ``expected``: the number of frames of the shot; ``first_id``: the id the first frame must have
    (None: any). No ids at all (the camera does not number frames) is not a gap.
    """
    if not ids:
        return None
    if len(ids) != expected:
        return f"{len(ids)} frame ids for {expected} frames: {ids}"
    if first_id is not None and ids[0] != first_id:
        return (f"frame id gap: the first frame after start has id {ids[0]}, expected {first_id} "
                f"({ids[0] - first_id} frame(s) lost)")
    for a, b in zip(ids, ids[1:]):
        if b != a + 1:
            return f"frame id gap: id {b} follows {a} ({b - a - 1} frame(s) lost); ids {ids}"
    return None
