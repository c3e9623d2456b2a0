"""The quality ledger's gate: a rerun below the recorded figures fails, naming each figure that fell."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import DIGITS_CONFIG, REPO, warm_server_env

sys.path.insert(0, str(REPO / "benchmarks"))
from quality import TOLERANCE, commit, record, regressions  # noqa: E402


def entry(mean: float, sd: float, commit: str = "abc") -> dict:
    return {"figures": {"knn": {"mean": mean, "sd": sd, "values": [mean]}}, "commit": commit}


@pytest.mark.parametrize(
    ("before", "now", "falls"),
    [
        (entry(0.90, 0.02), entry(0.87, 0.0), False),  # within 2 sd
        (entry(0.90, 0.02), entry(0.85, 0.0), True),  # below mean - 2 sd
        (entry(0.90, 0.0), entry(0.90 - TOLERANCE / 2, 0.0), False),  # no sd: a hundredth is noise
        (entry(0.90, 0.0), entry(0.88, 0.0), True),
        (entry(0.90, 0.0), entry(0.95, 0.0), False),
    ],
)
def test_a_figure_falls_below_its_mean_minus_two_sd_or_a_hundredth(before, now, falls):
    fallen = regressions({"r": before}, {"r": now})
    assert bool(fallen) == falls and all(line.startswith("r/knn: ") for line in fallen)


def test_figures_from_an_edited_tree_are_recorded_as_dirty(tmp_path):
    def git(*args: str) -> str:
        identity = ["-c", "user.name=t", "-c", "user.email=t@t"]
        return subprocess.run(
            ["git", *identity, *args], cwd=tmp_path, check=True, capture_output=True, text=True
        ).stdout

    git("init", "-q")
    (tmp_path / "recipe.yaml").write_text("epochs: 1\n")
    git("add", "recipe.yaml")
    git("commit", "-qm", "a recipe")
    head = git("rev-parse", "HEAD").strip()
    (tmp_path / "notes.txt").write_text("untracked: not code that ran\n")
    assert commit(tmp_path) == head
    (tmp_path / "recipe.yaml").write_text("epochs: 2\n")
    assert commit(tmp_path) == f"{head}-dirty"


def test_each_recipe_is_recorded_as_it_ends_beside_what_the_ledger_holds(tmp_path):
    ledger = tmp_path / "quality.json"
    ledger.write_text(json.dumps({"a": entry(0.9, 0.01)}))
    record(ledger, "b", entry(0.8, 0.02))
    record(ledger, "a", entry(0.95, 0.0))
    assert json.loads(ledger.read_text()) == {"a": entry(0.95, 0.0), "b": entry(0.8, 0.02)}
    assert [p.name for p in tmp_path.iterdir()] == ["quality.json"]  # no partial file left behind


def test_check_reruns_a_recipe_and_exits_1_naming_the_figure_that_fell(tmp_path):
    """A tiny digits recipe, fit and eval as real processes; the ledger holds its 5-NN accuracy far higher than it
    can reach and its 1-NN accuracy far lower: the check fails on the first and says the second held. A broken
    recipe before it fails in one line and costs the others nothing."""
    recipe = {
        "tiny": {
            "config": str(DIGITS_CONFIG.relative_to(REPO)),
            "split": "digits' own test split",
            "overrides": [
                "--trainer.max_epochs", "1", "--data.max_train_samples", "200", "--data.batch_size", "100",
                "--model.proj_hidden_dim", "64", "--tracking.system_metrics_interval", "0", "--test_after_fit", "false",
            ],
            "protocols": "knn",
            "eval_args": ["--k", "1,5", "--baselines", "raw_nn"],
            "figures": {"knn": "eval/knn/top1_k5", "knn1": "eval/knn/top1_k1"},
            "baselines": {"pixels_1nn": "eval/baseline_raw_nn/acc"},
        }
    }  # fmt: skip
    recipe["broken"] = {**recipe["tiny"], "overrides": ["--model.init_args.no_such_key", "1"]}
    (tmp_path / "recipes.yaml").write_text(yaml.safe_dump(recipe))  # keys sorted: broken runs first
    ledger = {"tiny": {"figures": {"knn": {"mean": 1.5, "sd": 0.0}, "knn1": {"mean": 0.0, "sd": 0.0}}}}
    ledger["broken"] = ledger["tiny"]
    (tmp_path / "ledger.json").write_text(json.dumps(ledger))
    command = [sys.executable, str(REPO / "benchmarks" / "quality.py"), "--check", "--seeds", "0"]
    command += ["--recipes", str(tmp_path / "recipes.yaml"), "--ledger", str(tmp_path / "ledger.json")]
    command += ["--keep", str(tmp_path / "kept")]
    env = {**os.environ, **warm_server_env()}  # its fit and eval forked from this process's warm server
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "REGRESSION tiny/knn: " in proc.stderr and "below 1.4900" in proc.stderr
    assert "tiny/knn1" not in proc.stderr and "tiny/knn1: " in proc.stdout and " held" in proc.stdout
    assert "FAILED broken: contrastlab fit " in proc.stderr and "no_such_key" in proc.stderr
    assert json.loads((tmp_path / "ledger.json").read_text()) == ledger  # a check writes nothing
    assert len(list((tmp_path / "kept" / "checkpoints" / "quality-tiny").glob("*/last.ckpt"))) == 1  # --keep
