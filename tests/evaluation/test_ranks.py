"""Average ranks, Friedman's test and the Nemenyi critical difference against figures computed by hand and
against Demšar's (2006) worked example and table."""

from __future__ import annotations

import numpy as np
import pytest

from contrastlab.evaluation.ranks import cliques, critical_difference, friedman, nemenyi_q, rank_methods, ranks

# accuracies of methods A, B, C on four datasets; the second dataset ties A and B
SCORES = np.array([[0.90, 0.80, 0.70], [0.85, 0.85, 0.60], [0.70, 0.90, 0.80], [0.95, 0.90, 0.50]])


def test_ranks_put_the_best_first_and_share_ties():
    assert ranks(SCORES).tolist() == [[1, 2, 3], [1.5, 1.5, 3], [3, 1, 2], [1, 2, 3]]
    with pytest.raises(ValueError, match="no missing score"):
        ranks(np.array([[0.9, np.nan]]))


def test_a_ranking_by_hand():
    ranking = rank_methods(SCORES, ["A", "B", "C"], ["d1", "d2", "d3", "d4"])
    assert ranking.average.tolist() == [1.625, 1.625, 2.75]
    # chi2_F = 12 * 4 / (3 * 4) * (1.625^2 + 1.625^2 + 2.75^2 - 3 * 16 / 4) = 4 * 0.84375
    assert ranking.chi2 == pytest.approx(3.375)
    assert ranking.f_statistic == pytest.approx(3 * 3.375 / (4 * 2 - 3.375))  # (N-1) chi2 / (N (k-1) - chi2)
    assert ranking.cd == pytest.approx(2.343 * (3 * 4 / (6 * 4)) ** 0.5, abs=1e-3)
    assert ranking.order() == [0, 1, 2] and ranking.groups() == [(0, 2)]  # 2.75 - 1.625 < CD 1.66: one group
    with pytest.raises(ValueError, match="at least 2 datasets"):
        rank_methods(SCORES[:1], ["A", "B", "C"], ["d1"])


def test_demsar_s_worked_example():
    """Demšar 2006, section 3.2.2: four classifiers over 14 datasets with average ranks 3.143, 2.000, 2.893 and
    1.964 give chi2_F = 9.28 and F_F = 3.69; section 3.2.3: CD = 2.569 sqrt(4 * 5 / (6 * 14)) = 1.25."""
    chi2, p, f_statistic, f_p = friedman(np.array([3.143, 2.000, 2.893, 1.964]), 14)
    assert (round(chi2, 2), round(f_statistic, 2)) == (9.28, 3.69)
    assert 0.02 < p < 0.03 and f_p < 0.05  # F(3, 39) at 0.05 is 2.85: the null hypothesis is rejected
    assert round(critical_difference(4, 14), 2) == 1.25


def test_nemenyi_q_matches_demsar_s_table():
    table = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]  # Table 5(a), alpha 0.05, k = 2..10
    assert [nemenyi_q(k) for k in range(2, 11)] == pytest.approx(table, abs=1.5e-3)
    assert nemenyi_q(4, alpha=0.10) == pytest.approx(2.291, abs=1.5e-3)  # Table 5(a), alpha 0.10


def test_cliques_are_maximal_runs_closer_than_the_cd():
    assert cliques(np.array([3.2, 1.0, 3.0, 1.5]), 1.0) == [(0, 1), (2, 3)]
    assert cliques(np.array([1.0, 2.0, 3.0]), 0.5) == []  # every pair differs
    assert cliques(np.array([1.0, 1.8, 2.6]), 1.0) == [(0, 1), (1, 2)]  # overlapping groups, neither inside the other
