"""The blurs' calibration uncertainties from the lab configuration to the run file, the live
monitor, the offline analysis and the review: one record, the same propagation everywhere."""
from __future__ import annotations

from pathlib import Path

import pytest

from analysis.geometries import Split
from analysis.imaging import ImagingUncertainty
from app.labconfig import LabConfigError, parse_lab_config
from app.monitoring import recount_file
from app.offline.analysis import RunAnalysis
from app.runfile import open_run
from app.session import RunSession, region_plan
from tests.app.test_session import CONFIG, SMALL_LAB, plan

UNCERTAINTY = "[calibration.uncertainty.imaging]\npsf_sigma_x_px = 0.2\npsf_sigma_y_px = 0.2\nsigma_blur_px = 0.1\n"


def _config(tmp_path: Path, extra: str = UNCERTAINTY):
    text = CONFIG.read_text().replace('data_dir = "../../runs"', f'data_dir = "{tmp_path / "runs"}"')
    text = text.replace("[virtual_lab]\n", SMALL_LAB.strip() + "\n", 1)
    return parse_lab_config(text + "\n" + extra, "unc-lab.toml", base_dir=CONFIG.parent)


def test_the_records_uncertainty_reaches_the_file_the_live_and_the_offline_errors(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    assert cfg.imaging_uncertainty == ImagingUncertainty(0.2, 0.2, 0.1)
    with RunSession(cfg, plan(cfg, 90), "unc.h5", seed=5) as s:
        s.start()
        assert s.wait(120) is not None
    with open_run(s.path) as run:
        assert run.calibration["uncertainty"]["imaging"]["psf_sigma_x_px"] == 0.2
        live = run.results["criteria"][0]
        chosen = run.results["regions"][0]
    split = Split(chosen["axis"], chosen["position_px"], chosen["gap_px"])
    recorded = RunAnalysis(s.path).analyse([split]).result       # the file's own record
    exact = RunAnalysis(s.path, uncertainty=ImagingUncertainty()).analyse([split]).result
    assert recorded.corrected is not None and exact.corrected is not None
    for q in ("E_Ent", "E_EPR_AB"):
        assert recorded.corrected[q].value[0] == pytest.approx(exact.corrected[q].value[0], rel=1e-12)
        assert recorded.corrected[q].error[0] > exact.corrected[q].error[0]
    # the live monitor propagated it: a recount of the file with the record's uncertainty gives
    # its numbers, one without gives smaller corrected errors
    m = cfg.monitor
    kw = dict(warmup_shots=m.warmup_shots, reference_basis=m.reference_basis, confidence=m.confidence)
    again = recount_file(s.path, cfg.imaging_calibration, region_plan(cfg), **kw,
                         uncertainty=cfg.imaging_uncertainty).result().to_dict(0)
    known = recount_file(s.path, cfg.imaging_calibration, region_plan(cfg), **kw).result().to_dict(0)
    for q in ("E_Ent", "E_EPR_AB"):
        assert live["corrected"][q]["error"] == pytest.approx(again["corrected"][q]["error"], rel=1e-9)
        assert live["corrected"][q]["error"] > known["corrected"][q]["error"]


def test_a_bad_uncertainty_in_the_configuration_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(LabConfigError, match=r"unc-lab\.toml: calibration: imaging uncertainty "
                                             r"'psf_sigma_x_px' must be a finite number >= 0") as err:
        _config(tmp_path, "[calibration.uncertainty.imaging]\npsf_sigma_x_px = -0.2\n")
    assert "\n" not in str(err.value)
