"""Where steerlab finds its shipped configuration and plans."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def default_config() -> Path:
    """The shipped virtual-lab configuration."""
    return ROOT / "configs" / "virtual-lab.toml"


def default_plan() -> Path:
    """The shipped default plan (300 squeezed shots)."""
    return ROOT / "configs" / "plans" / "default.toml"
