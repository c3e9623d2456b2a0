"""A sweep YAML (`configs/sweeps/<name>.yaml`), read and checked before the first trial starts.

```yaml
name: simclr-digits                  # the Optuna study and the MLflow experiment (default: the file's stem)
base: configs/simclr/digits.yaml     # the run config every trial starts from: a path, or the config inline
fixed: {trainer.max_epochs: 10}      # overrides for every trial
space:                               # what each trial samples: any key of the run config
  model.temperature: {type: float, low: 0.05, high: 0.5, log: true}
  model.proj_dim: {type: categorical, choices: [32, 64, 128]}
objective: {metric: val/knn_top1, direction: maximize}
n_trials: 12                         # finished trials the study should hold; and/or
enqueue: [{model.temperature: 0.2}]  # optional: trials to run first (unset keys are sampled)
seeds: [0, 1, 2]                     # optional: each trial trains once per seed; its objective is their mean
timeout: 600                         # seconds after which a sweep command starts no new trial
sampler: {name: tpe, seed: 0}        # tpe (default) or random, with their Optuna arguments
pruner: {name: median}               # median, hyperband or none, with their Optuna arguments
storage: sqlite:///mlruns/optuna.db  # default; --storage overrides it
```

Instead of `space`, a `grid` runs every combination of its values (Optuna's GridSampler), once each, so a
method x dataset table is one command; its key `base` lists run configs, one axis of the grid:

```yaml
grid:
  base: [configs/simclr/digits.yaml, configs/byol/digits.yaml]
  model.proj_dim: [64, 128]
seeds: [0, 1, 2]                     # 2 x 2 configurations, each trained with 3 seeds: 12 fits
```
"""

from __future__ import annotations

import difflib
import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from contrastlab.errors import ConfigError
from contrastlab.platform.compose import find_config, places_looked
from contrastlab.sweeps.space import Param, parse_grid, parse_space

KEYS = (
    "name",
    "base",
    "fixed",
    "space",
    "enqueue",
    "objective",
    "n_trials",
    "timeout",
    "sampler",
    "pruner",
    "storage",
    "grid",
    "seeds",
)
GRID_BASE = "base"  # the grid key whose values are run configs
DIRECTIONS = ("maximize", "minimize")


def _sampler_classes() -> dict[str, Any]:
    import optuna

    return {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}


def _grid_sampler():
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's GridSampler without its stop at the last combination: `Study.stop` works only inside
        `optimize`, and the sweep's workers ask and tell; they end the grid at its n_trials."""

        def after_trial(self, study, trial, state, values) -> None:
            return None

    return GridSampler


def _pruner_classes() -> dict[str, Any]:
    import optuna

    return {
        "median": optuna.pruners.MedianPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "none": optuna.pruners.NopPruner,
    }


@dataclass
class SweepConfig:
    path: Path
    name: str
    base: Path | dict[str, Any]
    space: dict[str, Param]
    metric: str
    direction: str
    fixed: dict[str, Any] = field(default_factory=dict)
    n_trials: int | None = None
    timeout: float | None = None
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "tpe"})
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    storage: str | None = None
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    grid: bool = False  # `space` holds the grid's keys, each a categorical of its values
    seeds: list[int] = field(default_factory=list)
    bases: dict[str, Path] = field(default_factory=dict)  # the grid's `base` values, as written -> resolved

    def base_of(self, params: dict[str, Any] | None = None) -> Path | dict[str, Any]:
        """The run config a trial with `params` starts from: its grid `base` value, else the sweep's base."""
        if params and GRID_BASE in params and self.bases:
            return self.bases[params[GRID_BASE]]
        return self.base

    def all_bases(self) -> list[Path | dict[str, Any]]:
        return list(self.bases.values()) or [self.base]

    def base_config(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The base run config (of a trial with `params`) as a mapping, read from its file when a path."""
        return read_base(self.base_of(params))

    def run_keys(self, params: dict[str, Any]) -> dict[str, Any]:
        """A trial's values that are run-config keys: all but the grid's `base`."""
        return {key: value for key, value in params.items() if key != GRID_BASE}

    def make_sampler(self, seed: int | None = None):
        """The configured sampler; `seed` replaces the configured one (each worker draws its own stream)."""
        options = {k: v for k, v in self.sampler.items() if k != "name"}
        if seed is not None:
            options["seed"] = seed
        if self.grid:
            grid = {key: list(param.choices) for key, param in self.space.items()}
            return _grid_sampler()(grid, seed=options.get("seed"))
        return _sampler_classes()[self.sampler["name"]](**options)

    def make_pruner(self):
        return make_pruner(self.pruner)


def make_pruner(spec: dict[str, Any]):
    """The pruner a `pruner:` entry describes; trials rebuild it from the same entry to decide alike."""
    return _pruner_classes()[spec["name"]](**{k: v for k, v in spec.items() if k != "name"})


def load_sweep(path: str | Path) -> SweepConfig:
    """Read and check a sweep config; ConfigError names the file, the entry and the fix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep config {path} not found: pass -c configs/sweeps/<name>.yaml")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"sweep config {path} is not valid YAML ({' '.join(str(err).split())})") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"sweep config {path}: expected a mapping of {', '.join(KEYS)}")

    def fail(message: str) -> ConfigError:
        return ConfigError(f"sweep config {path}: {message}")

    unknown = [k for k in raw if k not in KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), KEYS, n=1)
        hint = f"did you mean {close[0]}?" if close else f"the keys are {', '.join(KEYS)}"
        raise fail(f"unknown key {unknown[0]!r}; {hint}")
    grid = raw.get("grid")
    if grid is not None and "space" in raw:
        raise fail("give space (values sampled) or grid (every combination), not both")
    grid_bases = isinstance(grid, dict) and GRID_BASE in grid
    if grid_bases and "base" in raw:
        raise fail("base is both a key and a grid axis: keep grid.base and drop the base key")
    for key in ("base" if not grid_bases else None, "space" if grid is None else None, "objective"):
        if key is not None and key not in raw:
            raise fail(f"{key} is missing; see configs/sweeps/simclr_digits.yaml for an example")
    if grid is not None and raw.get("sampler") is not None:
        raise fail("sampler: a grid is run by Optuna's GridSampler, every combination once; drop sampler")

    objective = raw["objective"]
    if not isinstance(objective, dict) or not isinstance(objective.get("metric"), str):
        raise fail("objective: expected {metric: val/knn_top1, direction: maximize}")
    extra = set(objective) - {"metric", "direction"}
    if extra:
        raise fail(f"objective: unknown key {sorted(extra)[0]!r}; it takes metric and direction")
    direction = objective.get("direction")
    if direction not in DIRECTIONS:
        raise fail(f"objective.direction={direction!r}: set maximize or minimize")

    n_trials, timeout = raw.get("n_trials"), raw.get("timeout")
    if n_trials is not None and (not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1):
        raise fail(f"n_trials={n_trials!r}: expected a whole number >= 1")
    if timeout is not None and (not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0):
        raise fail(f"timeout={timeout!r}: expected seconds > 0")
    if n_trials is None and timeout is None and grid is None:
        raise fail("set n_trials, timeout or both: a sweep needs a way to end")

    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise fail("fixed: expected a mapping of run-config keys to values, e.g. {trainer.max_epochs: 10}")
    try:
        space = parse_grid(grid) if grid is not None else parse_space(raw["space"])
    except ConfigError as err:
        raise fail(str(err)) from None
    if grid is not None:
        combinations = math.prod(len(param.choices) for param in space.values())
        if n_trials is not None and n_trials > combinations:
            raise fail(
                f"n_trials={n_trials} is more than the grid's {combinations} combinations; "
                "to repeat each one, list seeds: [0, 1, 2]"
            )
        n_trials = n_trials or combinations
    bases = {}
    if grid_bases:
        if not all(isinstance(value, str) for value in space[GRID_BASE].choices):
            raise fail("grid.base: expected a list of run-config paths, e.g. [configs/simclr/digits.yaml]")
        bases = {value: _resolve_base(value, path) for value in space[GRID_BASE].choices}
    seeds = _parse_seeds(raw.get("seeds"), fail)
    enqueue = _parse_enqueue(raw.get("enqueue"), space, fail)
    both = sorted(set(space) & set(fixed))
    if both:
        raise fail(f"space.{both[0]} is also in fixed: keep it in one of the two")

    sweep = SweepConfig(
        path=path,
        name=str(raw.get("name") or path.stem),
        base=next(iter(bases.values())) if bases else _resolve_base(raw["base"], path),
        space=space,
        metric=objective["metric"],
        direction=direction,
        fixed=fixed,
        n_trials=n_trials,
        timeout=float(timeout) if timeout is not None else None,
        sampler={"name": "grid"}
        if grid is not None
        else _component(raw.get("sampler"), "sampler", "tpe", _sampler_classes(), fail),
        pruner=_component(raw.get("pruner"), "pruner", "median", _pruner_classes(), fail),
        storage=raw.get("storage"),
        enqueue=enqueue,
        grid=grid is not None,
        seeds=seeds,
        bases=bases,
    )
    for name in ("sampler", "pruner"):
        try:
            getattr(sweep, f"make_{name}")()
        except (TypeError, ValueError) as err:
            raise fail(f"{name}: {err}") from None
    _refuse_resume(sweep, fail)
    return sweep


def _refuse_resume(sweep: SweepConfig, fail) -> None:
    """Each trial starts a run of its own: a base (or `fixed`) that resumes a checkpoint would make every trial
    resume the same run. Refused before any worker starts or any checkpoint is read."""
    if sweep.fixed.get("resume") is not None:
        raise fail(f"fixed.resume={sweep.fixed['resume']}: each trial starts a run of its own, so a sweep resumes "
                   "none; drop it (run the same sweep command again to resume a sweep)")  # fmt: skip
    for base in sweep.all_bases():
        resume = read_base(base).get("resume")
        if resume is not None:
            raise fail(f"base {base if isinstance(base, Path) else '(inline)'} resumes {resume}: each trial starts "
                       "a run of its own, so a sweep resumes none; drop `resume` from the base (run the same sweep "
                       "command again to resume a sweep)")  # fmt: skip


def read_base(base: Path | dict[str, Any]) -> dict[str, Any]:
    """A base run config as a mapping, read from its file when a path."""
    return base if isinstance(base, dict) else yaml.safe_load(base.read_text()) or {}


def _parse_seeds(raw: Any, fail) -> list[int]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw or not all(isinstance(s, int) and not isinstance(s, bool) for s in raw):
        raise fail(f"seeds={raw!r}: expected a list of whole numbers, e.g. [0, 1, 2]")
    if len(set(raw)) != len(raw):
        raise fail(f"seeds={raw}: a seed is listed twice")
    return raw


def _parse_enqueue(raw: Any, space: dict[str, Param], fail) -> list[dict[str, Any]]:
    """Trials to run first: each a mapping of space keys to values inside their distributions."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise fail("enqueue: expected a list of {space key: value} mappings")
    for i, item in enumerate(raw):
        for key, value in item.items():
            if key not in space:
                raise fail(f"enqueue[{i}].{key}: not a key of space; enqueue sets only searched keys")
            if not space[key].contains(value):
                raise fail(f"enqueue[{i}].{key}={value!r} is outside space.{key}")
    return raw


def _resolve_base(base: Any, sweep_path: Path) -> Path | dict[str, Any]:
    """A base path is found as a run config's `base:` is (`find_config`): from the working directory, the sweep
    config's folder and its parents, then the contrastlab checkout, so `base: configs/simclr/digits.yaml` works
    from anywhere."""
    if isinstance(base, dict):
        return base
    if not isinstance(base, str):
        raise ConfigError(f"sweep config {sweep_path}: base: expected a config path or an inline run config")
    found = find_config(base, sweep_path)
    if found is None:
        raise ConfigError(
            f"sweep config {sweep_path}: base: {base} not found (looked in {places_looked(sweep_path)}); give the "
            "run config's path, e.g. configs/simclr/digits.yaml"
        )
    return found


def _component(value: Any, key: str, default: str, classes: dict[str, Any], fail) -> dict[str, Any]:
    """`{name: tpe, seed: 0}` (or just `tpe`), with the name known and the arguments the class takes."""
    if value is None:
        value = {"name": default}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise fail(f"{key}: expected a name or {{name: ..., <arguments>}}")
    value = {"name": default, **value}
    if value["name"] not in classes:
        raise fail(f"{key}.name={value['name']!r}: choose one of {', '.join(classes)}")
    accepted = inspect.signature(classes[value["name"]]).parameters
    for arg in value:
        if arg != "name" and arg not in accepted:
            close = difflib.get_close_matches(arg, list(accepted), n=1)
            hint = f"did you mean {close[0]}?" if close else f"it takes {', '.join(accepted)}"
            raise fail(f"{key}.{arg}: not an argument of the {value['name']} {key}; {hint}")
    return value
