"""Linear-quadratic radiobiology: BED, EQD2 and iso-effective dose conversion."""

from __future__ import annotations

import math


def bed(fractions: int, dose_per_fraction_gy: float, alpha_beta: float) -> float:
    """Biologically effective dose ``n d (1 + d / (alpha/beta))`` in Gy."""
    _check(fractions, dose_per_fraction_gy, alpha_beta)
    return fractions * dose_per_fraction_gy * (1.0 + dose_per_fraction_gy / alpha_beta)


def eqd2(fractions: int, dose_per_fraction_gy: float, alpha_beta: float) -> float:
    """Equivalent dose in 2 Gy fractions ``BED / (1 + 2 / (alpha/beta))`` in Gy."""
    return bed(fractions, dose_per_fraction_gy, alpha_beta) / (1.0 + 2.0 / alpha_beta)


def isoeffective_total_dose(
    reference_total_gy: float,
    reference_dose_per_fraction_gy: float,
    fractions: int,
    alpha_beta: float,
) -> float:
    """Total dose in ``fractions`` fractions with the same BED as a reference course.

    Solves ``D (1 + D / (n alpha/beta)) = BED_ref`` for D. Used to convert a dose limit
    given for one fractionation (e.g. 2 Gy fractions) to the plan's, treating the limit
    as the dose a point receives in every fraction of the course.
    """
    if reference_total_gy <= 0:
        return 0.0
    reference_fractions = reference_total_gy / reference_dose_per_fraction_gy
    target = (
        reference_fractions
        * reference_dose_per_fraction_gy
        * (1.0 + reference_dose_per_fraction_gy / alpha_beta)
    )
    # n d^2 / ab + n d - target = 0 with D = n d:  D^2 / (n ab) + D - target = 0.
    a = 1.0 / (fractions * alpha_beta)
    return (-1.0 + math.sqrt(1.0 + 4.0 * a * target)) / (2.0 * a)


def _check(fractions: int, dose_per_fraction_gy: float, alpha_beta: float) -> None:
    if fractions < 1:
        raise ValueError(f"fractions must be at least 1, got {fractions}")
    if dose_per_fraction_gy < 0:
        raise ValueError(f"dose per fraction must not be negative, got {dose_per_fraction_gy}")
    if alpha_beta <= 0:
        raise ValueError(f"alpha/beta must be positive, got {alpha_beta}")
