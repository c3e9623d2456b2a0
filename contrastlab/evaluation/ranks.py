"""Methods compared over many datasets: average ranks, Friedman's test and the Nemenyi critical difference
(Demšar 2006, "Statistical comparisons of classifiers over multiple data sets", JMLR 7), the convention of the
UCR/UEA archive's papers.

On N datasets and k methods, each dataset ranks the methods (1 = the best score, ties share the mean of their
ranks) and R_j is method j's average rank. Friedman's statistic is

    chi2_F = 12 N / (k (k + 1)) * (sum_j R_j^2 - k (k + 1)^2 / 4),

chi-square with k - 1 degrees of freedom, and Iman and Davenport's F_F = (N - 1) chi2_F / (N (k - 1) - chi2_F)
is F-distributed with (k - 1, (k - 1)(N - 1)) degrees of freedom (Demšar's recommended form). Two methods differ
(Nemenyi's post-hoc test) when their average ranks differ by at least

    CD = q_alpha sqrt(k (k + 1) / (6 N)),

q_alpha the studentized range's upper alpha quantile for k groups (infinite degrees of freedom) over sqrt(2):
1.960, 2.343, 2.569, 2.728, 2.850 for k = 2..6 at alpha = 0.05 (Demšar's Table 5a). Pure functions of arrays:
the caller logs and draws them (evaluation/plots.py `cd_diagram`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def ranks(scores: np.ndarray) -> np.ndarray:
    """(N, k) scores, higher is better -> (N, k) ranks within each row: 1 the best, ties the mean of their ranks."""
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or np.isnan(scores).any():
        raise ValueError(f"ranks need an (N datasets, k methods) array with no missing score, got {scores.shape}")
    return rankdata(-scores, axis=1, method="average")


def friedman(average: np.ndarray, n: int) -> tuple[float, float, float, float]:
    """(chi2_F, its p-value, Iman-Davenport F_F, its p-value) of k average ranks over n datasets."""
    from scipy.stats import chi2, f

    k = len(average)
    statistic = 12 * n / (k * (k + 1)) * (float(np.sum(np.square(average))) - k * (k + 1) ** 2 / 4)
    p = float(chi2.sf(statistic, k - 1))
    denominator = n * (k - 1) - statistic
    if denominator <= 0:  # every dataset ranks the methods alike: F_F is unbounded
        return statistic, p, math.inf, 0.0
    f_statistic = (n - 1) * statistic / denominator
    return statistic, p, f_statistic, float(f.sf(f_statistic, k - 1, (k - 1) * (n - 1)))


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Nemenyi's q_alpha for k methods: the studentized range quantile (infinite df) over sqrt(2)."""
    from scipy.stats import studentized_range

    if k < 2:
        raise ValueError(f"a critical difference needs at least 2 methods, got {k}")
    return float(studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)


def critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi's CD for k methods over n datasets."""
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n))


def cliques(average: np.ndarray, cd: float) -> list[tuple[int, int]]:
    """Groups of methods not told apart: maximal runs (first, last) of the methods sorted by average rank whose
    ranks span less than `cd`, as positions in that sorted order; runs of one method are left out."""
    ordered = np.sort(np.asarray(average, dtype=float))
    runs = []
    for first in range(len(ordered)):
        last = first
        while last + 1 < len(ordered) and ordered[last + 1] - ordered[first] < cd:
            last += 1
        if last > first and not any(a <= first and last <= b for a, b in runs):
            runs.append((first, last))
    return runs


@dataclass
class Ranking:
    """Methods over datasets: their average ranks, Friedman's test and the Nemenyi CD."""

    methods: list[str]
    datasets: list[str]
    average: np.ndarray  # (k,) in the order of `methods`
    chi2: float
    p_value: float
    f_statistic: float
    f_p_value: float
    cd: float
    alpha: float

    def order(self) -> list[int]:
        """Method indices from the best average rank to the worst (ties in the given order)."""
        return sorted(range(len(self.methods)), key=lambda j: (self.average[j], j))

    def groups(self) -> list[tuple[int, int]]:
        """`cliques`: positions in `order()`."""
        return cliques(self.average, self.cd)


def rank_methods(scores: np.ndarray, methods: list[str], datasets: list[str], alpha: float = 0.05) -> Ranking:
    """Rank k methods (columns of `scores`) over N datasets (rows); higher scores are better."""
    scores = np.asarray(scores, dtype=float)
    if scores.shape != (len(datasets), len(methods)):
        raise ValueError(f"scores {scores.shape} do not match {len(datasets)} datasets x {len(methods)} methods")
    if len(datasets) < 2 or len(methods) < 2:
        raise ValueError(f"ranks need at least 2 datasets and 2 methods, got {len(datasets)} and {len(methods)}")
    average = ranks(scores).mean(axis=0)
    chi2, p, f_statistic, f_p = friedman(average, len(datasets))
    cd = critical_difference(len(methods), len(datasets), alpha)
    return Ranking(list(methods), list(datasets), average, chi2, p, f_statistic, f_p, cd, alpha)
