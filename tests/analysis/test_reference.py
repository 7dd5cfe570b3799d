"""Optimal reference images: exact least squares, rolling basis, and lower detection noise."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.imaging import ImagingCalibration, atoms_from_intensities
from analysis.reference import ReferenceBasis, ReferenceBasisError, exclusion_fit_mask

CAL = ImagingCalibration.paper_defaults(isat_counts=2500.0)
H, W = 64, 80
BOX = (30, 49, 22, 41)  # x0, x1, y0, y1: where atoms would be
FIT = exclusion_fit_mask((H, W), [BOX])


def probe_mean(phases: np.ndarray, fringe_amp: float) -> np.ndarray:
    """Noise-free probe (photoelectrons): envelope x (1 + two fringe patterns of 37 and 53 px)."""
    y, x = np.mgrid[:H, :W].astype(float)
    env = 2000.0 * np.exp(-((x - 40) ** 2 + (y - 32) ** 2) / (2 * 70.0**2))
    mod = 1 + fringe_amp * (np.cos(2 * np.pi * (0.9 * x + 0.4 * y) / 37.0 + phases[0])
                            + 0.7 * np.cos(2 * np.pi * (-0.3 * x + 1.0 * y) / 53.0 + phases[1]))
    return env * mod


def atom_free_shots(seed: int, n: int, fringe_amp: float, jitter: float, od=None):
    """(atoms exposure, own reference, noise-free atoms exposure, its noise-free probe) per shot.

    Fringe phases drift from shot to shot and jitter by ``jitter`` rad between an atom exposure
    and its reference; ``od`` (sigma_0 n) absorbs exp(-od/alpha) of the atoms exposure."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = rng.uniform(0, 2 * np.pi, 2)
        i_in = probe_mean(base + jitter * rng.standard_normal(2), fringe_amp)
        i_out = i_in if od is None else i_in * np.exp(-od / CAL.alpha)
        ref = probe_mean(base + jitter * rng.standard_normal(2), fringe_amp)
        out.append((rng.poisson(i_out).astype(float), rng.poisson(ref).astype(float), i_out, i_in))
    return out


def box_atoms(i_out: np.ndarray, i_in: np.ndarray) -> float:
    x0, x1, y0, y1 = BOX
    img = atoms_from_intensities(i_out, i_in, CAL, 2).atoms
    return float(img[y0:y1 + 1, x0:x1 + 1].sum())


def noise_plain_vs_optimal(shots, k: int) -> tuple[float, float]:
    """rms atom number in the atoms box with the own reference and with the optimal reference."""
    basis = ReferenceBasis(k, FIT)
    plain, optimal = [], []
    for i, (a, r, *_) in enumerate(shots):
        basis.add(r)
        if i < k:             # fill the basis before measuring
            continue
        plain.append(box_atoms(a, r))
        optimal.append(box_atoms(a, basis.reference(a)))
    return float(np.std(plain, ddof=1)), float(np.std(optimal, ddof=1))


def test_frame_in_the_span_of_the_basis_is_reproduced_exactly():
    rng = np.random.default_rng(0)
    refs = [rng.uniform(500, 1500, (H, W)) for _ in range(5)]
    basis = ReferenceBasis(5, FIT)
    for r in refs:
        basis.add(r)
    coeffs = np.array([0.3, -0.1, 0.5, 0.25, 0.05])
    target = sum(c * r for c, r in zip(coeffs, refs))
    np.testing.assert_allclose(basis.coefficients(target), coeffs, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(basis.reference(target), target, rtol=1e-9)
    assert basis.residual_rms(target) < 1e-6


def test_fit_uses_only_pixels_outside_the_atoms():
    rng = np.random.default_rng(1)
    ref = rng.uniform(900, 1100, (H, W))
    basis = ReferenceBasis(1, FIT)
    basis.add(ref)
    atoms = 0.8 * ref
    x0, x1, y0, y1 = BOX
    atoms[y0:y1 + 1, x0:x1 + 1] *= 0.5      # absorption inside the box must not bias the fit
    assert basis.coefficients(atoms)[0] == pytest.approx(0.8, rel=1e-12)


def test_rolling_basis_keeps_the_last_k_and_an_exact_gram_matrix():
    rng = np.random.default_rng(2)
    refs = [rng.uniform(0, 1000, (H, W)) for _ in range(7)]
    basis = ReferenceBasis(3, FIT)
    for r in refs:
        basis.add(r)
    assert len(basis) == 3
    # the last three span any of their combinations; the fit equals a from-scratch least squares
    target = rng.uniform(0, 1000, (H, W))
    last = np.stack([r[FIT] for r in refs[-3:]], axis=1)
    c_ref, *_ = np.linalg.lstsq(last, target[FIT], rcond=None)
    c = basis.coefficients(target)
    order = [(7 - 3 + i) % 3 for i in range(3)]   # slot of each of the last 3 frames
    by_frame = np.empty(3)
    for frame, slot in enumerate(order):
        by_frame[frame] = c[slot]
    np.testing.assert_allclose(by_frame, c_ref, rtol=1e-7)


def test_optimal_reference_lowers_detection_noise_with_fringes():
    shots = atom_free_shots(3, 150, fringe_amp=0.05, jitter=0.5)
    plain, optimal = noise_plain_vs_optimal(shots, k=20)
    assert optimal < 0.5 * plain, (plain, optimal)


def test_optimal_reference_still_helps_without_fringes():
    # no fringes: only the reference's photon noise is averaged down (ideal: 1/sqrt(2) -> ~0.72)
    shots = atom_free_shots(4, 220, fringe_amp=0.0, jitter=0.0)
    plain, optimal = noise_plain_vs_optimal(shots, k=20)
    assert optimal < 0.85 * plain, (plain, optimal)


def test_atoms_are_not_biased_by_the_optimal_reference():
    y, x = np.mgrid[:H, :W].astype(float)
    od = 0.3 * np.exp(-((x - 40) ** 2 / (2 * 3.0**2) + (y - 31) ** 2 / (2 * 3.0**2)))
    basis = ReferenceBasis(15, FIT)
    diffs = []
    for i, (a, r, i_out, i_in) in enumerate(atom_free_shots(6, 60, 0.05, 0.5, od=od)):
        basis.add(r)
        if i < 15:
            continue
        diffs.append(box_atoms(a, basis.reference(a)) - box_atoms(i_out, i_in))
    truth = box_atoms(i_out, i_in)
    assert truth > 100
    assert abs(np.mean(diffs)) < 3 * np.std(diffs) / np.sqrt(len(diffs)), (np.mean(diffs), truth)


def test_errors():
    with pytest.raises(ReferenceBasisError, match="empty"):
        ReferenceBasis(2, FIT).coefficients(np.ones((H, W)))
    with pytest.raises(ReferenceBasisError, match="shape"):
        ReferenceBasis(2, FIT).add(np.ones((3, 3)))
    with pytest.raises(ReferenceBasisError, match="max_frames"):
        ReferenceBasis(0, FIT)
    with pytest.raises(ReferenceBasisError, match="cover the whole"):
        exclusion_fit_mask((4, 4), [(-1, 10, -1, 10)])
    b = ReferenceBasis(2, FIT)
    with pytest.raises(ReferenceBasisError, match="non-finite"):
        b.add(np.full((H, W), np.nan))
