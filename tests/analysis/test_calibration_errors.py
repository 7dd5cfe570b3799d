"""The uncertainty of the subtracted detection noise in the corrected errors, and the warning
"calibration or analysis inconsistent" (a non-inferred product significantly below 1).

Count-table level (tests/analysis/spin_model.py, the exact binomial model of physics.md), 100
independent data sets as columns: detection noise of 40 % of the spin noise, estimated from only 30
atom-free readings, so its own uncertainty is a large part of the corrected errors.
"""
from __future__ import annotations

import numpy as np
import pytest

from analysis.criteria import DetectionNoise, evaluate
from tests.analysis.spin_model import coherent, sample

SETS = 100
SHOTS = 300           # per direction
NOISE_VAR = 10.0      # detection noise of S^A and S^B, hbar^2 (spin noise: 25 per region)
K_FREE = 30           # atom-free readings the noise is estimated from


def _data(seed: int):
    rng = np.random.default_rng(seed)
    d, n1a, n2a, n1b, n2b = sample(rng, coherent(200), SHOTS, 0.5, datasets=SETS)
    sd = 2 * np.sqrt(NOISE_VAR)                      # on N1: S = (N1 - N2)/2
    n1a = n1a + rng.normal(0, sd, n1a.shape)
    n1b = n1b + rng.normal(0, sd, n1b.shape)
    free = rng.normal(0, np.sqrt(NOISE_VAR), (2, K_FREE, SETS))
    va, vb = free.var(axis=1, ddof=1)
    c = ((free[0] - free[0].mean(0)) * (free[1] - free[1].mean(0))).sum(0) / (K_FREE - 1)
    return (d, n1a, n2a, n1b, n2b), DetectionNoise.from_samples(K_FREE, va, vb, c)


def test_sampling_covariance_of_the_noise_estimate_matches_monte_carlo():
    rng = np.random.default_rng(7)
    k, reps = 40, 20000
    cov_true = np.array([[3.0, 1.2], [1.2, 2.0]])
    x = rng.multivariate_normal([0, 0], cov_true, size=(reps, k))           # (reps, k, 2)
    s = np.einsum("rki,rkj->rij", x - x.mean(1, keepdims=True), x - x.mean(1, keepdims=True)) / (k - 1)
    est = np.stack([s[:, 0, 0], s[:, 1, 1], s[:, 0, 1]], axis=1)
    dn = DetectionNoise.from_samples(k, 3.0, 2.0, 1.2)
    np.testing.assert_allclose(np.cov(est.T), dn.covariance, rtol=0.05, atol=0.01)


def test_corrected_errors_cover_the_scatter_including_the_noise_uncertainty():
    counts, dn = _data(11)
    res = evaluate(*counts, detection_noise=dn)
    bare = evaluate(*counts, detection_noise=DetectionNoise(dn.var_a, dn.var_b, dn.cov_ab))
    assert res.corrected is not None and bare.corrected is not None
    for key in ("product_B", "E_EPR_AB", "E_Ent"):
        est, naive = res.corrected[key], bare.corrected[key]
        value = est.bias_corrected if est.test_error is not None else est.value
        err = est.error if est.test_error is None else est.test_error
        nerr = naive.error if naive.test_error is None else naive.test_error
        ratio = float(np.std(value, ddof=1) / np.mean(err))
        assert 0.8 < ratio < 1.2, (key, ratio)
        # without the noise's uncertainty the errors are far too small (the test can fail)
        assert float(np.std(value, ddof=1) / np.mean(nerr)) > 1.2, key


def test_a_mis_calibrated_noise_record_raises_the_inconsistency_warning():
    counts, dn = _data(12)
    good = evaluate(*counts, detection_noise=dn)
    assert good.corrected is not None
    assert good.corrected.inconsistent().mean() < 0.1            # ~5 % by chance at 95 %
    # a record that claims 2.5 times the real detection-noise variance (from 1000 atom-free
    # readings, so with a small uncertainty): the subtraction overshoots
    bad = evaluate(*counts, detection_noise=DetectionNoise.from_samples(
        1000, 2.5 * NOISE_VAR, 2.5 * NOISE_VAR, 0.0))
    assert bad.corrected is not None
    assert bad.corrected.inconsistent().mean() > 0.9
    i = int(np.argmax(bad.corrected.inconsistent()))
    warnings = bad.to_dict(i)["warnings"]
    assert any(w.startswith("corrected: calibration or analysis inconsistent") for w in warnings)
    assert not bad.inconsistent().any()                   # the raw counts are consistent
    ok = int(np.argmin(good.corrected.inconsistent()))
    assert good.to_dict(ok)["warnings"] == []
    assert bad.to_dict(i)["detection_noise"]["errors"]["var_a"] == pytest.approx(
        2.5 * NOISE_VAR * np.sqrt(2 / 999))
