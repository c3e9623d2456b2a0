"""The ledger's series recipes as one table (benchmarks/series_ranks.py): each method's seeds beside the baselines,
the mean and average rank over the sets, a method missing on a set left out of the ranks, and the CD picture."""

from __future__ import annotations

import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from series_ranks import collect, render  # noqa: E402


def entry(svm: list[float], raw: float, dtw: float, rocket: float) -> dict:
    same = lambda v: {"values": [v] * len(svm)}  # noqa: E731  the data's own baselines: equal over seeds
    return {
        "figures": {"svm": {"values": svm}},
        "baselines": {"raw_1nn": same(raw), "dtw_1nn": same(dtw), "minirocket": same(rocket)},
    }


def test_the_ledger_becomes_one_table_with_ranks_and_a_picture(tmp_path):
    ledger = {
        "gunpoint-ts2vec": entry([0.98, 0.96, 0.97], 0.85, 0.87, 1.0),
        "arrowhead-ts2vec": entry([0.80, 0.84, 0.82], 0.80, 0.70, 0.86),
        "arrowhead-tstcc": entry([0.75], 0.80, 0.70, 0.86),  # on one set only: shown, not ranked
        "digits-simclr": {"figures": {}},  # not a series recipe
    }
    table = collect(ledger)
    assert list(table) == ["GunPoint", "ArrowHead"] and table["GunPoint"]["1-NN DTW"] == [0.87] * 3
    text = render(table, tmp_path / "cd.png")
    lines = text.splitlines()
    assert lines[0] == "| set | TS2Vec | TS-TCC | 1-NN Euclidean | 1-NN DTW | MiniRocket |"
    assert lines[2] == "| GunPoint | 0.970 ± 0.010 | - | 0.850 ± 0.000 | 0.870 ± 0.000 | 1.000 ± 0.000 |"
    assert "| ArrowHead | 0.820 ± 0.020 | 0.750 (1 seed) |" in lines[3]
    # GunPoint ranks MiniRocket 1, TS2Vec 2, DTW 3, Euclidean 4; ArrowHead MiniRocket 1, TS2Vec 2, Euclidean 3, DTW 4
    assert lines[4] == "| **mean over the sets** | 0.895 | - | 0.825 | 0.785 | 0.930 |"
    assert lines[5] == "| **average rank** | 2.00 | - | 3.50 | 3.50 | 1.00 |"
    assert "- TS-TCC: not run on GunPoint" in text and "Nemenyi CD = 3.32" in text  # 2.569 sqrt(4 * 5 / 12)
    assert (tmp_path / "cd.png").read_bytes()[:4] == b"\x89PNG"


def test_the_papers_protocol_recipes_make_their_own_table():
    ledger = {
        "gunpoint-ts2vec": entry([0.98, 0.96, 0.97], 0.85, 0.87, 1.0),
        "gunpoint-ts2vec-papers": entry([0.99, 0.99, 0.98], 0.91, 0.91, 1.0),  # all of train: other baselines too
        "arrowhead-ts2vec-papers": entry([0.85], 0.80, 0.70, 0.86),
    }
    holdout, papers = collect(ledger), collect(ledger, "-papers")
    assert list(holdout) == ["GunPoint"] and holdout["GunPoint"]["TS2Vec"] == [0.98, 0.96, 0.97]
    assert list(papers) == ["GunPoint", "ArrowHead"] and papers["GunPoint"]["1-NN Euclidean"] == [0.91] * 3
    assert "| GunPoint | 0.987 ± 0.006 | 0.910 ± 0.000 |" in render(papers, None, "papers")
