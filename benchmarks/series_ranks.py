"""The quality ledger's time-series recipes (`<set>-<method>` in benchmarks/quality.yaml) as one table: each
method's SVM accuracy per set beside the baselines on the same splits, mean ± sd over the seeds, each method's
average rank over the sets and Demšar's critical-difference picture (contrastlab.evaluation.ranks, the same
numerics as `contrastlab eval --datasets`).

    .venv/bin/python benchmarks/quality.py --only gunpoint-ts2vec,...     # record the recipes first
    .venv/bin/python benchmarks/series_ranks.py [--no-write]              # then the table, from the ledger

Two tables, one per protocol: the holdout (`<set>-<method>`: 20% of train held out for validation, the checkpoint
best on it) and the papers' (`<set>-<method>-papers`: all of train, the last checkpoint). Ranks are over the sets
where every ranked method has a figure; a method missing on some set is shown and left out of the ranks (said under
the table). The pictures go to docs/benchmarks/series_cd.png and series_cd_papers.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from figures import PAGES, mean_sd, write_block  # noqa: E402

LEDGER = HERE / "quality.json"
SETS = ["GunPoint", "ArrowHead", "OSULeaf", "ACSF1", "BasicMotions", "JapaneseVowels"]
METHODS = {"ts2vec": "TS2Vec", "softclt": "SoftCLT", "tstcc": "TS-TCC"}
BASELINES = {"raw_1nn": "1-NN Euclidean", "dtw_1nn": "1-NN DTW", "minirocket": "MiniRocket"}
# protocol -> (the recipes' suffix, the docs block, the picture)
PROTOCOLS = {
    "holdout": ("", "series-ranks", PAGES / "series_cd.png"),
    "papers": ("-papers", "series-ranks-papers", PAGES / "series_cd_papers.png"),
}


def collect(ledger: dict, suffix: str = "") -> dict[str, dict[str, list[float]]]:
    """set -> column -> the seeds' values: each method's SVM figure, and the baselines (the same splits for every
    method of a set; the first recorded method's are taken). `suffix` picks the protocol's recipes."""
    table: dict[str, dict[str, list[float]]] = {}
    for name in SETS:
        for method, label in METHODS.items():
            entry = ledger.get(f"{name.lower()}-{method}{suffix}")
            if entry is None:
                continue
            row = table.setdefault(name, {})
            row[label] = entry["figures"]["svm"]["values"]
            for key, baseline in BASELINES.items():
                row.setdefault(baseline, entry["baselines"][key]["values"])
    return table


def cell(values: list[float] | None) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f} (1 seed)"
    mean, sd = mean_sd(values)
    return f"{mean:.3f} ± {sd:.3f}"


def render(table: dict[str, dict[str, list[float]]], picture: Path | None, protocol: str = "holdout") -> str:
    from contrastlab.evaluation.plots import cd_diagram
    from contrastlab.evaluation.ranks import rank_methods

    columns = [c for c in [*METHODS.values(), *BASELINES.values()] if any(c in row for row in table.values())]
    sets = list(table)
    lines = ["| set | " + " | ".join(columns) + " |", "|---" + "|---:" * len(columns) + "|"]
    lines += [f"| {s} | " + " | ".join(cell(table[s].get(c)) for c in columns) + " |" for s in sets]
    ranked = [c for c in columns if all(c in table[s] for s in sets)]
    notes = [f"- {c}: not run on {', '.join(s for s in sets if c not in table[s])}" for c in columns if c not in ranked]
    if len(sets) >= 2 and len(ranked) >= 2:
        scores = np.array([[statistics.fmean(table[s][c]) for c in ranked] for s in sets])
        ranking = rank_methods(scores, ranked, sets)
        means = dict(zip(ranked, scores.mean(axis=0)))
        lines.append(
            "| **mean over the sets** | " + " | ".join(f"{means[c]:.3f}" if c in means else "-" for c in columns) + " |"
        )
        average = dict(zip(ranked, ranking.average))
        lines.append(
            "| **average rank** | " + " | ".join(f"{average[c]:.2f}" if c in average else "-" for c in columns) + " |"
        )
        notes.append(
            f"- ranks over {len(sets)} sets (1 = best): Friedman p = {ranking.p_value:.3g}; Nemenyi CD = "
            f"{ranking.cd:.2f} at alpha 0.05 for {len(ranked)} methods (the picture: {PROTOCOLS[protocol][2].name})"
        )
        if picture is not None:
            title = f"SVM / baseline accuracy, average rank over {len(sets)} UCR/UEA sets ({protocol} protocol)"
            cd_diagram(ranking, picture, title)
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ledger", type=Path, default=LEDGER)
    parser.add_argument("--no-write", action="store_true", help="print the table, write neither docs nor picture")
    args = parser.parse_args(argv)
    ledger = json.loads(args.ledger.read_text())
    tables = {protocol: collect(ledger, suffix) for protocol, (suffix, _, _) in PROTOCOLS.items()}
    if not any(tables.values()):
        parser.error(f"{args.ledger} records no <set>-<method> series recipe; run benchmarks/quality.py first")
    for protocol, table in tables.items():
        if not table:
            continue
        _, block, picture = PROTOCOLS[protocol]
        text = render(table, None if args.no_write else picture, protocol)
        if not args.no_write:
            write_block(block, text, f"## Time series, the {protocol} protocol: `benchmarks/series_ranks.py`")
        print(f"{protocol} protocol:\n{text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
