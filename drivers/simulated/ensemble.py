"""Many shots' truths at once (no images): measurement outcomes and true region counts, vectorised.

Statistically identical to repeating simulate_shot(..., render=False) with the same configuration and
pulses, but not draw-for-draw identical (the random numbers are consumed in a different order). Use it
for statistics over thousands of shots; use simulate_shot for reproducible single shots with frames.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from drivers.simulated.atoms import (Exposures, SimulationConfig, apply_pulse_noise, draw_atom_number,
                                     prepared_state)
from drivers.simulated.cloud import cloud_geometry, count_in_masks_batched, sample_positions
from drivers.simulated.spin import RabiPulse, outcome_probabilities, rotate, rotate_z

__all__ = ["EnsembleOutcomes", "sample_outcomes", "sample_region_counts"]


@dataclass(frozen=True)
class EnsembleOutcomes:
    """Per-shot atom number N and measured N1 (arrays of length n_shots); N2 = N - N1."""

    n_atoms: np.ndarray
    n1: np.ndarray

    @property
    def n2(self) -> np.ndarray:
        return self.n_atoms - self.n1

    @property
    def m(self) -> np.ndarray:
        """Measured S_z = (N1 - N2)/2 per shot."""
        return self.n1 - self.n_atoms / 2.0


def _sample_from(p: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    return np.searchsorted(cdf, rng.random(size), side="right").astype(np.int64)


def sample_outcomes(config: SimulationConfig, *, rng: np.random.Generator, n_shots: int,
                    pulses: Sequence[RabiPulse] = ()) -> EnsembleOutcomes:
    """Measured (N, N1) for n_shots shots with the given nominal pulses (technical noise per config).

    Without technical noise every shot shares one outcome distribution (sampled at once); otherwise
    each shot gets its own N, dephasing angle and noisy pulses, exactly as in simulate_shot.
    """
    if n_shots < 1:
        raise ValueError(f"n_shots must be >= 1, got {n_shots!r}")
    spin = config.spin
    pulses = tuple(pulses)
    if spin.noiseless:
        psi = prepared_state(spin, spin.atom_number_mean)
        for p in pulses:
            psi = rotate(psi, p)
        n1 = _sample_from(outcome_probabilities(psi), rng, n_shots)
        return EnsembleOutcomes(np.full(n_shots, spin.atom_number_mean, dtype=np.int64), n1)
    n_atoms = np.empty(n_shots, dtype=np.int64)
    n1 = np.empty(n_shots, dtype=np.int64)
    for k in range(n_shots):
        n = draw_atom_number(spin, rng)
        dephasing = float(rng.normal(0.0, spin.dephasing_rms_rad)) if spin.dephasing_rms_rad > 0 else 0.0
        psi = prepared_state(spin, n)
        if dephasing:
            psi = rotate_z(psi, dephasing)
        for p in pulses:
            psi = rotate(psi, apply_pulse_noise(spin, p, rng))
        n_atoms[k] = n
        n1[k] = _sample_from(outcome_probabilities(psi), rng, 1)[0]
    return EnsembleOutcomes(n_atoms, n1)


def sample_region_counts(config: SimulationConfig, *, rng: np.random.Generator, outcomes: EnsembleOutcomes,
                         masks1: np.ndarray, masks2: np.ndarray, exposures: Exposures | None = None,
                         chunk_shots: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """True counts per shot in each mask: (counts1 (n_shots, k1), counts2 (n_shots, k2)).

    Positions of the N1 (N2) atoms of each shot are drawn from the |1> (|2>) cloud at its exposure time;
    masks1/masks2 are boolean (k, H, W) stacks for the |1> and |2> images.
    """
    exposures = exposures if exposures is not None else Exposures()
    geom = {1: cloud_geometry(config.cloud, exposures.atoms1_time_s),
            2: cloud_geometry(config.cloud, exposures.atoms2_time_s)}
    masks = {1: np.asarray(masks1, dtype=bool), 2: np.asarray(masks2, dtype=bool)}
    numbers = {1: outcomes.n1, 2: outcomes.n2}
    n_shots = outcomes.n1.size
    result = {}
    for state in (1, 2):
        if masks[state].ndim != 3:
            raise ValueError(f"masks{state} must have shape (k, H, W), got {masks[state].shape}")
        out = np.empty((n_shots, masks[state].shape[0]), dtype=np.int64)
        for start in range(0, n_shots, chunk_shots):
            counts = numbers[state][start:start + chunk_shots]
            positions = sample_positions(geom[state], int(counts.sum()), rng)
            shot_index = np.repeat(np.arange(counts.size), counts)
            out[start:start + counts.size] = count_in_masks_batched(positions, shot_index, counts.size, masks[state])
        result[state] = out
    return result[1], result[2]
