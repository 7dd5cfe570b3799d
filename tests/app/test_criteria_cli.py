"""`steerlab criteria`: the readable table, --json, --det-noise and one-line errors with exit 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.counts import Counts, write_counts_csv
from app.cli import main
from tests.analysis.spin_model import sample, squeezed


@pytest.fixture
def counts_csv(tmp_path: Path) -> Path:
    d, a, b, c, e = sample(np.random.default_rng(1), squeezed(), 200, 0.47)
    path = tmp_path / "counts.csv"
    write_counts_csv(path, Counts(d, a[:, 0] * 1.0, b[:, 0] * 1.0, c[:, 0] * 1.0, e[:, 0] * 1.0))
    return path


def test_table(counts_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["criteria", str(counts_csv)]) == 0
    out = capsys.readouterr().out
    assert "E_EPR A->B" in out and "xi_R^2 [dB]" in out and "x=200, y=200, z=200" in out
    assert "sigma below 1" in out


def test_json_keys_and_values(counts_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["criteria", str(counts_csv), "--json", "--det-noise", "3,3"]) == 0
    d = json.loads(capsys.readouterr().out)
    for key in ("E_Ent", "E_EPR_AB", "E_EPR_BA", "xi_R2", "xi_R2_dB"):
        assert set(d[key]) >= {"value", "error", "bias"}
    assert d["n_shots"] == {"x": 200, "y": 200, "z": 200}
    assert d["E_EPR_AB"]["g_z"]["value"] > 0
    assert d["corrected"]["E_EPR_AB"]["value"] < d["E_EPR_AB"]["value"]
    assert d["detection_noise"] == {"var_a": 3.0, "var_b": 3.0, "cov_ab": 0.0}


def test_console_script_runs(counts_csv: Path) -> None:
    exe = Path(sys.executable).with_name("steerlab")
    r = subprocess.run([str(exe), "criteria", str(counts_csv), "--json"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "E_Ent" in json.loads(r.stdout)


BAD = {
    "missing column": ("direction,N1A,N2A,N1B\nx,1,2,3\n", "counts.csv:1: missing column(s) N2B"),
    "non-numeric": ("direction,N1A,N2A,N1B,N2B\nx,1,2,3,4\ny,1,abc,3,4\n",
                    "counts.csv:3: N2A = 'abc' is not a number"),
    "unknown direction": ("direction,N1A,N2A,N1B,N2B\nw,1,2,3,4\n",
                          "counts.csv:2: unknown direction 'w'"),
    "few shots": ("direction,N1A,N2A,N1B,N2B\n" + "x,1,2,3,4\ny,1,2,3,5\nz,1,3,3,4\n" * 2,
                  "too few shots: x has 2, y has 2, z has 2"),
    "no x": ("direction,N1A,N2A,N1B,N2B\n" + "y,1,2,3,5\nz,1,3,3,4\n" * 5, "no x shots"),
    "empty": ("", "empty file"),
    "short row": ("direction,N1A,N2A,N1B,N2B\nx,1,2\n", "counts.csv:2: 3 fields"),
    "nan": ("direction,N1A,N2A,N1B,N2B\nx,1,2,nan,4\n", "counts.csv:2: N1B = 'nan' is not finite"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_error_exit_2(case: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    text, expected = BAD[case]
    path = tmp_path / "counts.csv"
    path.write_text(text)
    assert main(["criteria", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_missing_and_binary_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["criteria", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv: file not found" in capsys.readouterr().err
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert main(["criteria", str(binary)]) == 2
    assert "not a UTF-8 text file" in capsys.readouterr().err


def test_bad_det_noise_is_a_usage_error(counts_csv: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["criteria", str(counts_csv), "--det-noise", "1"])
    assert exc.value.code == 2
    assert "expected VAR_A,VAR_B" in capsys.readouterr().err


def test_corrected_first_with_its_own_verdicts_and_explicit_columns(
        counts_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["criteria", str(counts_csv), "--det-noise", "3,3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[1:3] == ["detection-noise", "corrected"] and lines[1].endswith("| raw")
    ent = next(line for line in lines if line.startswith("E_Ent"))
    corrected, raw = ent.split(" | ")
    assert "p=" in corrected and "p=" in raw and "certified" in corrected.lower()
    assert main(["criteria", str(counts_csv), "--json", "--det-noise", "3,3"]) == 0
    d = json.loads(capsys.readouterr().out)
    cols = list(d["columns"])
    assert cols.index("E_Ent_corrected") < cols.index("E_Ent_raw")
    assert d["columns"]["E_Ent_raw"] == d["E_Ent"]["value"]
    assert d["columns"]["E_Ent_corrected"] == d["corrected"]["E_Ent"]["value"]
    assert d["columns"]["E_Ent_corrected_verdict"] in ("certified", "not certified")
    assert main(["criteria", str(counts_csv), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["columns"]["E_Ent_corrected"] is None and d["columns"]["E_Ent_raw_p_value"] is not None
