"""The package layering of DESIGN.md, enforced by import-linter contracts in pyproject.toml: they
hold on the tree, each one breaks on a deliberate violation, and their module lists name every
module (a new module cannot slip past them)."""
from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "drivers", "sequences", "analysis", "calibration", "conventions")
CONTRACTS = {c["name"]: c for c in
             tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]}
QT = "Qt only under app.gui and the gui command"
SIM = "the simulator is imported only by app.lab, the one place that builds the virtual lab"
LAYERS = next(n for n in CONTRACTS if n.startswith("layers"))


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([str(exe), "--config", str(root / "pyproject.toml")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_contracts_hold() -> None:
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(CONTRACTS)} kept, 0 broken" in r.stdout


def test_the_contracts_name_every_module() -> None:
    qt = set(CONTRACTS[QT]["source_modules"])
    sim = set(CONTRACTS[SIM]["source_modules"])
    for pkg in ("app", "drivers"):
        for m in pkgutil.walk_packages([str(ROOT / pkg)], prefix=f"{pkg}."):
            name = m.name
            if m.ispkg and not (ROOT / name.replace(".", "/") / "__init__.py").read_text().count("import"):
                continue           # a package without code of its own: its modules are checked
            covered_qt = any(name == s or name.startswith(s + ".") for s in qt | {"app.gui", "app.commands.gui"})
            covered_sim = name.startswith(("drivers.simulated", "app.lab")) or any(
                name == s or name.startswith(s + ".") for s in sim)
            assert covered_qt, f"{name} is in neither the Qt contract nor app.gui: add it to pyproject.toml"
            assert covered_sim, f"{name} is not in the simulator contract: add it to pyproject.toml"


VIOLATIONS = [
    ("app/monitoring.py", "import PySide6", QT),
    ("app/server/server.py", "import pyqtgraph", QT),
    ("app/runfile/writer.py", "import drivers.simulated.lab", SIM),
    ("calibration/record.py", "import drivers.simulated.lab", SIM),
    ("drivers/sma100b.py", "import drivers.simulated.lab", SIM),
    ("calibration/procedures.py", "def _f():\n    from drivers.simulated import atoms", SIM),
    ("calibration/record.py", "import app.session", "calibration does not depend on the app"),
    ("analysis/criteria.py", "import drivers.errors", "analysis depends on nothing of ours"),
    ("analysis/monitor.py", "import app.runfile", "analysis depends on nothing of ours"),  # the one monitor reads no files
    ("sequences/plan.py", "import calibration.record", LAYERS),
    ("drivers/scpi.py", "import analysis.moments", LAYERS),
    ("conventions/frames.py", "import sequences.shot", LAYERS),
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize("path,line,contract", VIOLATIONS, ids=[f"{p}:{c[:20]}" for p, _, c in VIOLATIONS])
def test_a_deliberate_violation_breaks_its_contract(tree: Path, path: str, line: str, contract: str) -> None:
    f = tree / path
    original = f.read_text()
    f.write_text(original + "\n" + line + "\n")
    try:
        r = lint(tree)
    finally:
        f.write_text(original)
    assert r.returncode != 0, r.stdout
    broken = [ln for ln in r.stdout.splitlines() if ln.strip().endswith("BROKEN")]
    assert any(contract[:60] in " ".join(r.stdout.split()) for _ in broken), r.stdout[-3000:]
    assert f"{contract.split()[0]}" in r.stdout
