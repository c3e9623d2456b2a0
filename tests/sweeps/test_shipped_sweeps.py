"""Every sweep config in configs/sweeps/ is sound without running it: its fixed keys and every search-space value
pass the run CLI's parser (what `contrastlab sweep` checks before its first trial), a trial's sampled values are
what its `fit` process parses, and its model builds. The sweep machinery itself (worker processes, pruning, retries,
MLflow child runs) is tested once, on digits, in tests/sweeps/test_sweep.py; each method's `fit` in its own tests."""

from __future__ import annotations

import sys
import warnings

import pytest

from contrastlab.sweeps.config import load_sweep
from contrastlab.sweeps.space import check_keys, overrides
from tests.conftest import REPO

SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))
# where the shipped base configs read files, an empty folder in FSDD's layout builds (nothing is read until setup)
DATA_ROOTS = {"contrastlab.datamodules.audio.FSDD"}


def resolved(config, key: str):
    """A dotted key's value in the parsed config, through components' init_args as the sweep writes them or not."""
    node = config
    for part in key.split("."):
        if part not in node and "init_args" in node:
            node = node["init_args"]
        node = node[part]
    return node


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_a_shipped_sweep_checks_and_its_sampled_values_reach_the_model(path, monkeypatch, tmp_path):
    from contrastlab.platform.cli import ContrastlabCLI

    monkeypatch.chdir(REPO)  # the sweeps name their base as a user runs them: from the checkout
    sweep = load_sweep(path)
    check_keys(sweep.base, {key: [value] for key, value in sweep.fixed.items()}, "fixed")
    check_keys(sweep.base, {key: param.probe_values() for key, param in sweep.space.items()}, "space")

    # one trial: each entry at a value of its own, as a sampler would give it
    params = {}
    for key, param in sweep.space.items():
        low, high = param.probe_values()[0], param.probe_values()[-1]
        params[key] = low if param.type == "categorical" else type(low)(low + (high - low) / 3)
    data = sweep.base_config()["data"]["class_path"]
    extra = ["--data.init_args.root", str(tmp_path)] if data in DATA_ROOTS else []

    class BuildOnly(ContrastlabCLI):
        def instantiate_trainer(self, **kwargs):
            return None

    monkeypatch.setattr(sys, "argv", ["contrastlab"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = BuildOnly(run=False, args=["-c", str(sweep.base), *overrides(sweep.fixed), *overrides(params), *extra])
    assert cli.model is not None
    for key, value in {**sweep.fixed, **params}.items():
        assert resolved(cli.config, key) == pytest.approx(value), key
