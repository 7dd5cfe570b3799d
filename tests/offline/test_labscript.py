"""labscript shot files as ``steerlab analyze`` input: the documented example (docs/labscript-input.md)
runs as written and gives the same numbers as the same shots in a native run file; bad shot files
are one line naming the file, object and value."""
from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from app.cli import main
from app.offline import open_analysis
from app.offline.labscript import LabscriptMapping, convert_folder
from app.runfile import RunFileError, RunWriter, open_run
from drivers.simulated.atoms import FRAME_NAMES, SimulatedAtoms, paper_measurement_pulses
from sequences.shot import ShotClock, ShotRecord
from tests.analysis.virtual_lab_data import lab_calibration
from tests.offline.runs import sim_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "labscript-input.md"
SHOTS = 90


def _doc_mapping() -> str:
    return re.search(r"```toml\n(.*?)```", DOC.read_text(), re.S).group(1)


def _doc_command() -> list[str]:
    line = next(x for x in DOC.read_text().splitlines() if x.startswith("steerlab analyze "))
    return line.split()[2:]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A folder of labscript-style shot files, its mapping and calibration, and the same shots
    as a native run file."""
    tmp = tmp_path_factory.mktemp("labscript")
    cfg = sim_config("squeezed")
    sim = SimulatedAtoms(cfg, seed=41)
    cal = lab_calibration(cfg).to_dict()
    folder = tmp / "shots" / "2026-12-02" / "steer"
    folder.mkdir(parents=True)
    mapping = tmp / "map.toml"
    mapping.write_text(_doc_mapping())
    frames_at = LabscriptMapping.load(mapping).frames
    (tmp / "cal.toml").write_text("[imaging]\n" + "".join(f"{k} = {v!r}\n" for k, v in cal.items()))
    native = tmp / "native.h5"
    with RunWriter(native, frame_names=FRAME_NAMES, frame_shape=cfg.imaging.frame_shape,
                   calibration={"id": "truth", "imaging": cal}) as w:
        for k in range(SHOTS):
            d = "xyz"[k % 3]
            frames = sim.shot(k, pulses=paper_measurement_pulses(d)).frames
            w.write_shot(ShotRecord.ok(index=k, cycle=k // 3, sequence_index=k % 3, direction=d,
                                       frames=frames, settings={}, timing=ShotClock().finish()))
            with h5py.File(folder / f"2026-12-02_0000_steer_{k:04d}.h5", "w") as f:
                g = f.create_group("globals")
                g.attrs["direction"] = d
                g.attrs["mw_phase_deg"] = 90.0 * (k % 3)
                g.attrs["n_atoms_target"] = 500
                g.create_group("steer_globals").attrs["direction"] = "'xyz'[shot % 3]"
                for name, path in frames_at.items():
                    f.create_dataset(f"images/{path}", data=frames[FRAME_NAMES.index(name)])
    return {"folder": folder, "map": mapping, "cal": tmp / "cal.toml", "native": native,
            "tmp": tmp}


def test_the_documented_example_runs_and_matches_a_native_run(lab: dict[str, Path],
                                                              capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    argv = _doc_command()
    assert argv == ["shots/2026-12-02/steer/", "--labscript-map", "map.toml", "--calibration",
                    "cal.toml", "--out", "report/"]
    tmp = lab["tmp"]
    argv = [str(tmp / a) if not a.startswith("--") else a for a in argv]
    assert main(["analyze", *argv, "--workers", "1", "--no-progress"]) == 0, capsys.readouterr().err
    report = tmp / "report"
    converted = report / "steer-labscript.h5"
    assert converted.exists() and (report / "steer-labscript-ratio-scan.csv").exists()
    with open_run(converted) as run:
        assert run.n_shots == SHOTS and run.end_state == "completed"
        s = run.shot(4)
        assert s.direction == "y" and s.settings["globals.mw_phase_deg"] == 90.0
        assert s.extra["labscript_file"] == "2026-12-02_0000_steer_0004.h5"
        assert run.provenance["labscript_folder"].endswith("steer")
    ours = open_analysis(converted).ratio_scan("x", 1.0)
    native = open_analysis(lab["native"]).ratio_scan("x", 1.0)
    for q in ("E_Ent", "E_EPR_AB", "xi_R2", "N"):
        np.testing.assert_array_equal(ours.best[q].value, native.best[q].value)
    rows = json.loads((report / "steer-labscript-ratio-scan.json").read_text())["geometries"]
    assert "E_Ent_corrected" in rows[0] and "E_Ent_raw" in rows[0]


def _one_shot(tmp: Path, lab: dict[str, Path], edit) -> Path:
    folder = tmp / "bad"
    folder.mkdir()
    src = sorted(lab["folder"].glob("*.h5"))[0]
    dst = folder / src.name
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "a") as f:
        edit(f, tmp)
    return folder


@pytest.mark.parametrize("case, message", [
    ("direction", "global 'direction' = 'q'; expected 'x', 'y' or 'z'"),
    ("float", "/images/side/absorption/dark is float64 .*expected a 2-D integer image"),
    ("external", "/images/side/absorption/ref1 is an external link to"),
    ("missing", "image\\(s\\) /images/side/absorption/atoms1 missing"),
    ("range", "/images/side/absorption/ref2 holds counts -5..[0-9]+; expected camera counts"),
])
def test_bad_shot_files_are_one_line(tmp_path: Path, lab: dict[str, Path], case: str,
                                     message: str, capsys: pytest.CaptureFixture[str]) -> None:
    def edit(f: h5py.File, tmp: Path) -> None:
        base = "images/side/absorption/"
        if case == "direction":
            f["globals"].attrs["direction"] = "q"
        elif case == "float":
            del f[base + "dark"]
            f[base + "dark"] = np.zeros((4, 4))
        elif case == "external":
            del f[base + "ref1"]
            f[base + "ref1"] = h5py.ExternalLink(str(tmp / "elsewhere.h5"), "/x")
        elif case == "missing":
            del f[base + "atoms1"]
        elif case == "range":
            data = f[base + "ref2"][()].astype(np.int32)
            data[0, 0] = -5
            del f[base + "ref2"]
            f[base + "ref2"] = data

    folder = _one_shot(tmp_path, lab, edit)
    mapping = LabscriptMapping.load(lab["map"])
    with pytest.raises(RunFileError, match=message):
        convert_folder(folder, mapping, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()
    assert main(["analyze", str(folder), "--labscript-map", str(lab["map"]), "--calibration",
                 str(lab["cal"]), "--out", str(tmp_path / "r"), "--workers", "1",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and re.search(message, err), err


def test_a_folder_needs_a_mapping_and_a_mapping_must_be_complete(tmp_path: Path,
                                                                 lab: dict[str, Path],
                                                                 capsys: pytest.CaptureFixture[str]
                                                                 ) -> None:
    assert main(["analyze", str(lab["folder"]), "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    assert "give --labscript-map" in capsys.readouterr().err
    bad = tmp_path / "map.toml"
    bad.write_text('[labscript]\ndirection_global = "direction"\n[labscript.frames]\natoms2 = "a"\n')
    with pytest.raises(RunFileError, match="expected image paths under /images for each of "
                                           "atoms2, atoms1, ref2, ref1, dark"):
        LabscriptMapping.load(bad)
