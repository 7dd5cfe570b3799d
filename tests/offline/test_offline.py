"""Offline analysis: the paper's shapes on virtual-lab runs, identical numbers on every execution
path (this process, worker processes, a Dask cluster), and clear errors for bad files."""
from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest

from app.cli import main
from app.offline import open_analysis
from app.runfile import RunFileError
from tests.offline.runs import write_virtual_run

SHOTS = 600


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("offline")
    return {"squeezed": write_virtual_run(tmp / "squeezed.h5", "squeezed", SHOTS, 31, failed_every=50),
            "coherent": write_virtual_run(tmp / "coherent.h5", "coherent", SHOTS, 32)}


@pytest.fixture(scope="module")
def scans(runs: dict[str, Path]) -> dict[str, object]:
    return {k: open_analysis(p).ratio_scan("x", 1.0) for k, p in runs.items()}


def window(scan, lo: float = 0.2, hi: float = 0.8) -> np.ndarray:
    r = scan.splitting_ratios
    return (r > lo) & (r < hi)


def test_squeezed_entangled_over_a_wide_range_coherent_not(scans) -> None:
    sq, coh = scans["squeezed"], scans["coherent"]
    w = window(sq, 0.3, 0.7)
    assert w.sum() >= 4
    e = sq.best["E_Ent"]
    assert np.all(e.value[w] + 2 * e.error[w] < 1)
    assert np.all(sq.best.certified("E_Ent")[w])
    wc = window(coh, 0.1, 0.9)
    assert not np.any(coh.best.certified("E_Ent")[wc])
    assert not np.any(coh.best.certified("E_EPR_AB")[wc]) and not np.any(coh.best.certified("E_EPR_BA")[wc])
    xi = coh.best["xi_R2"]
    assert np.all(np.abs(xi.value[wc] - 1) < 3 * xi.error[wc])


def test_squeezed_steers_both_ways_at_some_ratio(scans) -> None:
    sq = scans["squeezed"]
    w = window(sq, 0.1, 0.9)
    assert np.any(sq.best["E_EPR_AB"].value[w] < 1)
    assert np.any(sq.best["E_EPR_BA"].value[w] < 1)
    # non-inferred products stay above their own bound where the inferred ones violate it
    assert np.all(sq.best["product_B"].value[w] + 3 * sq.best["product_B"].error[w] > 1)


def test_failed_shots_are_skipped_and_groups_follow_the_directions(runs) -> None:
    a = open_analysis(runs["squeezed"])
    res = a.analyse([a.ratio_scan("x", 1.0).geometries[0]]).result
    assert sum(res.n_shots.values()) == SHOTS and res.n_shots == {"x": 200, "y": 200, "z": 200}


def test_every_execution_path_gives_identical_numbers(runs) -> None:
    path = runs["squeezed"]
    local = open_analysis(path, chunk=100).ratio_scan("x", 1.0)
    with ProcessPoolExecutor(max_workers=2) as ex:
        procs = open_analysis(path, chunk=100, executor=ex).ratio_scan("x", 1.0)
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        dask = open_analysis(path, chunk=100, executor=client).ratio_scan("x", 1.0)
    for other in (procs, dask):
        for q in ("E_Ent", "E_EPR_AB", "E_EPR_BA", "xi_R2"):
            assert np.array_equal(local.result[q].value, other.result[q].value, equal_nan=True)
            assert np.array_equal(local.best[q].error, other.best[q].error, equal_nan=True)
    # another chunk size sums the mean images in another order; the mask fit turns that rounding
    # into ~1e-5 relative differences
    small = open_analysis(path, chunk=7).ratio_scan("x", 1.0)
    np.testing.assert_allclose(small.best["E_Ent"].value, local.best["E_Ent"].value, rtol=1e-4)


def test_analyze_command_writes_figures_and_numbers(runs, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    assert main(["analyze", str(runs["squeezed"]), str(runs["coherent"]), "--out", str(out),
                 "--workers", "1", "--no-progress"]) == 0
    names = {p.name for p in out.iterdir()}
    for n in ("fig2a-entanglement-vs-ratio.png", "fig3a-steering-vs-ratio.png",
              "squeezed-fig2b-patterns.png", "squeezed-fig3bc-gap-width.png", "coherent-ratio-scan.csv",
              "squeezed-gap-scan.json", "squeezed-patterns.csv"):
        assert n in names
    gaps = json.loads((out / "squeezed-gap-scan.json").read_text())["geometries"]
    assert [g["gap_px"] for g in gaps] == [0, 1, 2, 3, 4, 5, 6, 8, 10]
    assert gaps[0]["N_A"] > gaps[-1]["N_A"]            # a wider gap leaves fewer atoms in A
    text = capsys.readouterr().out
    assert "squeezed.h5 (squeezed)" in text and "E_EPR_AB" in text
    for line in (x for x in text.splitlines() if "E_Ent at splitting ratio" in x):
        assert line.index(" corrected ") < line.index(" raw ") and line.count("p = ") == 2
    header = (out / "squeezed-ratio-scan.csv").read_text().splitlines()[0].split(",")
    order = [header.index(c) for c in ("E_Ent_corrected", "E_Ent_corrected_error",
                                       "E_Ent_corrected_p_value", "E_Ent_corrected_verdict",
                                       "E_Ent_raw", "E_Ent_raw_error", "E_Ent_raw_p_value",
                                       "E_Ent_raw_verdict", "E_EPR_AB_corrected", "E_EPR_AB_raw")]
    assert order == sorted(order)
    assert not any(c.startswith("corrected.") or c == "E_Ent" for c in header)
    row = json.loads((out / "squeezed-ratio-scan.json").read_text())["geometries"][0]
    assert row["E_Ent_raw_verdict"] in ("certified", "not certified")
    assert 0 <= row["E_Ent_raw_p_value"] <= 1


def test_bad_files_are_one_clear_line(tmp_path: Path, capsys) -> None:
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    text = tmp_path / "text.h5"
    text.write_text("hello")
    for bad in (foreign, text, tmp_path / "missing.h5"):
        with pytest.raises(RunFileError):
            open_analysis(bad)
        assert main(["analyze", str(bad), "--out", str(tmp_path / "o"), "--workers", "1",
                     "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("steerlab analyze: ") and len(err.splitlines()) == 1 and bad.name in err
