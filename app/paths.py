"""Where steerlab finds its shipped configuration and plans, and where the shipped virtual lab
writes its runs.

The configurations and plans are package data of ``app.configs`` (importlib.resources), so they
are the same files in a checkout (``configs/`` links to ``app/configs/``) and in an installed
wheel. In a checkout the shipped virtual-lab configuration is used as it is (runs go to ``runs/`` of
the checkout). An installed steerlab cannot write next to its own package, so on first use it
copies that configuration to ``$XDG_CONFIG_HOME/steerlab/virtual-lab.toml`` (default
``~/.config/steerlab``) with ``data_dir`` set to ``$XDG_DATA_HOME/steerlab/runs`` (default
``~/.local/share/steerlab/runs``); the copy is the user's to edit and is never overwritten.
"""
from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path

from app.labconfig import LabConfigError

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "app.configs"


def shipped(*parts: str) -> Path:
    """A file shipped in ``app.configs`` (a real file: the package is installed unzipped)."""
    return Path(str(resources.files(PACKAGE).joinpath(*parts)))


def in_checkout() -> bool:
    """True when steerlab runs from its source checkout (editable install or PYTHONPATH)."""
    return (ROOT / "pyproject.toml").is_file() and shipped().resolve().is_relative_to(ROOT)


def _xdg(name: str, default: str) -> Path:
    value = os.environ.get(name, "")
    return Path(value) if value and Path(value).is_absolute() else Path.home() / default


def user_config_dir() -> Path:
    """``$XDG_CONFIG_HOME/steerlab`` (default ``~/.config/steerlab``)."""
    return _xdg("XDG_CONFIG_HOME", ".config") / "steerlab"


def user_data_dir() -> Path:
    """``$XDG_DATA_HOME/steerlab`` (default ``~/.local/share/steerlab``)."""
    return _xdg("XDG_DATA_HOME", ".local/share") / "steerlab"


def default_config() -> Path:
    """The virtual-lab configuration the commands use when none is given (see the module doc)."""
    packaged = shipped("virtual-lab.toml")
    if in_checkout():
        return packaged
    user = user_config_dir() / "virtual-lab.toml"
    if not user.is_file():
        text = packaged.read_text(encoding="utf-8")
        runs = json.dumps(str(user_data_dir() / "runs"))     # a TOML basic string is a JSON string
        text, n = re.subn(r'(?m)^data_dir = "[^"\n]*".*$',
                          lambda m: f"data_dir = {runs}   # run files are written only inside this directory",
                          text, count=1)
        if n != 1:
            raise LabConfigError(f"{packaged}: no data_dir line to point at {runs}")
        try:
            user.parent.mkdir(parents=True, exist_ok=True)
            tmp = user.with_name(f".{user.name}.{os.getpid()}")
            tmp.write_text(f"# copied by steerlab from {packaged}; yours to edit\n{text}", encoding="utf-8")
            tmp.replace(user)
        except OSError as exc:
            raise LabConfigError(f"{user}: cannot create the user's copy of the virtual-lab configuration "
                                 f"({exc.strerror or exc}); give --config FILE") from None
    return user


def default_plan() -> Path:
    """The shipped default plan (300 squeezed shots)."""
    return shipped("plans", "default.toml")
