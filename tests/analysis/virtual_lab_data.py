"""Virtual-lab shots for the image-analysis tests: frames, directions and the truth counts.

A smaller frame than the virtual lab's default (160 x 64 px instead of 256 x 256, same pixel size,
cloud sizes, fall and probe per pixel) keeps the tests fast; the |1> cloud is imaged 115 px lower.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.imaging import ImagingCalibration
from analysis.regions import RegionCounter
from drivers.simulated.atoms import (SimulatedAtoms, SimulationConfig, SpinConfig,
                                     paper_measurement_pulses)
from drivers.simulated.cloud import CloudConfig
from drivers.simulated.imaging import ImagingConfig

FRAME_SHAPE = (160, 64)


def lab_config(state: str = "squeezed") -> SimulationConfig:
    return SimulationConfig(spin=SpinConfig(state=state),  # type: ignore[arg-type]
                            cloud=CloudConfig(centre_px=(32.0, 22.0)),
                            imaging=ImagingConfig(frame_shape=FRAME_SHAPE,
                                                  probe_centre_px=(32.0, 80.0)))


def lab_calibration(config: SimulationConfig) -> ImagingCalibration:
    """The virtual lab's true imaging constants as a calibration record (50 us probe pulses)."""
    im = config.imaging
    return ImagingCalibration(
        camera_pixel_size_m=im.pixel_size_um * 1e-6 * 4.0, magnification=4.0, alpha=im.alpha,
        isat_counts=im.isat_for(50e-6) * im.camera_gain, wavelength_m=im.wavelength_m,
        detectivity_1=im.detectivity[0], detectivity_2=im.detectivity[1],
        projection_noise_slope=getattr(im, "absolute_scale", 1.0), psf_sigma_x_px=im.psf_rms_px[0],
        psf_sigma_y_px=im.psf_rms_px[1], sigma_blur_px=1.4, detection_noise_1_atoms=6.0,
        detection_noise_2_atoms=6.0)


@dataclass
class LabShots:
    """Shots in order: directions (S,), frames (S, 5, H, W) uint16, truth N1, N2 and positions."""

    directions: np.ndarray
    frames: np.ndarray
    n1: np.ndarray
    n2: np.ndarray
    positions1: list[np.ndarray]   # (n, 2) as (x, y) in the virtual lab's pixel convention
    positions2: list[np.ndarray]


def lab_shots(state: str, shots_per_direction: int, seed: int) -> LabShots:
    """Interleaved x, y, z shots of the virtual lab (paper measurement pulses)."""
    sim = SimulatedAtoms(lab_config(state), seed=seed)
    dirs = np.array(list("xyz") * shots_per_direction)
    frames = np.empty((dirs.size, 5) + FRAME_SHAPE, dtype=np.uint16)
    n1, n2, p1, p2 = [], [], [], []
    for i, d in enumerate(dirs):
        shot = sim.shot(i, pulses=paper_measurement_pulses(str(d)))
        assert shot.frames is not None
        frames[i] = shot.frames
        n1.append(shot.truth.n1)
        n2.append(shot.truth.n2)
        p1.append(shot.truth.positions1)
        p2.append(shot.truth.positions2)
    return LabShots(dirs, frames, np.array(n1), np.array(n2), p1, p2)


def atom_free_frames(n: int, seed: int) -> np.ndarray:
    sim = SimulatedAtoms(lab_config(), seed=seed)
    return np.stack([sim.shot(i, atoms_loaded=False).frames for i in range(n)])  # type: ignore


def truth_counts(counter: RegionCounter, shots: LabShots) -> np.ndarray:
    """(4, S, G) true N1A, N2A, N1B, N2B: atoms whose position lies in each region.

    The virtual lab's pixel c spans x in [c, c + 1); analysis puts pixel centres at integers, so a
    position (x, y) there is (x - 1/2, y - 1/2) here.
    """
    s = len(shots.directions)
    out = np.zeros((4, s, counter.n_geometries))
    for state, positions, (ka, kb) in ((1, shots.positions1, (0, 2)),
                                       (2, shots.positions2, (1, 3))):
        idx = np.repeat(np.arange(s), [len(p) for p in positions])
        pos = np.concatenate(positions) - 0.5
        for g in range(counter.n_geometries):
            lab = counter.point_labels(g, state, pos[:, 0], pos[:, 1])
            out[ka, :, g] = np.bincount(idx[lab == 0], minlength=s)
            out[kb, :, g] = np.bincount(idx[lab == 1], minlength=s)
    return out
