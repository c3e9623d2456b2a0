"""Sweep configs are checked whole before the first trial: each mistake is one line naming the entry."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from contrastlab.errors import ConfigError
from contrastlab.sweeps.config import load_sweep
from contrastlab.sweeps.report import best_config, markdown_table
from contrastlab.sweeps.space import check_keys, overrides, set_key
from tests.conftest import DIGITS_CONFIG, REPO, the_error_line

GOOD = {
    "base": str(DIGITS_CONFIG),
    "space": {
        "model.temperature": {"type": "log-float", "low": 0.05, "high": 0.5},
        "model.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "data.batch_size": {"type": "int", "low": 64, "high": 256, "step": 64},
        "model.backbone": {"type": "categorical", "choices": ["small_cnn", "resnet18"]},
    },
    "objective": {"metric": "val/knn_top1", "direction": "maximize"},
    "n_trials": 4,
}


def write(tmp_path: Path, **changes) -> Path:
    config = {**GOOD, **changes}
    config = {k: v for k, v in config.items() if v is not None}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_good_config_loads_with_defaults(tmp_path):
    sweep = load_sweep(write(tmp_path))
    assert sweep.name == "sweep" and sweep.base == DIGITS_CONFIG and sweep.n_trials == 4
    assert sweep.sampler == {"name": "tpe"} and sweep.pruner == {"name": "median"}
    temperature = sweep.space["model.temperature"].distribution()
    assert temperature.log and (temperature.low, temperature.high) == (0.05, 0.5)
    assert sweep.space["data.batch_size"].distribution().step == 64


def test_the_demo_sweep_config_loads():
    sweep = load_sweep(REPO / "configs" / "sweeps" / "simclr_digits.yaml")
    assert sweep.base == Path("configs/simclr/digits.yaml") or sweep.base.name == "digits.yaml"
    assert sweep.metric == "val/knn_top1" and sweep.n_trials


def test_a_base_named_from_the_checkout_is_found_from_any_folder(tmp_path, monkeypatch):
    """As a run config's `base:`: a sweep written outside the checkout names a shipped config by its path in it."""
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(write(tmp_path, base="configs/ts2vec/ucr.yaml"))
    assert sweep.base == REPO / "configs" / "ts2vec" / "ucr.yaml"


def test_the_docs_sweep_example_is_a_valid_sweep(tmp_path):
    readme = (REPO / "docs" / "sweeps.md").read_text()
    block = readme.split("# every key of a sweep config")[1].split("```")[0]
    path = tmp_path / "example.yaml"
    path.write_text(block.split("\n", 1)[1])
    sweep = load_sweep(path)
    assert set(sweep.space) == {"model.temperature", "model.optimizer.lr", "model.proj_dim", "data.batch_size"}
    check_keys(sweep.base, {key: param.probe_values() for key, param in sweep.space.items()}, "space")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"trials": 3}, "unknown key 'trials'; did you mean n_trials?"),
        (
            {"space": {"model.temperature": {"type": "float", "low": 0.5, "high": 0.1}}},
            "space.model.temperature: empty range",
        ),
        ({"space": {"model.temperature": {"type": "gauss", "low": 0.1}}}, "space.model.temperature: type='gauss'"),
        ({"space": {"model.optimizer.lr": {"type": "log-float", "low": 0, "high": 1}}}, "needs low > 0"),
        ({"space": {"data.batch_size": {"type": "int", "low": 64, "high": 256, "stepp": 8}}}, "'stepp' is not a field"),
        ({"space": {"model.backbone": {"type": "categorical", "choices": []}}}, "space.model.backbone: choices must"),
        ({"space": {"data.batch_size": {"type": "int", "low": 6.5, "high": 9}}}, "needs whole low and high"),
        ({"objective": {"metric": "val/knn_top1", "direction": "up"}}, "objective.direction='up'"),
        ({"n_trials": 0}, "n_trials=0"),
        ({"n_trials": None}, "set n_trials, timeout or both"),
        ({"pruner": {"name": "median", "warmup": 2}}, "pruner.warmup: not an argument of the median pruner"),
        ({"pruner": "asha"}, "pruner.name='asha': choose one of median, hyperband, none"),
        ({"sampler": {"name": "tpe", "seed": "x"}}, "sampler:"),
        ({"base": "configs/nope.yaml"}, "base: configs/nope.yaml not found"),
        ({"enqueue": [{"model.temperature": 2.0}]}, "enqueue[0].model.temperature=2.0 is outside"),
        ({"fixed": {"model.temperature": 0.1}}, "space.model.temperature is also in fixed"),
        ({"grid": {"model.proj_dim": [64]}}, "give space (values sampled) or grid (every combination), not both"),
        ({"space": None, "grid": {"model.proj_dim": 64}}, "grid: expected a mapping of run-config keys to lists"),
        ({"space": None, "grid": {"model.proj_dim": [64, 64]}}, "grid.model.proj_dim: choices repeat a value"),
        ({"space": None, "grid": {"model.proj_dim": [32, 64]}, "n_trials": 3}, "n_trials=3 is more than the grid's 2"),
        ({"space": None, "grid": {"model.proj_dim": [32]}, "sampler": "tpe"}, "sampler: a grid is run by Optuna's"),
        ({"space": None, "grid": {"base": [str(DIGITS_CONFIG)]}}, "base is both a key and a grid axis"),
        (
            {"space": None, "base": None, "n_trials": None, "grid": {"base": ["configs/nope.yaml"]}},
            "base: configs/nope.yaml not found",
        ),
        ({"seeds": [0, 0]}, "seeds=[0, 0]: a seed is listed twice"),
        ({"seeds": 3}, "seeds=3: expected a list of whole numbers"),
        ({"fixed": {"resume": "last.ckpt"}}, "fixed.resume=last.ckpt: each trial starts a run of its own"),
        ({"base": {"resume": "last.ckpt"}}, "base (inline) resumes last.ckpt: each trial starts a run of its own"),
    ],
)
def test_mistakes_name_the_entry(tmp_path, changes, message):
    with pytest.raises(ConfigError) as err:
        load_sweep(write(tmp_path, **changes))
    assert message in str(err.value) and str(tmp_path / "sweep.yaml") in str(err.value)
    assert "\n" not in str(err.value)


def test_run_config_keys_and_values_are_checked_by_the_run_parser():
    check_keys(DIGITS_CONFIG, {"model.temperature": [0.05, 0.5], "data.batch_size": [64, 256]}, "space")
    with pytest.raises(ConfigError, match=r"^space\.model\.temprature=0\.1: the run config refuses it .*temprature"):
        check_keys(DIGITS_CONFIG, {"model.temperature": [0.1], "model.temprature": [0.1]}, "space")
    with pytest.raises(ConfigError, match=r"^fixed\.data\.batch_size=many: .*Expected a <class 'int'>"):
        check_keys(DIGITS_CONFIG, {"data.batch_size": ["many"]}, "fixed")


@pytest.mark.new_store
def test_sweep_command_reports_a_bad_key_in_one_line(tmp_path, cli_here):
    path = write(tmp_path, space={"model.temprature": {"type": "float", "low": 0.1, "high": 0.5}})
    line = the_error_line(*cli_here("sweep", "-c", str(path), cwd=tmp_path))
    assert "space.model.temprature=0.1: the run config refuses it" in line
    assert not (tmp_path / "mlruns").exists()  # nothing was created before the config was known good


def test_overrides_and_best_config_follow_the_cli(tmp_path):
    assert overrides({"model.temperature": 0.1, "model.backbone": "resnet18", "tracking.log_checkpoints": False}) == [
        "--model.temperature", "0.1", "--model.backbone", "resnet18", "--tracking.log_checkpoints", "false",
    ]  # fmt: skip
    config = {"model": {"class_path": "X", "init_args": {"optimizer": {"lr": 1.0}}}, "trainer": {}}
    set_key(config, "model.optimizer.lr", 0.5)
    set_key(config, "model.temperature", 0.1)
    set_key(config, "trainer.max_epochs", 3)
    assert config == {
        "model": {"class_path": "X", "init_args": {"optimizer": {"lr": 0.5}, "temperature": 0.1}},
        "trainer": {"max_epochs": 3},
    }
    sweep = load_sweep(write(tmp_path, fixed={"trainer.max_epochs": 3}))
    text = best_config(sweep, {"model.temperature": 0.3, "data.batch_size": 128})
    path = tmp_path / "best.yaml"
    path.write_text(text)
    ready = yaml.safe_load(text)
    assert ready["model"]["init_args"]["temperature"] == 0.3 and ready["data"]["init_args"]["batch_size"] == 128
    assert ready["trainer"].get("max_epochs") != 3 and "#   trainer.max_epochs: 3\n" in text  # listed, not applied
    check_keys(path, {}, "best_config")
    assert markdown_table([{"trial": 0, "value": 0.91234567, "reason": "a|b"}]).splitlines()[2] == (
        "| 0 | 0.912346 | a\\|b |"
    )


def test_a_grid_runs_each_combination_once_with_its_bases_as_an_axis(tmp_path):
    byol = REPO / "configs" / "byol" / "digits.yaml"
    grid = {"base": [str(DIGITS_CONFIG), str(byol)], "model.proj_dim": [32, 64]}
    sweep = load_sweep(write(tmp_path, space=None, base=None, n_trials=None, grid=grid, seeds=[0, 1]))
    assert sweep.grid and sweep.n_trials == 4 and sweep.seeds == [0, 1] and sweep.sampler == {"name": "grid"}
    assert sweep.base_of({"base": str(byol), "model.proj_dim": 32}) == byol
    assert sweep.run_keys({"base": str(byol), "model.proj_dim": 32}) == {"model.proj_dim": 32}
    assert sweep.base_config({"base": str(byol)})["model"]["class_path"].endswith("BYOL")

    import optuna

    study = optuna.create_study(sampler=sweep.make_sampler())
    distributions = {key: param.distribution() for key, param in sweep.space.items()}
    seen = set()
    for _ in range(4):  # asked and told as the workers do: no combination twice, no stop at the last one
        trial = study.ask(distributions)
        seen.add(tuple(trial.params.values()))
        study.tell(trial, 0.5)
    assert len(seen) == 4


def test_a_best_value_that_other_trials_share_names_them(tmp_path, capsys):
    """Which of tied trials Optuna calls best is the storage's order: the printed best and the parent's description
    name the others, so a researcher sees that validation did not choose between them."""
    import optuna

    from contrastlab.sweeps.report import parent_note, tied_with
    from contrastlab.sweeps.summary import _print_best

    sweep = load_sweep(write(tmp_path))
    study = optuna.create_study(direction="maximize")
    distribution = optuna.distributions.FloatDistribution(0.05, 0.5, log=True)
    for temperature, value in ((0.1, 0.8049), (0.2, 0.7805), (0.3, 0.8049), (0.4, 0.8049)):
        study.add_trial(
            optuna.trial.create_trial(
                params={"model.temperature": temperature},
                distributions={"model.temperature": distribution},
                value=value,
            )
        )
    best = study.best_trial
    tied = tied_with(study, best)
    assert sorted([best.number, *tied]) == [0, 2, 3]
    _print_best(best, sweep, f"sqlite:///{tmp_path / 'mlflow.db'}", "sqlite:///optuna.db", "1", "", tied)
    line = capsys.readouterr().out.splitlines()[0]
    others = ", ".join(map(str, tied))
    assert line.startswith(f"best trial {best.number}: val/knn_top1 = 0.8049, tied with trials {others} (MLflow"), line
    assert f"**0.8049** in trial-{best.number}" in parent_note(sweep, [], best, "1", tied)
    assert f", tied with trials {others}" in parent_note(sweep, [], best, "1", tied)

    lone = optuna.create_study(direction="maximize")
    lone.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
    assert tied_with(lone, lone.best_trial) == [] and tied_with(lone, None) == []
