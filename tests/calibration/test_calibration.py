"""Calibration procedures on the virtual lab recover its true constants within their reported
uncertainties; records round-trip, reject bad input and change the analysis as they should."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from analysis.imaging import atom_number_image
from app.cli import main
from app.labconfig import parse_lab_config
from calibration import procedures as P
from drivers.simulated.atom_source import VirtualAtoms
from calibration.record import CalibrationRecord, RecordError, load_record, parse_record
from tests.analysis.virtual_lab_data import lab_calibration
from tests.offline.runs import sim_config

CONFIG = sim_config("squeezed")
TRUTH = lab_calibration(CONFIG)
MW = {"frequency_hz": 6.834682611e9, "power_dbm": -10.0, "x": {"phase_deg": 90.0, "pulse_s": 1.2e-4},
      "y": {"phase_deg": 0.0, "pulse_s": 1.2e-4}}


def record(**imaging: float) -> CalibrationRecord:
    return CalibrationRecord("test", dict(MW), TRUTH.to_dict() | imaging)


def check(result: P.Result, truth: dict[str, float], max_rel_err: float) -> None:
    for section, key, value, err in result.updates:
        if key not in truth:
            continue
        assert err > 0 and err < max_rel_err * abs(truth[key]), (key, value, err)
        assert abs(value - truth[key]) < 3 * err, (key, value, err, truth[key])


def test_rabi_frequency_and_pi2_pulses(tmp_path: Path) -> None:
    r = P.rabi_virtual(VirtualAtoms(CONFIG, seed=1), record(), tmp_path / "rabi.png")
    check(r, {"rabi_frequency_hz": 2000.0, "x.pulse_s": 125e-6}, 0.01)
    assert r.plot is not None and r.plot.stat().st_size > 1000


def test_reinaudi_alpha(tmp_path: Path) -> None:
    start = record(alpha=1.3)                            # a wrong starting value
    # each intensity images other clouds (imaging is destructive): with 12 shots per intensity
    # the reported error is 1-5 % (10 seeds), so 30 shots and a 4 % bound on it
    r = P.reinaudi(VirtualAtoms(CONFIG, seed=2), start, tmp_path / "r.png", shots=30)
    check(r, {"alpha": 1 / 0.68}, 0.04)


def test_differential_detectivity(tmp_path: Path) -> None:
    r = P.detectivity(VirtualAtoms(CONFIG, seed=3), record(detectivity_1=1.0), tmp_path / "d.png")
    check(r, {"detectivity_1": 1.05}, 0.03)


def test_projection_noise_slope(tmp_path: Path) -> None:
    r = P.projection_noise(VirtualAtoms(CONFIG, seed=4), record(), tmp_path / "p.png",
                           atom_numbers=(100, 400, 800, 1200), shots=120)
    check(r, {"projection_noise_slope": 1.031}, 0.15)


def test_point_spread_function(tmp_path: Path) -> None:
    r = P.psf(VirtualAtoms(CONFIG, seed=5), record(), tmp_path / "psf.png")
    # the fit's statistical error is tiny: allow the model's 1 % (Gaussian vs pixelated, blur shape)
    for _, key, value, err in r.updates:
        assert value == pytest.approx({"psf_sigma_x_px": 1.1, "psf_sigma_y_px": 1.2}[key], rel=0.015)


def test_detection_noise_agrees_with_an_independent_sample(tmp_path: Path) -> None:
    rec = record()
    r1 = P.detection_noise(VirtualAtoms(CONFIG, seed=6), rec, tmp_path / "n.png")
    r2 = P.detection_noise(VirtualAtoms(CONFIG, seed=7), rec, None)
    for (_, k, v1, e1), (_, _, v2, e2) in zip(r1.updates, r2.updates):
        assert abs(v1 - v2) < 3 * math.hypot(e1, e2) and e1 < 0.1 * v1


def test_blur_bound_combines_psf_and_recoil() -> None:
    r = P.blur(record())
    (_, key, value, _), = r.updates
    assert key == "sigma_blur_px" and value == pytest.approx(1.4, abs=0.03)


def test_records_round_trip_and_feed_the_lab_configuration(tmp_path: Path) -> None:
    rec = record()
    rec.set("imaging", "alpha", 1.47, 0.01, "test")
    path = rec.save(tmp_path / "rec.toml")
    back = load_record(path)
    assert back.imaging == rec.imaging and back.microwave == rec.microwave
    assert back.uncertainty["imaging"]["alpha"] == 0.01 and back.origin["imaging"]["alpha"]["source"] == "test"
    text = (Path(__file__).resolve().parents[2] / "configs" / "virtual-lab.toml").read_text()
    start = text.index("[calibration]")
    end = text.index("[monitor]")
    text = text[:start] + f'[calibration]\nrecord = "{path}"\n\n' + text[end:]
    cfg = parse_lab_config(text, "lab.toml", base_dir=tmp_path)
    assert cfg.imaging_calibration.alpha == 1.47 and cfg.calibration_record["uncertainty"]["imaging"]["alpha"] == 0.01


@pytest.mark.parametrize("edit, match", [
    (("alpha = ", "alpha = -"), "alpha"),
    (('id = "test"', 'id = ""'), "id"),
    (("[imaging]", "[imaging]\nbogus = 1.0"), "bogus"),
    (("power_dbm = -10.0", 'power_dbm = "loud"'), "power_dbm"),
    (("[imaging]", "[uncertainty.imaging]\nalpha = -1.0\n\n[imaging]"), "uncertainty"),
])
def test_bad_records_are_rejected_with_the_field(tmp_path: Path, edit: tuple[str, str], match: str) -> None:
    text = record().to_toml()
    assert edit[0] in text
    with pytest.raises(RecordError, match=match):
        parse_record(text.replace(edit[0], edit[1], 1), "bad.toml")


def test_a_wrong_record_gives_visibly_wrong_atom_numbers() -> None:
    frames = VirtualAtoms(CONFIG, seed=8).shots(5, config=dataclasses.replace(
        CONFIG, spin=dataclasses.replace(CONFIG.spin, state="coherent")))
    good = TRUTH
    bad = dataclasses.replace(TRUTH, alpha=TRUTH.alpha / 0.8)     # sigma_eff 20 % too small
    count = lambda cal: np.mean([atom_number_image(f[0], f[2], f[4], cal, 2).atoms.sum() for f in frames])  # noqa: E731
    n_good, n_bad = count(good), count(bad)
    assert n_good == pytest.approx(530 / 2 * 1.0, rel=0.15)      # |2> holds about half the atoms
    assert n_bad / n_good > 1.15                                   # the wrong record counts ~20 % more


def test_calibrate_command_rabi_through_the_instruments(tmp_path: Path, capsys) -> None:
    assert main(["calibrate", "rabi", "--out", str(tmp_path / "rec.toml"), "--plot-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rec = load_record(tmp_path / "rec.toml")
    f = rec.microwave["rabi_frequency_hz"]
    assert abs(f - 2000.0) < 3 * rec.uncertainty["microwave"]["rabi_frequency_hz"]
    assert (tmp_path / "calibration-rabi.png").exists() and "record written" in out
    assert main(["calibrate", "rabi", "--record", str(tmp_path / "missing.toml"), "--out",
                 str(tmp_path / "x.toml")]) == 2


def test_detection_noise_recovers_the_shipped_truth_record_on_the_default_virtual_lab() -> None:
    """The rms of atom-free shots is taken over the cloud's own counting region (the one the
    virtual lab's truth is defined on), not over the +-4 rms box, whose 3x more pixels gave
    10.1 and 8.1 'atoms' against the record's 6.0."""
    from app.commands.calibrate import _calibration_plan
    from app.lab import virtual_atoms
    from app.labconfig import load_lab_config
    from drivers.simulated.atoms import counting_region
    cfg = load_lab_config(Path(__file__).resolve().parents[2] / "configs" / "virtual-lab.toml")
    truth = cfg.imaging_calibration
    src = virtual_atoms(cfg, _calibration_plan(cfg), 2)
    r = P.detection_noise(src, CalibrationRecord("t", dict(MW), truth.to_dict()), None)
    for _, key, value, err in r.updates:
        assert abs(value - getattr(truth, key)) < 3 * err and err < 0.08 * value, (key, value, err)
    for state, px in zip((1, 2), r.details["region_px"]):
        # the region's size is a second-moment estimate: +-4.5 % (1 sd) from REGION_SHOTS shots
        assert px == pytest.approx(int(counting_region(src.config, state).sum()), rel=0.15)
