"""Atom-number images: known answers, bad-pixel handling (never NaN), calibration records."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from analysis.imaging import (FRAME_ORDER, CalibrationError, FrameError, ImagingCalibration,
                              atom_number_image, atoms_from_intensities, shot_atom_images,
                              sigma0_column_density, split_frames)

CAL = ImagingCalibration.paper_defaults(isat_counts=2500.0)
LAMBDA = 780.24e-9
SIGMA0 = 3 * LAMBDA**2 / (2 * math.pi)
PIXEL_AREA = (6.5e-6 / 5.0) ** 2


def expected_atoms(i_out: float, i_in: float, state: int, cal: ImagingCalibration = CAL) -> float:
    """Reinaudi by hand: (alpha ln(I_in/I_out) + (I_in - I_out)/I_sat) A / sigma_0 / (d_s k)."""
    det = {1: cal.detectivity_1, 2: cal.detectivity_2}[state]
    s0n = cal.alpha * math.log(i_in / i_out) + (i_in - i_out) / cal.isat_counts
    return s0n * PIXEL_AREA / SIGMA0 / (det * cal.projection_noise_slope)


def test_derived_constants():
    assert CAL.pixel_size_m == pytest.approx(1.3e-6, rel=1e-12)
    assert CAL.sigma0_m2 == pytest.approx(2.907e-13, rel=1e-3)
    assert CAL.atoms_per_unit(2) == pytest.approx(PIXEL_AREA / SIGMA0 / 1.031, rel=1e-12)
    assert CAL.atoms_per_unit(1) == pytest.approx(PIXEL_AREA / SIGMA0 / 1.031 / 1.05, rel=1e-12)


@pytest.mark.parametrize("state", [1, 2])
def test_known_transmission_gives_known_atoms(state):
    dark = np.full((4, 5), 100, dtype=np.uint16)
    ref = np.full((4, 5), 1100, dtype=np.uint16)           # I_in = 1000 counts
    atoms = ref.copy()
    atoms[1, 2] = 600                                       # I_out = 500: transmission 1/2
    atoms[2, 3] = 850                                       # I_out = 750
    img = atom_number_image(atoms, ref, dark, CAL, state)
    assert img.atoms[1, 2] == pytest.approx(expected_atoms(500, 1000, state), rel=1e-12)
    assert img.atoms[2, 3] == pytest.approx(expected_atoms(750, 1000, state), rel=1e-12)
    untouched = np.ones((4, 5), bool)
    untouched[1, 2] = untouched[2, 3] = False
    assert np.all(img.atoms[untouched] == 0.0)
    assert int(img.n_saturated) == int(img.n_no_light) == int(img.n_unrecoverable) == 0


def test_saturation_term_and_alpha():
    # far below saturation the formula is alpha * OD; the linear term adds (I_in - I_out)/I_sat
    s0n = sigma0_column_density([500.0, 500.0], [1000.0, 1000.0], 1.5, 1e30)
    assert s0n[0] == pytest.approx(1.5 * math.log(2), rel=1e-12)
    s0n = sigma0_column_density(500.0, 1000.0, 1.0, 250.0)
    assert s0n == pytest.approx(math.log(2) + 2.0, rel=1e-12)


def test_detectivity_and_slope_correction_scale_atoms():
    cal = ImagingCalibration.paper_defaults(detectivity_1=1.1, detectivity_2=0.9,
                                            projection_noise_slope=1.2)
    base = ImagingCalibration.paper_defaults(detectivity_1=1.0, detectivity_2=1.0,
                                             projection_noise_slope=1.0)
    i_out, i_in = np.full((3, 3), 400.0), np.full((3, 3), 1000.0)
    for s, d in ((1, 1.1), (2, 0.9)):
        a = atoms_from_intensities(i_out, i_in, cal, s).atoms
        b = atoms_from_intensities(i_out, i_in, base, s).atoms
        np.testing.assert_allclose(a, b / (d * 1.2), rtol=1e-13)


def test_stack_of_frames_is_processed_per_frame():
    rng = np.random.default_rng(0)
    i_in = rng.uniform(800, 1200, (3, 6, 7))
    i_out = i_in * rng.uniform(0.7, 1.0, (3, 6, 7))
    i_out[1, 0, 0] = -3.0
    stack = atoms_from_intensities(i_out, i_in, CAL, 2)
    assert stack.atoms.shape == (3, 6, 7)
    assert stack.n_no_light.tolist() == [0, 1, 0]
    for k in range(3):
        one = atoms_from_intensities(i_out[k], i_in[k], CAL, 2)
        np.testing.assert_array_equal(one.atoms, stack.atoms[k])


def test_saturated_pixel_is_replaced_by_neighbour_median_and_counted():
    dark = np.zeros((5, 5), dtype=np.uint16)
    ref = np.full((5, 5), 1000, dtype=np.uint16)
    atoms = np.full((5, 5), 800, dtype=np.uint16)
    atoms[2, 2] = 65535                                      # saturated in the atoms frame
    ref[0, 0] = 65535                                        # saturated in the reference
    img = atom_number_image(atoms, ref, dark, CAL, 2)
    value = expected_atoms(800, 1000, 2)
    np.testing.assert_allclose(img.atoms, value, rtol=1e-12)
    assert int(img.n_saturated) == 2 and int(img.n_no_light) == 0
    assert img.report() == {"saturated": 2, "no_light": 0, "unrecoverable": 0}


def test_configured_saturation_level():
    cal = ImagingCalibration.paper_defaults(saturation_counts=4000.0)
    ref = np.full((3, 3), 4500, dtype=np.uint16)
    img = atom_number_image(np.full((3, 3), 3000, np.uint16), ref, np.zeros((3, 3)), cal, 1)
    assert int(img.n_saturated) == 9 and int(img.n_unrecoverable) == 9
    assert np.all(img.atoms == 0.0)


def test_no_light_pixels_never_give_nan():
    dark = np.full((6, 6), 200, dtype=np.uint16)
    ref = np.full((6, 6), 1200, dtype=np.uint16)
    atoms = np.full((6, 6), 1100, dtype=np.uint16)
    atoms[3, 3] = 150                                        # below dark: I_out < 0
    atoms[0, 5] = 200                                        # I_out = 0 (fully absorbed)
    ref[5, 0] = 200                                          # no probe: I_in = 0
    img = atom_number_image(atoms, ref, dark, CAL, 1)
    assert np.all(np.isfinite(img.atoms))
    assert int(img.n_no_light) == 3
    assert img.atoms[3, 3] == pytest.approx(expected_atoms(900, 1000, 1), rel=1e-12)


def test_frame_without_any_light_is_all_zero_and_reported():
    z = np.zeros((4, 4), dtype=np.uint16)
    img = atom_number_image(z, z, z, CAL, 2)
    assert np.all(img.atoms == 0.0)
    assert int(img.n_no_light) == 16 and int(img.n_unrecoverable) == 16


def test_non_finite_float_inputs_are_bad_pixels():
    i_in = np.full((3, 3), 1000.0)
    i_out = np.full((3, 3), 900.0)
    i_out[1, 1] = np.nan
    i_in[0, 0] = np.inf
    img = atoms_from_intensities(i_out, i_in, CAL, 2)
    assert np.all(np.isfinite(img.atoms)) and int(img.n_no_light) == 2


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.uint16, (5, 6, 7), elements=st.sampled_from([0, 1, 2, 150, 900, 1000,
                                                                 30000, 65534, 65535])))
def test_any_uint16_frames_give_finite_atoms(frames):
    images = shot_atom_images(frames, CAL)
    for im in (images.n1, images.n2):
        assert np.all(np.isfinite(im.atoms))
        assert 0 <= int(im.n_bad) <= 42


def test_shot_frames_in_fixed_order():
    rng = np.random.default_rng(1)
    frames = rng.integers(900, 1100, (5, 8, 9)).astype(np.uint16)
    frames[4] = 100
    res = shot_atom_images(frames, CAL)
    by_name = dict(zip(FRAME_ORDER, frames))
    np.testing.assert_array_equal(
        res.n2.atoms, atom_number_image(by_name["atoms2"], by_name["ref2"], by_name["dark"], CAL,
                                        2).atoms)
    np.testing.assert_array_equal(res.image(1).atoms, shot_atom_images(by_name, CAL).n1.atoms)


def test_bad_frames_are_rejected_with_clear_errors():
    with pytest.raises(FrameError, match=r"shape \(5, H, W\)"):
        split_frames(np.zeros((4, 8, 8)))
    with pytest.raises(FrameError, match="missing"):
        split_frames({"atoms1": np.zeros((2, 2))})
    with pytest.raises(FrameError, match="same shape"):
        atoms_from_intensities(np.ones((2, 2)), np.ones((2, 3)), CAL, 1)
    with pytest.raises(ValueError, match="state must be 1 or 2"):
        atoms_from_intensities(np.ones((2, 2)), np.ones((2, 2)), CAL, 3)


def test_calibration_round_trip_through_json():
    d = CAL.to_dict()
    assert set(d) >= {"camera_pixel_size_m", "magnification", "alpha", "isat_counts",
                      "projection_noise_slope", "sigma_blur_px", "detection_noise_1_atoms"}
    again = ImagingCalibration.from_dict(json.loads(json.dumps(d)))
    assert again == CAL


@pytest.mark.parametrize("change, message", [
    ({"alpha": -1.0}, "'alpha' must be > 0"),
    ({"isat_counts": float("nan")}, "'isat_counts' must be finite"),
    ({"magnification": "5"}, "'magnification' must be a number"),
    ({"wavelength_m": 780.24}, "not an optical wavelength in metres"),
    ({"camera_pixel_size_m": 6.5}, "outside 10 nm..1 mm"),
    ({"sigma_blur_px": -0.1}, "'sigma_blur_px' must be >= 0"),
    ({"saturation_counts": 70000.0}, "<= 65535"),
])
def test_invalid_calibration_values_are_named(change, message):
    d = CAL.to_dict()
    d.update(change)
    with pytest.raises(CalibrationError, match=message):
        ImagingCalibration.from_dict(d, source="cal.toml [imaging]")


def test_missing_and_unknown_calibration_fields():
    d = CAL.to_dict()
    del d["alpha"]
    with pytest.raises(CalibrationError, match=r"cal.json: missing field\(s\) \['alpha'\]"):
        ImagingCalibration.from_dict(d, source="cal.json")
    d = CAL.to_dict()
    d["sigma_eff"] = 0.68
    with pytest.raises(CalibrationError, match="unknown field.*sigma_eff"):
        ImagingCalibration.from_dict(d)
    d = CAL.to_dict()
    del d["saturation_counts"]                             # optional, defaults to full scale
    assert ImagingCalibration.from_dict(d).saturation_counts == 65535.0
    with pytest.raises(CalibrationError, match="expected a table"):
        ImagingCalibration.from_dict([1, 2])  # type: ignore[arg-type]


def test_unrecoverable_pixels_counted_per_frame_of_a_stack():
    i_in = np.full((3, 4, 4), 1000.0)
    i_in[0] = 0.0                                           # frame 0: no probe at all
    i_in[2, :2, :] = 0.0                                    # frame 2: half the frame dark
    img = atoms_from_intensities(np.full((3, 4, 4), 900.0), i_in, CAL, 2)
    assert img.n_no_light.tolist() == [16, 0, 8]
    assert img.n_unrecoverable.tolist() == [16, 0, 4]       # row 1 has good neighbours in row 2
    assert np.all(img.atoms[0] == 0.0) and np.all(np.isfinite(img.atoms))
