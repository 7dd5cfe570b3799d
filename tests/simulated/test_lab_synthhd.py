"""The plug-in point proved end to end: a full virtual-lab run with the Windfreak SynthHD in place of
the SMA100B, selected only by the lab configuration ([microwave] kind = "synthhd"), through the
entry point, the real driver over socket:// and the emulated SynthHD."""
from __future__ import annotations

from pathlib import Path

from app.labconfig import parse_lab_config
from app.runfile import open_run
from app.session import RunSession
from drivers.registry import available, load
from drivers.synthhd import SynthHD
from sequences.control import RunState
from tests.app.test_session import CONFIG, SMALL_LAB, plan


def synthhd_lab(tmp_path: Path):
    text = CONFIG.read_text()
    text = text.replace('data_dir = "../../runs"', f'data_dir = "{tmp_path / "runs"}"')
    text = text.replace("[virtual_lab]\n", SMALL_LAB.strip() + "\n", 1)
    assert "[microwave]" in text
    text = text.replace("[microwave]", '[microwave]\nkind = "synthhd"', 1)
    return parse_lab_config(text, "synthhd-lab.toml", base_dir=CONFIG.parent)


def test_the_shipped_drivers_are_entry_points() -> None:
    assert {"sma100b", "synthhd"} <= set(available("microwave"))
    assert load("microwave", "synthhd") is SynthHD
    assert "prawndo" in available("timing_card") and "genicam" in available("camera")


def test_a_squeezed_run_with_the_synthhd_selected_by_config(tmp_path: Path) -> None:
    cfg = synthhd_lab(tmp_path)
    assert cfg.microwave_kind == "synthhd"
    shots = 120
    with RunSession(cfg, plan(cfg, shots, "squeezed"), "synthhd.h5", seed=3) as s:
        s.start()
        assert s.wait(120) is RunState.COMPLETED
        assert s.lab.microwave_kind == "synthhd"
    with open_run(s.path) as run:
        assert run.instruments["microwave"]["identity"].startswith("Windfreak,WFT SynthHD")
        assert run.n_shots == shots and run.end_state == "completed"
        first = run.shot_text(0)["settings"]
        assert first["mw.trigger_function"] == 4 and first["mw.output_enabled"] is True
        assert first["mw.frequency_hz"] == cfg.microwave_calibration.frequency_hz
        results = run.results
    assert results is not None and results["shots_counted"] == shots
    xi2 = results["criteria"][0]["corrected"]["xi_R2"]
    # the atoms saw the SynthHD's pulses (wrong or missing pulses give xi_R^2 >> 1); 40 shots per
    # direction: the value is below 1 and consistent with the prepared -3.2 dB
    assert xi2["value"] < 1.0 and abs(xi2["value"] - 10 ** (-3.2 / 10)) < 3 * xi2["error"]
