"""Seeded train/val/test splits, shared by every DataModule whose data has no (complete) official split.

One rule for all of them:

- What is drawn are *units*: the samples, or the groups when the data has them (a speaker, a patient, a
  session). A group is held out whole, so no group is in two splits; a sample without a group is a group of
  its own. Units are drawn in the sorted order of their keys, so the split does not depend on file order.
- One permutation of the units from `numpy.random.default_rng(seed)`: the first `test` units are the test
  split, the next `val` units the validation split, the rest train. The test split therefore depends only on
  the seed and its own fraction, not on the validation fraction.
- The rounding rule (`held_out`): a fraction f of n units holds out round(n * f) of them (Python's round,
  half to even), at least 1 when f > 0 and at most n - 1, so a held-out split is never empty and never takes
  everything; n = 1 unit holds nothing out. A count (an int >= 1, e.g. `val_size: 5000`) is taken as given.
- `stratify` (class labels): the same rule within each class, so every class keeps its share.

A fixed-size stratified split (scikit-learn's digits: 360 test and 180 validation images) is
`stratified_counts`, scikit-learn's `train_test_split` twice, as the digits benchmarks were made with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from contrastlab.errors import ConfigError

SPLITS = ("train", "val", "test")

Share = float | int  # a fraction in [0, 1), or a count of units (an int >= 1)


def held_out(n: int, share: Share) -> int:
    """How many of n units a share holds out: the module's rounding rule."""
    if isinstance(share, bool) or share < 0:
        raise ConfigError(f"a held-out share must be a fraction in [0, 1) or a count >= 1, got {share}")
    if isinstance(share, int) and share >= 1:
        return min(share, n)
    if share >= 1:
        raise ConfigError(f"a held-out fraction must be in [0, 1), got {share}")
    if share == 0 or n <= 1:
        return 0
    return min(n - 1, max(1, round(n * share)))


def seeded_split(
    n: int,
    val: Share = 0.0,
    test: Share = 0.0,
    seed: int = 0,
    groups: Sequence[Any] | None = None,
    stratify: Sequence[Any] | None = None,
) -> dict[str, np.ndarray]:
    """Sorted indices of the train, val and test splits of n samples (see the module docstring for the rule).

    Args:
        val, test: the share of units each holds out (a fraction, or a count).
        groups: one key per sample (None or "" for none: the sample is a group of its own); held out whole.
        stratify: one class per sample; the shares are taken within each class (not with `groups`).
    """
    if groups is not None and stratify is not None:
        raise ConfigError("a split is drawn by group or stratified by class, not both")
    if stratify is not None:
        classes = sorted(set(stratify), key=str)
        rng = np.random.default_rng(seed)
        parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
        for c in classes:
            members = np.array([i for i, y in enumerate(stratify) if y == c])
            for name, chosen in _draw(len(members), val, test, rng).items():
                parts[name].append(members[chosen])
        return {s: np.sort(np.concatenate(parts[s])) if parts[s] else np.zeros(0, int) for s in SPLITS}
    if groups is None:
        return _draw(n, val, test, np.random.default_rng(seed))
    keys = [str(g) if g is not None and str(g) != "" else f"\0#{i}" for i, g in enumerate(groups)]
    units = sorted(set(keys))
    unit_split = {}
    for name, chosen in _draw(len(units), val, test, np.random.default_rng(seed)).items():
        unit_split.update({units[u]: name for u in chosen})
    return {s: np.array([i for i, k in enumerate(keys) if unit_split[k] == s], dtype=int) for s in SPLITS}


def _draw(n: int, val: Share, test: Share, rng: np.random.Generator) -> dict[str, np.ndarray]:
    order = rng.permutation(n)
    n_test = held_out(n, test)
    n_val = held_out(n, val)
    return {
        "test": np.sort(order[:n_test]),
        "val": np.sort(order[n_test : n_test + n_val]),
        "train": np.sort(order[n_test + n_val :]),
    }


def hold_out(n: int, share: Share, seed: int = 0, groups: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) sorted indices: one seeded share of n samples (or of their groups), by the same rule."""
    split = seeded_split(n, val=share, seed=seed, groups=groups)
    return split["train"], split["val"]


def stratified_counts(labels: Sequence[Any], val: int, test: int, seed: int) -> dict[str, np.ndarray]:
    """Sorted indices of a stratified split with fixed sizes: `test` samples, then `val` of the rest
    (scikit-learn's `train_test_split`, stratified, `random_state=seed`)."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(labels)
    idx = np.arange(len(y))
    rest, test_idx = train_test_split(idx, test_size=test, stratify=y, random_state=seed)
    train, val_idx = train_test_split(rest, test_size=val, stratify=y[rest], random_state=seed)
    return {"train": train, "val": np.sort(val_idx), "test": np.sort(test_idx)}
