"""Schema 2: typed per-shot columns with units, per-shot counts and typed final results written
at close, the NeXus structure (NXroot/NXentry/NXdata with signal, NXinstrument, NXcollection),
provenance; repair keeps all of it; schema 1 files are read as before."""
from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from app.runfile import RunWriter, open_run, repair
from app.runfile import columns as C
from sequences.shot import FRAME_NAMES, ShotClock, ShotRecord
from tests.app.runfile_helpers import H, W, write_run

RESULTS = {
    "regions": [{"index": 0, "kind": "chosen", "name": "split x@0 gap 1", "splitting_ratio": 0.5},
                {"index": 1, "kind": "ratio_scan", "name": "split x@2 gap 1",
                 "splitting_ratio": 0.61}],
    "criteria": [
        {"E_Ent": {"value": 0.77, "error": 0.1, "bias": 0.01, "p_value": 0.2, "certified": False},
         "N": {"value": 480.0, "error": 5.0, "bias": 0.0},
         "n_shots": {"x": 2, "y": 2, "z": 1},
         "detection_noise": {"var_a": 4.0, "var_b": 5.0, "cov_ab": 0.5},
         "corrected": {"E_Ent": {"value": 0.588, "error": 0.09, "bias": 0.02, "p_value": 0.01,
                                 "certified": True},
                       "N": {"value": 480.0, "error": 5.0, "bias": 0.0}}},
        {"E_Ent": {"value": 0.9, "error": 0.2, "bias": 0.0, "p_value": 0.3, "certified": False},
         "n_shots": {"x": 2, "y": 2, "z": 1}},
    ],
}


def _settings_shot(i: int) -> ShotRecord:
    frames = np.full((len(FRAME_NAMES), H, W), i, dtype=np.uint16)
    settings = {"mw.frequency_hz": 6.834682611e9, "mw.level_dbm": -10.0, "mw.phase_deg": 90.0 * i,
                "mw.output_enabled": True, "pulse.mw_gate_s": 1.25e-4, "card.instructions": 22}
    if i == 1:
        del settings["mw.level_dbm"], settings["mw.output_enabled"]
    return ShotRecord.ok(index=i, cycle=0, sequence_index=i % 3, direction="xyz"[i % 3],
                         frames=frames, settings=settings, timing=ShotClock().finish())


def _write(path: Path, n: int = 3, close: bool = True) -> RunWriter:
    w = RunWriter(path, frame_names=FRAME_NAMES, frame_shape=(H, W), run_name="v2-run",
                  instruments={"microwave": {"identity": "R&S,SMA100B", "settings": {
                      "frequency_hz": 6.8e9, "output_enabled": True}}},
                  provenance={"config_sha256": "ab" * 32})
    for i in range(n):
        w.write_shot(_settings_shot(i))
    w.write_results(RESULTS)
    w.write_counts({"index": np.arange(n), "N1A": np.full(n, 100.0), "N2A": np.full(n, 120.0),
                    "N1B": np.full(n, 90.0), "N2B": np.full(n, 95.0),
                    "det_SA": np.full(n, 0.5), "det_SB": np.full(n, -0.5)})
    if close:
        w.close()
    return w


def test_typed_columns_with_units(tmp_path: Path) -> None:
    _write(tmp_path / "a.h5")
    with open_run(tmp_path / "a.h5") as run:
        assert run.schema_version == 2
        cols = run.columns()
        assert set(cols) == {c.name for c in C.ALL_COLUMNS}
        assert cols["mw_frequency_hz"].dtype == np.float64 and cols["mw_frequency_hz"][0] == 6.834682611e9
        assert list(cols["mw_phase_deg"]) == [0.0, 90.0, 180.0]
        assert math.isnan(cols["mw_level_dbm"][1]) and cols["mw_level_dbm"][0] == -10.0
        assert list(cols["mw_output_enabled"]) == [1, -1, 1]
        assert list(cols["index"]) == [0, 1, 2]
        assert math.isnan(cols["pulse_mw_phase_deg"][0])          # not in these shots' settings
        assert abs(cols["start_time"][0] - cols["end_time"][0]) < 5 and cols["start_time"][0] > 1.7e9
        assert run.units("shots/columns/mw_frequency_hz") == "Hz"
        assert run.units("shots/columns/mw_level_dbm") == "dBm"
        assert run.units("shots/columns/pulse_mw_gate_s") == "s"
        assert run.units("shots/columns/mw_phase_deg") == "degree"
        counts = run.counts()
        assert list(counts["N1A"]) == [100.0] * 3 and run.units("shots/counts/N2B") == "atoms"


def test_final_results_as_datasets_corrected_and_raw(tmp_path: Path) -> None:
    _write(tmp_path / "a.h5")
    with open_run(tmp_path / "a.h5") as run:
        crit, regions = run.results_tables()
        assert list(regions["name"]) == ["split x@0 gap 1", "split x@2 gap 1"]
        assert list(regions["splitting_ratio"]) == [0.5, 0.61]
        assert regions["detection_var_a"][0] == 4.0 and math.isnan(regions["detection_var_a"][1])
        rows = {(int(g), c): k for k, (g, c) in enumerate(zip(crit["geometry"], crit["criterion"]))}
        k = rows[(0, "E_Ent")]
        assert crit["corrected_value"][k] == 0.588 and crit["raw_value"][k] == 0.77
        assert crit["corrected_p_value"][k] == 0.01 and crit["raw_p_value"][k] == 0.2
        assert crit["corrected_verdict"][k] == "certified"
        assert crit["raw_verdict"][k] == "not certified"
        assert crit["units"][rows[(0, "N")]] == "atoms" and math.isnan(crit["raw_p_value"][rows[(0, "N")]])
        k1 = rows[(1, "E_Ent")]
        assert math.isnan(crit["corrected_value"][k1]) and crit["raw_value"][k1] == 0.9
        assert run.results == RESULTS          # the JSON stays the complete record


def test_nexus_structure_and_provenance(tmp_path: Path) -> None:
    _write(tmp_path / "a.h5")
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert f.attrs["NX_class"] == "NXroot" and f.attrs["default"] == "entry"
        entry = f["entry"]
        assert entry.attrs["NX_class"] == "NXentry" and entry.attrs["default"] == "data"
        assert entry["title"][()].decode() == "v2-run"
        data = entry["data"]
        assert data.attrs["NX_class"] == "NXdata" and data.attrs["signal"] == "frames"
        assert data["frames"].id == f["frames"].id                          # one dataset, linked
        assert entry["instrument"].attrs["NX_class"] == "NXinstrument"
        mw = f["instrument/microwave"]
        assert mw.attrs["NX_class"] == "NXcollection"
        assert mw["settings_frequency_hz"][()] == 6.8e9
        assert mw["settings_frequency_hz"].attrs["units"] == "Hz"
        assert mw["identity"][()].decode() == "R&S,SMA100B"
        for group in ("shots", "results", "shots/columns", "provenance"):
            assert f[group].attrs["NX_class"] == "NXcollection"
    with open_run(tmp_path / "a.h5") as run:
        p = run.provenance
    assert p["config_sha256"] == "ab" * 32 and len(p["config_json_sha256"]) == 64
    assert p["h5py"] == h5py.__version__ and p["hdf5"] == h5py.version.hdf5_version
    assert p["numpy"] == np.__version__ and p["host"] and p["python"].count(".") == 2
    assert set(p) >= {"steerlab_version", "code_revision", "hdf5plugin", "pyvisa", "harvesters",
                      "PySide6", "user", "calibration_json_sha256"}


@pytest.mark.parametrize("close", [True, False])
def test_repair_keeps_schema_2(tmp_path: Path, close: bool) -> None:
    w = _write(tmp_path / "a.h5", close=close)
    assert repair(tmp_path / "a.h5", tmp_path / "b.h5") == 3
    if not close:
        w.close()
    with open_run(tmp_path / "a.h5") as a, open_run(tmp_path / "b.h5") as b:
        assert b.schema_version == 2
        for name, col in a.columns().items():
            np.testing.assert_array_equal(b.columns()[name], col)
        assert b.units("shots/columns/mw_frequency_hz") == "Hz"
        assert b.provenance == a.provenance
        if close:
            for x, y in zip(a.results_tables(), b.results_tables()):
                assert x.keys() == y.keys()
                for k in x:
                    np.testing.assert_array_equal(x[k], y[k])
    with h5py.File(tmp_path / "b.h5", "r") as f:
        assert f["entry/data"].attrs["signal"] == "frames"
        assert f["entry/data/frames"].shape == (3, 5, H, W)


def test_schema_1_files_are_read_as_before(tmp_path: Path) -> None:
    """A schema 1 file (as written before schema 2: no columns, no NeXus groups)."""
    path = tmp_path / "v1.h5"
    write_run(path, 4, compression="none", results={"regions": {"A": 1}})
    with h5py.File(path, "a") as f:
        for name in ("entry", "instrument", "provenance", "shots/columns", "shots/counts",
                     "results/criteria", "results/regions"):
            del f[name]
        f.attrs["schema_version"] = 1
    with open_run(path) as run:
        assert run.schema_version == 1 and run.n_shots == 4 and run.results == {"regions": {"A": 1}}
        assert run.columns() == {} and run.provenance == {} and run.results_tables() == ({}, {})
        assert run.shot(2).frames[0, 1, 1] == 2
    assert repair(path, tmp_path / "v1-clean.h5") == 4
    with open_run(tmp_path / "v1-clean.h5") as run:
        assert run.schema_version == 1 and run.n_shots == 4


def test_a_run_writes_counts_results_tables_and_provenance(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    import hashlib

    from app.cli import main
    from tests.app.test_run_cli import small_config

    cfg = small_config(tmp_path)
    assert main(["run", "--config", str(cfg), "--shots", "30", "--out", "r.h5",
                 "--no-progress", "--json"]) == 0
    import json
    summary = json.loads(capsys.readouterr().out)["results"]
    cols = list(summary["columns"])
    assert cols.index("E_Ent_corrected") < cols.index("E_Ent_corrected_p_value") \
        < cols.index("E_Ent_corrected_verdict") < cols.index("E_Ent_raw") < cols.index("E_Ent_raw_verdict")
    assert summary["columns"]["E_Ent_raw"] == summary["criteria"][0]["E_Ent"]["value"]
    with open_run(tmp_path / "runs" / "r.h5") as run:
        counts, cols = run.counts(), run.columns()
        assert len(counts["index"]) == 30 and set(counts["index"]) <= set(cols["index"])
        assert np.all(np.isfinite(counts["N1A"])) and counts["N1A"].mean() > 10
        assert np.all(np.isfinite(cols["mw_frequency_hz"])) and np.all(cols["mw_output_enabled"] == 1)
        assert np.all(np.isfinite(cols["pulse_mw_gate_s"]))
        crit, regions = run.results_tables()
        assert regions["kind"][0] == "chosen" and len(regions["name"]) == len(run.results["criteria"])
        k = [i for i, (g, c) in enumerate(zip(crit["geometry"], crit["criterion"]))
             if g == 0 and c == "E_Ent"][0]
        e = run.results["criteria"][0]
        assert crit["raw_value"][k] == e["E_Ent"]["value"]
        assert crit["corrected_value"][k] == e["corrected"]["E_Ent"]["value"]
        assert run.provenance["config_sha256"] == hashlib.sha256(cfg.read_bytes()).hexdigest()


def test_columns_of_a_crashed_file_whole_chunks_and_repair_rebuilds_them(tmp_path: Path) -> None:
    n = C.ROWS_PER_CHUNK + 20
    w = RunWriter(tmp_path / "live.h5", frame_names=FRAME_NAMES, frame_shape=(H, W))
    for i in range(n):
        w.write_shot(_settings_shot(i))
    with open_run(tmp_path / "live.h5") as live:             # as after a crash: not closed
        assert live.n_shots == n and live.end_state == "running"
        cols = live.columns()
        assert len(cols["index"]) == C.ROWS_PER_CHUNK
        assert list(cols["index"]) == list(range(C.ROWS_PER_CHUNK))
    assert repair(tmp_path / "live.h5", tmp_path / "fixed.h5") == n
    w.close()
    with open_run(tmp_path / "fixed.h5") as fixed, open_run(tmp_path / "live.h5") as closed:
        assert fixed.end_state == "crashed"
        rebuilt, written = fixed.columns(), closed.columns()
        assert len(rebuilt["index"]) == len(written["index"]) == n
        for name in written:
            np.testing.assert_array_equal(rebuilt[name], written[name])


DATA = Path(__file__).with_name("data")


def test_genuine_schema_1_files_of_the_previous_writer(tmp_path: Path) -> None:
    """tests/app/data/v1-run.h5 and v1-crashed.h5 were written by the schema 1 writer (commit
    de331f0, tests.app.runfile_helpers.write_run; the second copied while still open)."""
    from tests.app.runfile_helpers import shot

    with open_run(DATA / "v1-run.h5") as run:
        assert run.schema_version == 1 and run.end_state == "completed" and run.n_shots == 5
        assert run.results == {"regions": {"A": [[0, 3]]}, "E_EPR_AB": 0.9}
        assert list(run.table()["status"]) == ["ok", "ok", "ok", "failed", "ok"]
        np.testing.assert_array_equal(run.frames(4), shot(4).frames)
        assert run.columns() == {} and run.provenance == {}
    with open_run(DATA / "v1-crashed.h5") as run:
        assert run.schema_version == 1 and run.end_state == "running" and run.n_shots == 4
    assert repair(DATA / "v1-crashed.h5", tmp_path / "clean.h5") == 4
    with open_run(tmp_path / "clean.h5") as run:
        assert run.schema_version == 1 and run.end_state == "crashed"
        np.testing.assert_array_equal(run.frames(3), shot(3).frames)
