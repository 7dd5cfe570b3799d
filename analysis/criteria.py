"""The criteria engine: squeezing, entanglement (E_Ent) and EPR steering (E_EPR) with honest errors.

Conventions (see docs/criteria.md)
----------------------------------
* S^R_d = (N^R_1 - N^R_2)/2 for region R in {A, B}, measured along the shot's direction d.
* Variances and covariances use ddof=1 over the shots of their direction; <S_x> is the mean over
  the x shots; N (for xi_R^2) is the mean total atom number N1A+N2A+N1B+N2B over all shots.
  The reported ``value`` is this plain estimate.
* Errors: delete-a-group jackknife with ``n_groups`` groups (default 20; the k-th shot of each
  direction belongs to group k mod n_groups). Chosen over a bootstrap because it needs no random
  numbers, and over the delete-one jackknife because the same group sums serve the live monitor
  with memory independent of the number of shots, so batch and streaming agree exactly.
* Bias: optimising g on the same data biases the minimised criteria low (about one standard error
  for E_Ent on a coherent state). For E_Ent and E_EPR the bias is ``value - E_split``, E_split the
  split-sample value of :mod:`analysis.crossfit` (gains fitted on one half of the groups, evaluated
  on the other), reported with its own jackknife error ``test_error``; for other quantities it is
  the jackknife bias (n_groups - 1)(mean of leave-group-out values - value). Reported as ``bias``
  and ``bias_corrected = value - bias``; the significance of a violation uses the corrected value:
  ``sigma = -ln(bias_corrected) / (error/bias_corrected)`` and a one-sided normal ``p_value``
  for "true value >= 1" (on ln E, which is nearly normal; see Estimate.sigma_below_one).
  A criterion is ``certified`` when p_value < 1 - confidence (default confidence 0.95).
* Crosstalk guard (imaging resolution): a result may carry per geometry the lowest value each
  criterion can take for a coherent state seen through the imaging alone (``crosstalk_bounds``,
  from :func:`analysis.crosstalk.imaging_crosstalk_bounds`). The verdict is then
  "certified" only when the value is significantly below 1 *and* below that bound (the same
  one-sided test on ln E against ln bound); a value significantly below 1 but not below the bound is
  "unresolved": crosstalk alone could produce it. Where the bound is below RESOLUTION_FLOOR (0.5)
  or NaN the geometry is "unresolved" whatever the data (e.g. 2 px patterns under a 1.4 px blur:
  about half the atoms counted in both regions; the values then replay the imaging model).
  Corrected values have their own bounds (N_AB in full and the smearing the correction leaves).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

from analysis.crossfit import split_sample_criteria
from analysis.formulas import all_criteria
from analysis.moments import (DEFAULT_GROUPS, DIRECTION_INDEX, DIRECTIONS, F_N, GroupedSums,
                              Moments, spin_components)
from analysis.noise import DetectionNoise

#: Criteria whose violation (< 1) certifies something; they get significance fields.
CERTIFYING = ("E_Ent", "E_EPR_AB", "E_EPR_BA")
CERTIFIED, UNRESOLVED, NOT_CERTIFIED = "certified", "unresolved", "not certified"
#: A geometry whose crosstalk alone takes a coherent state's criterion below this value is
#: "unresolved" whatever the data: its values then measure the imaging model, not the state.
RESOLUTION_FLOOR = 0.5
#: Quantities reported with errors, in output order.
QUANTITIES = ("E_Ent", "E_EPR_AB", "E_EPR_BA", "product_A", "product_B", "xi_R2", "xi_R2_dB", "N")
GAINS = {"E_Ent": ("E_Ent.g_z", "E_Ent.g_y"), "E_EPR_AB": ("E_EPR_AB.g_z", "E_EPR_AB.g_y"),
         "E_EPR_BA": ("E_EPR_BA.g_z", "E_EPR_BA.g_y")}
MIN_SHOTS = 3
BIAS_JACKKNIFE = "jackknife"
BIAS_SPLIT = "split-sample"


class CriteriaError(ValueError):
    """The shots cannot give the criteria (too few shots in a direction, no x shots, bad values)."""


@dataclass(frozen=True)
class Estimate:
    """A quantity per geometry: plain value, jackknife error and bias (arrays of shape (G,))."""

    value: NDArray[np.float64]
    error: NDArray[np.float64]
    bias: NDArray[np.float64]
    bias_method: str = "jackknife"
    #: for optimised criteria: the jackknife error of the split-sample value ``value - bias``,
    #: used for the significance test (None: the plain jackknife error is used)
    test_error: NDArray[np.float64] | None = None

    @property
    def bias_corrected(self) -> NDArray[np.float64]:
        return self.value - self.bias

    @property
    def bias_corrected_error(self) -> NDArray[np.float64]:
        """The error that goes with ``bias_corrected``: the split-sample error where the value was
        optimised over its split, else the plain jackknife error."""
        return self.error if self.test_error is None else self.test_error

    def shown(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(value, error) as plots and the convergence history show it: a criterion optimised over
        its gains sits about one error low, so it is shown bias-corrected (split-sample) with the
        error that goes with it, as in the paper's figures; any other quantity as it is."""
        if self.test_error is not None:
            return self.bias_corrected, self.test_error
        return self.value, self.error

    def sigma_below_one(self) -> NDArray[np.float64]:
        """How many standard errors the bias-corrected value lies below 1 (negative: above).

        Computed on ln E: the criteria are products of variance estimates, whose distributions
        are skewed; ln E is nearly normal with error err/E (NaN where E <= 0).
        """
        return self.sigma_below(1.0)

    def sigma_below(self, reference: ArrayLike) -> NDArray[np.float64]:
        """Standard errors (on ln E) by which the bias-corrected value lies below ``reference``
        (a number or one per geometry); NaN where E <= 0 or reference <= 0 or NaN."""
        err = self.error if self.test_error is None else self.test_error
        e = self.bias_corrected
        ref = np.asarray(reference, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where((e > 0) & (ref > 0), (np.log(ref) - np.log(e)) * e / err, np.nan)

    def p_value(self, reference: ArrayLike = 1.0) -> NDArray[np.float64]:
        """One-sided normal p-value of the hypothesis "true value >= reference" (default 1);
        NaN counts as 1."""
        p = ndtr(-self.sigma_below(reference))
        return np.where(np.isnan(p), 1.0, p)


@dataclass
class CriteriaResult:
    """All criteria for G geometries (and optionally detection-noise-corrected ones)."""

    estimates: dict[str, Estimate]
    gains: dict[str, Estimate]
    n_shots: dict[str, int]
    n_groups: int
    confidence: float = 0.95
    corrected: "CriteriaResult | None" = None
    detection_noise: DetectionNoise | None = None
    extra: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    #: per certifying criterion, (G,): the lowest value crosstalk alone gives a coherent state
    #: (None: no imaging information, no guard)
    crosstalk_bounds: dict[str, NDArray[np.float64]] | None = None

    def __getitem__(self, name: str) -> Estimate:
        return self.estimates[name]

    @property
    def n_geometries(self) -> int:
        return int(self.estimates["E_Ent"].value.shape[0])

    def inconsistent(self) -> NDArray[np.bool_]:
        """Per geometry: True where a result no state can give is significant at the configured
        confidence: a non-inferred uncertainty product 4 Var(S^R_z) Var(S^R_y)/<S^R_x>^2 below 1
        (Heisenberg's bound for region R alone), tested like a violation (bias-corrected value,
        one-sided p-value on ln E), or <= 0 (a variance below zero). It means the calibration (detection noise, PSF, blur, atom
        number scale) or the analysis is wrong, never a physical effect."""
        bad = np.zeros(self.n_geometries, dtype=bool)
        for name in ("product_A", "product_B"):
            bad |= self._below_physics(name)
        return bad

    def _below_physics(self, name: str) -> NDArray[np.bool_]:
        est = self.estimates[name]
        with np.errstate(invalid="ignore"):
            # a product <= 0 is a variance below zero: as impossible as a product below 1
            return (est.p_value() < 1.0 - self.confidence) | (est.value <= 0)

    def warnings(self, geometry: int = 0) -> list[str]:
        """Readable warnings of one geometry ("calibration or analysis inconsistent: ...")."""
        out = []
        for name in ("product_A", "product_B"):
            est = self.estimates[name]
            if self._below_physics(name)[geometry]:
                out.append(f"calibration or analysis inconsistent: {name} = "
                           f"{float(est.value[geometry]):.3f} +- {float(est.error[geometry]):.3f} "
                           f"is significantly below 1, which no state can give "
                           f"(p = {float(est.p_value()[geometry]):.2g})")
        return out

    def violated(self, name: str) -> NDArray[np.bool_]:
        """True where criterion ``name`` is below 1 at the configured confidence, bias included
        (crosstalk not considered)."""
        return self.estimates[name].p_value() < (1.0 - self.confidence)

    def crosstalk_p_value(self, name: str) -> NDArray[np.float64] | None:
        """p-value of "true value >= the crosstalk bound" (None without bounds)."""
        if self.crosstalk_bounds is None:
            return None
        return self.estimates[name].p_value(self.crosstalk_bounds[name])

    def resolved(self, name: str) -> NDArray[np.bool_]:
        """True where the value is significantly below what crosstalk alone can produce (True
        everywhere without bounds)."""
        p = self.crosstalk_p_value(name)
        if p is None or self.crosstalk_bounds is None:
            return np.ones(self.n_geometries, dtype=bool)
        with np.errstate(invalid="ignore"):
            return (p < (1.0 - self.confidence)) & (self.crosstalk_bounds[name] >= RESOLUTION_FLOOR)

    def certified(self, name: str) -> NDArray[np.bool_]:
        """True where criterion ``name`` is below 1 and below its crosstalk bound at the
        configured confidence, bias included: the one verdict rule (module docstring)."""
        return self.violated(name) & self.resolved(name)

    def verdicts(self, name: str) -> NDArray[np.str_]:
        """Per geometry: "certified", "unresolved" (below 1, but crosstalk alone could produce
        it) or "not certified"."""
        v = self.violated(name)
        return np.where(v & self.resolved(name), CERTIFIED,
                        np.where(v, UNRESOLVED, NOT_CERTIFIED))

    def to_dict(self, geometry: int = 0) -> dict[str, Any]:
        """One geometry's numbers as plain JSON-ready Python values."""
        def num(x: Any) -> float | None:
            x = float(x)
            return x if math.isfinite(x) else None

        out: dict[str, Any] = {}
        for name, est in self.estimates.items():
            entry: dict[str, Any] = {"value": num(est.value[geometry]),
                                     "error": num(est.error[geometry]),
                                     "bias": num(est.bias[geometry]),
                                     "bias_method": est.bias_method,
                                     "bias_corrected": num(est.bias_corrected[geometry])}
            if est.test_error is not None:
                entry["split_sample_error"] = num(est.test_error[geometry])
            if name in CERTIFYING:
                entry["sigma_below_1"] = num(est.sigma_below_one()[geometry])
                entry["p_value"] = num(est.p_value()[geometry])
                entry["certified"] = bool(self.certified(name)[geometry])
                entry["verdict"] = str(self.verdicts(name)[geometry])
                if self.crosstalk_bounds is not None:
                    pc = self.crosstalk_p_value(name)
                    assert pc is not None
                    entry["crosstalk_bound"] = num(self.crosstalk_bounds[name][geometry])
                    entry["crosstalk_p_value"] = num(pc[geometry])
                gz, gy = (self.gains[k] for k in GAINS[name])
                entry["g_z"] = {"value": num(gz.value[geometry]), "error": num(gz.error[geometry])}
                entry["g_y"] = {"value": num(gy.value[geometry]), "error": num(gy.error[geometry])}
            out[name] = entry
        out["warnings"] = self.warnings(geometry)
        out["n_shots"] = dict(self.n_shots)
        out["confidence"] = self.confidence
        out["error_method"] = f"delete-a-group jackknife, {self.n_groups} groups"
        if self.corrected is not None and self.detection_noise is not None:
            va, vb, cab = self.detection_noise.at(geometry)
            out["detection_noise"] = {"var_a": va, "var_b": vb, "cov_ab": cab}
            cor = self.corrected.to_dict(geometry)
            out["corrected"] = {k: v for k, v in cor.items() if k in self.estimates}
            out["warnings"] = out["warnings"] + [f"corrected: {w}" for w in cor["warnings"]]
            if self.detection_noise.covariance is not None:
                c = np.broadcast_to(np.asarray(self.detection_noise.covariance, float),
                                    (self.n_geometries, 3, 3))[geometry]
                out["detection_noise"]["errors"] = {
                    "var_a": float(np.sqrt(c[0, 0])), "var_b": float(np.sqrt(c[1, 1])),
                    "cov_ab": float(np.sqrt(c[2, 2]))}
        return out


def _estimate(sums: GroupedSums, detection_noise: DetectionNoise | None) -> dict[str, Estimate]:
    total = Moments.from_sums(sums.total())
    loo = Moments.from_sums(sums.leave_one_group_out())
    # per geometry: floats, or arrays of one (co)variance per geometry (hbar^2)
    det: tuple[float | NDArray[np.float64], ...] = (0.0, 0.0, 0.0)
    if detection_noise is not None:
        det = (detection_noise.var_a, detection_noise.var_b, detection_noise.cov_ab)
        total = total.corrected(*det)
        loo = loo.corrected(*det)
    full, rep = all_criteria(total), all_criteria(loo)
    cv = split_sample_criteria(sums, det)
    # groups that are empty in every direction do not count as jackknife replicates
    used = sums.sums[:, :, 0, F_N].sum(axis=0) > 0  # (n_groups,)
    k_used = int(used.sum())
    out: dict[str, Estimate] = {}
    with np.errstate(invalid="ignore", over="ignore"):
        for name, value in full.items():
            r = rep[name][used]
            mean_r = r.mean(axis=0)
            err = np.sqrt((k_used - 1) / k_used * ((r - mean_r) ** 2).sum(axis=0))
            if name in cv:
                cv_value, cv_err = cv[name]
                out[name] = Estimate(np.asarray(value, float), np.asarray(err, float),
                                     np.asarray(value - cv_value, float), BIAS_SPLIT,
                                     np.asarray(cv_err, float))
            else:
                bias = (k_used - 1) * (mean_r - value)
                out[name] = Estimate(np.asarray(value, float), np.asarray(err, float),
                                     np.asarray(bias, float), BIAS_JACKKNIFE)
    if detection_noise is not None and detection_noise.covariance is not None:
        out = _with_noise_uncertainty(out, Moments.from_sums(sums.total()), detection_noise)
    return out


def _with_noise_uncertainty(est: dict[str, Estimate], total: Moments, noise: DetectionNoise
                            ) -> dict[str, Estimate]:
    """Errors with the uncertainty of the subtracted noise added in quadrature: J C J^T, J the
    derivatives of each quantity with respect to (var_a, var_b, cov_ab) by central differences
    on the whole-run moments (the criteria engine itself, all_criteria), C ``noise.covariance``."""
    assert noise.covariance is not None
    shape = total.var_z_a.shape
    base = np.stack([np.broadcast_to(np.asarray(v, dtype=np.float64), shape)
                     for v in (noise.var_a, noise.var_b, noise.cov_ab)])
    cov = np.broadcast_to(np.asarray(noise.covariance, float), total.var_z_a.shape + (3, 3))
    scale = np.sqrt(np.maximum(np.abs(total.var_z_a * total.var_z_b), 1e-12))
    h = 1e-4 * scale
    jac: dict[str, list[NDArray[np.float64]]] = {}
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for i in range(3):
            lo, hi = base.copy(), base.copy()
            lo[i] -= h
            hi[i] += h
            f_lo, f_hi = all_criteria(total.corrected(*lo)), all_criteria(total.corrected(*hi))
            for name in est:
                jac.setdefault(name, []).append((f_hi[name] - f_lo[name]) / (2 * h))
        out = {}
        for name, e in est.items():
            j = np.stack(jac[name], axis=-1)                  # (G, 3)
            extra = np.einsum("gi,gij,gj->g", j, cov, j)
            extra = np.where(np.isfinite(extra), np.maximum(extra, 0.0), 0.0)
            test = None if e.test_error is None else np.sqrt(e.test_error ** 2 + extra)
            out[name] = Estimate(e.value, np.sqrt(e.error ** 2 + extra), e.bias, e.bias_method,
                                 test)
    return out


def _check_counts(sums: GroupedSums) -> dict[str, int]:
    n = {d: int(sums.counts[i]) for i, d in enumerate(DIRECTIONS)}
    if n["x"] == 0:
        raise CriteriaError("no x shots: <S_x> (the denominator of every criterion) is undefined")
    few = [d for d in DIRECTIONS if n[d] < MIN_SHOTS]
    if few:
        raise CriteriaError("too few shots: " + ", ".join(f"{d} has {n[d]}" for d in few)
                            + f" (at least {MIN_SHOTS} per direction are needed)")
    return n


def _check_bounds(bounds: dict[str, ArrayLike] | None, n_geometries: int
                  ) -> dict[str, NDArray[np.float64]] | None:
    if bounds is None:
        return None
    out = {}
    for name in CERTIFYING:
        if name not in bounds:
            raise ValueError(f"crosstalk_bounds needs {', '.join(CERTIFYING)}; {name} is missing")
        b = np.broadcast_to(np.asarray(bounds[name], dtype=np.float64), (n_geometries,)).copy()
        out[name] = b
    return out


def result_from_sums(sums: GroupedSums, *, detection_noise: DetectionNoise | None = None,
                     confidence: float = 0.95,
                     crosstalk_bounds: dict[str, ArrayLike] | None = None,
                     corrected_crosstalk_bounds: dict[str, ArrayLike] | None = None
                     ) -> CriteriaResult:
    """Criteria, errors and biases from grouped power sums (shared by batch and streaming).

    ``crosstalk_bounds``: per certifying criterion, a number or (G,) array, the value crosstalk
    alone gives a coherent state in the raw counts (analysis.crosstalk.imaging_crosstalk_bounds);
    with it, a violation that crosstalk could produce is "unresolved", not "certified".
    ``corrected_crosstalk_bounds``: the same for the detection-noise corrected values (default:
    ``crosstalk_bounds``).
    """
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")
    bounds = _check_bounds(crosstalk_bounds, sums.n_geometries)
    cor_bounds = _check_bounds(corrected_crosstalk_bounds, sums.n_geometries)
    cor_bounds = bounds if cor_bounds is None else cor_bounds
    n = _check_counts(sums)
    raw = _estimate(sums, None)
    est = {k: raw[k] for k in QUANTITIES}
    gains = {g: raw[g] for pair in GAINS.values() for g in pair}
    extra = {"splitting_ratio_x": raw["splitting_ratio_x"].value}
    res = CriteriaResult(est, gains, n, sums.n_groups, confidence, extra=extra,
                         crosstalk_bounds=bounds)
    if detection_noise is not None:
        cor = _estimate(sums, detection_noise)
        res.corrected = CriteriaResult({k: cor[k] for k in QUANTITIES},
                                       {g: cor[g] for pair in GAINS.values() for g in pair},
                                       n, sums.n_groups, confidence, crosstalk_bounds=cor_bounds)
        res.detection_noise = detection_noise
    return res


def _direction_indices(directions: ArrayLike) -> NDArray[np.intp]:
    dirs = np.asarray(directions)
    try:
        return np.array([DIRECTION_INDEX[str(d).strip().lower()] for d in dirs.ravel()],
                        dtype=np.intp)
    except KeyError as exc:
        raise CriteriaError(f"unknown direction {exc.args[0]!r}: expected x, y or z") from None


def _as_counts(name: str, v: ArrayLike, n_shots: int) -> NDArray[np.float64]:
    a = np.asarray(v, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] != n_shots:
        raise CriteriaError(f"{name} must have shape (shots,) or (shots, geometries) with "
                            f"{n_shots} shots, got {np.shape(v)}")
    if not np.all(np.isfinite(a)):
        bad = int(np.argwhere(~np.isfinite(a))[0][0])
        raise CriteriaError(f"{name} of shot {bad} is not finite: {a[bad].tolist()}")
    return a


def evaluate(directions: ArrayLike, n1a: ArrayLike, n2a: ArrayLike, n1b: ArrayLike,
             n2b: ArrayLike, *, detection_noise: DetectionNoise | None = None,
             confidence: float = 0.95, n_groups: int = DEFAULT_GROUPS,
             crosstalk_bounds: dict[str, ArrayLike] | None = None,
             corrected_crosstalk_bounds: dict[str, ArrayLike] | None = None) -> CriteriaResult:
    """Batch criteria from shots in acquisition order.

    ``directions``: (S,) of 'x'|'y'|'z'; atom numbers (atoms, floats allowed) of shape (S,) for one
    region geometry or (S, G) for G geometries. Returns estimates of shape (G,).
    ``crosstalk_bounds``, ``corrected_crosstalk_bounds``: see :func:`result_from_sums`.
    """
    d = _direction_indices(directions)
    arrays = [_as_counts(nm, v, d.size) for nm, v in
              zip(("N1A", "N2A", "N1B", "N2B"), (n1a, n2a, n1b, n2b))]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise CriteriaError(f"N1A, N2A, N1B, N2B must have the same shape, got {sorted(shapes)}")
    sa, sb, ntot = spin_components(*arrays)
    sums = GroupedSums.empty(sa.shape[1], n_groups)
    sums.add_shots(d, sa, sb, ntot)
    return result_from_sums(sums, detection_noise=detection_noise, confidence=confidence,
                            crosstalk_bounds=crosstalk_bounds,
                            corrected_crosstalk_bounds=corrected_crosstalk_bounds)


class StreamingCriteria:
    """Live accumulators for G region geometries at once: O(G) work per shot, O(G) memory.

    Gives the same numbers as :func:`evaluate` on the same shots in the same order.
    """

    def __init__(self, n_geometries: int, *, n_groups: int = DEFAULT_GROUPS,
                 detection_noise: DetectionNoise | None = None, confidence: float = 0.95,
                 crosstalk_bounds: dict[str, ArrayLike] | None = None,
                 corrected_crosstalk_bounds: dict[str, ArrayLike] | None = None) -> None:
        self._sums = GroupedSums.empty(n_geometries, n_groups)
        self.detection_noise = detection_noise
        self.confidence = confidence
        #: see result_from_sums; may be set once the mean images are known
        self.crosstalk_bounds = crosstalk_bounds
        self.corrected_crosstalk_bounds = corrected_crosstalk_bounds

    @property
    def n_geometries(self) -> int:
        return self._sums.n_geometries

    @property
    def n_shots(self) -> dict[str, int]:
        return {d: int(self._sums.counts[i]) for i, d in enumerate(DIRECTIONS)}

    def add(self, direction: str, n1a: ArrayLike, n2a: ArrayLike, n1b: ArrayLike,
            n2b: ArrayLike) -> None:
        """Add one shot: atom numbers of shape (G,) (or scalars when G = 1), in atoms."""
        d = str(direction).strip().lower()
        if d not in DIRECTION_INDEX:
            raise CriteriaError(f"unknown direction {direction!r}: expected x, y or z")
        vals = [np.broadcast_to(np.asarray(v, dtype=np.float64), (self.n_geometries,))
                for v in (n1a, n2a, n1b, n2b)]
        if not all(np.all(np.isfinite(v)) for v in vals):
            raise CriteriaError(f"non-finite atom number in shot: {[v.tolist() for v in vals]}")
        sa, sb, ntot = spin_components(*vals)
        self._sums.add_shot(d, sa, sb, ntot)

    def ready(self) -> bool:
        """Whether enough shots arrived for :meth:`result` (>= 3 per direction)."""
        return bool(np.all(self._sums.counts >= MIN_SHOTS))

    def result(self) -> CriteriaResult:
        """Current criteria with errors; raises CriteriaError while not :meth:`ready`."""
        return result_from_sums(self._sums, detection_noise=self.detection_noise,
                                confidence=self.confidence, crosstalk_bounds=self.crosstalk_bounds,
                                corrected_crosstalk_bounds=self.corrected_crosstalk_bounds)
