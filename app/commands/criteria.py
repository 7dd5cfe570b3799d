"""Compute squeezing, entanglement and EPR-steering criteria from a CSV of region atom counts.

The CSV has a header with at least direction,N1A,N2A,N1B,N2B (direction x|y|z, atom numbers may be
floats); extra columns are ignored. Errors: delete-a-group jackknife (see docs/criteria.md).
"""
from __future__ import annotations

import argparse
import json
import sys

from analysis.counts import CountsFileError, read_counts_csv
from analysis.criteria import CERTIFYING, CriteriaError, CriteriaResult, DetectionNoise, evaluate
from app.offline.exports import explicit_columns

LABELS = {
    "N": "N (mean atom number)",
    "xi_R2": "xi_R^2 of A and B",
    "xi_R2_dB": "xi_R^2 [dB]",
    "E_Ent": "E_Ent (A,B entangled if < 1)",
    "E_EPR_AB": "E_EPR A->B (A steers B if < 1)",
    "E_EPR_BA": "E_EPR B->A (B steers A if < 1)",
    "product_A": "4 Var(SzA)Var(SyA)/<SxA>^2",
    "product_B": "4 Var(SzB)Var(SyB)/<SxB>^2",
}


def _det_noise(text: str) -> DetectionNoise:
    parts = text.split(",")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(
            f"--det-noise {text!r}: expected VAR_A,VAR_B[,COV_AB] in hbar^2")
    try:
        vals = [float(p) for p in parts]
        return DetectionNoise(vals[0], vals[1], vals[2] if len(vals) == 3 else 0.0)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--det-noise {text!r}: {exc}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("counts", metavar="COUNTS.csv", help="CSV: direction,N1A,N2A,N1B,N2B")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--det-noise", type=_det_noise, metavar="VAR_A,VAR_B[,COV_AB]",
                        help="detection-noise (co)variance of the regions' spin components "
                             "(hbar^2); corrected values are shown beside the raw ones")
    parser.add_argument("--confidence", type=float, default=0.95,
                        help="one-sided confidence level for certifying a criterion < 1")


def _num(v: float | None, spec: str = ".4g") -> str:
    """A number, or "nan" where it is undefined (constant counts, ...)."""
    return "nan" if v is None else format(v, spec)


def _cell(e: dict, confidence: float, certifying: bool) -> str:
    f = _num
    text = f"{f(e['value']):>10s} +- {f(e['error']):<9s} bias {f(e['bias']):<9s}"
    if certifying:
        verdict = "CERTIFIED" if e["certified"] else "not certified"
        text += (f" {f(e['sigma_below_1'])} sigma below 1 after bias, p={f(e['p_value'])} "
                 f"({verdict} at {confidence:.0%})")
    return text


def format_table(res: CriteriaResult, geometry: int = 0) -> str:
    """A readable table of every criterion with errors, bias and significance: the
    detection-noise corrected values first (with their own verdicts) when there are any, the raw
    ones beside them, as the window shows them."""
    d = res.to_dict(geometry)
    cor = d.get("corrected")
    lines = ["shots: " + ", ".join(f"{k}={v}" for k, v in d["n_shots"].items())
             + f"   errors: {d['error_method']}"]
    keys = ("N", "xi_R2", "xi_R2_dB", "E_Ent", "E_EPR_AB", "E_EPR_BA", "product_A", "product_B")
    raw = {k: _cell(d[k], res.confidence, k in CERTIFYING) for k in keys}
    if cor:
        first = {k: _cell(cor[k], res.confidence, k in CERTIFYING) for k in keys}
        width = max(len(v) for v in first.values())
        lines.append(f"{'quantity':34s} {'detection-noise corrected':{width}s} | raw")
        lines += [f"{LABELS[k]:34s} {first[k]:{width}s} | {raw[k]}" for k in keys]
    else:
        lines.append(f"{'quantity':34s} raw (no detection-noise estimate given)")
        lines += [f"{LABELS[k]:34s} {raw[k]}" for k in keys]
    for key in CERTIFYING:
        e = d[key]
        lines.append(f"optimal gains {key} (raw): g_z = {_num(e['g_z']['value'])} +- "
                     f"{_num(e['g_z']['error'], '.3g')}, g_y = {_num(e['g_y']['value'])} +- "
                     f"{_num(e['g_y']['error'], '.3g')}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if not 0.5 <= args.confidence < 1:
        print(f"steerlab criteria: --confidence {args.confidence} must be in [0.5, 1)",
              file=sys.stderr)
        return 2
    try:
        counts = read_counts_csv(args.counts)
        res = evaluate(counts.directions, counts.n1a, counts.n2a, counts.n1b, counts.n2b,
                       detection_noise=args.det_noise, confidence=args.confidence)
    except CountsFileError as exc:
        print(f"steerlab criteria: {exc}", file=sys.stderr)
        return 2
    except CriteriaError as exc:
        print(f"steerlab criteria: {args.counts}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res.to_dict(0) | {"columns": explicit_columns(res.to_dict(0))}, allow_nan=False))
    else:
        print(format_table(res))
    return 0
