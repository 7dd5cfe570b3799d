"""One naming of exported criteria, everywhere (analyze CSV/JSON, criteria --json, run --json):
per quantity the detection-noise corrected values first, then the raw ones, with explicit names.

``explicit_columns(entry)`` takes one geometry's criteria as ``CriteriaResult.to_dict(i)`` gives
them (raw at top level, corrected under ``"corrected"``) and returns, for N, xi_R2, xi_R2_dB,
E_Ent, E_EPR_AB, E_EPR_BA, product_A, product_B: ``{q}_corrected``, ``{q}_corrected_error``,
``{q}_corrected_bias`` (+ ``_p_value``, ``_verdict`` for the three criteria; a verdict is
"certified", "unresolved" (crosstalk alone could produce the violation) or "not certified"), then ``{q}_raw``,
... . Corrected values are None where there is no detection-noise estimate.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

QUANTITIES = ("N", "xi_R2", "xi_R2_dB", "E_Ent", "E_EPR_AB", "E_EPR_BA", "product_A", "product_B")
CERTIFYING = ("E_Ent", "E_EPR_AB", "E_EPR_BA")
VERDICTS = {True: "certified", False: "not certified"}


def verdict_of(entry: Mapping[str, Any]) -> str | None:
    """"certified", "unresolved" or "not certified" of one criterion's entry (None: none)."""
    if entry.get("verdict") is not None:
        return str(entry["verdict"])
    certified = entry.get("certified")
    return VERDICTS.get(certified) if certified is not None else None


def explicit_columns(entry: Mapping[str, Any],
                     quantities: tuple[str, ...] = QUANTITIES) -> dict[str, Any]:
    """The flat, explicitly named values of one geometry's criteria (corrected first)."""
    corrected = entry.get("corrected") or {}
    out: dict[str, Any] = {}
    for q in quantities:
        for variant, e in (("corrected", corrected.get(q)), ("raw", entry.get(q))):
            name = f"{q}_{variant}"
            e = e if isinstance(e, Mapping) else None
            out[name] = e.get("value") if e else None
            out[name + "_error"] = e.get("error") if e else None
            out[name + "_bias"] = e.get("bias") if e else None
            if q in CERTIFYING:
                out[name + "_p_value"] = e.get("p_value") if e else None
                out[name + "_verdict"] = verdict_of(e) if e else None
    return out
