"""The type checker over every package (the packages ship py.typed): mypy, configured in
pyproject.toml ([tool.mypy]), must report no error."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_is_clean() -> None:
    r = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "Success: no issues found" in r.stdout


def test_importing_the_plotting_modules_leaves_matplotlib_alone() -> None:
    """Figures use matplotlib's object API: importing them neither loads pyplot nor picks a backend."""
    code = ("import sys, matplotlib; before = matplotlib.rcParams._get('backend'); "
            "import calibration.procedures, app.offline.figures; "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'; "
            "assert matplotlib.rcParams._get('backend') == before, 'backend switched'")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
