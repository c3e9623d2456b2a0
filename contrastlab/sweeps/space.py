"""Search spaces from YAML: each entry is a run-config key (`model.temperature`) and its distribution.

    model.temperature:  {type: float, low: 0.05, high: 0.5, log: true}    # or type: log-float
    data.batch_size:    {type: int, low: 64, high: 256, step: 64}
    model.backbone:     {type: categorical, choices: [small_cnn, resnet18]}

A trial's sampled values reach its `fit` as command-line overrides (`--model.temperature 0.12`), so any
key the run's CLI accepts can be searched, and `check_keys` asks that same parser before a sweep starts.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from contrastlab.errors import ConfigError
from contrastlab.platform.config_check import check_run_config

TYPES = ("float", "log-float", "int", "categorical")
FIELDS = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"}, "categorical": {"choices"}}


@dataclass(frozen=True)
class Param:
    key: str
    type: str  # float, int or categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def distribution(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.type == "categorical":
            return CategoricalDistribution(list(self.choices))
        if self.type == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return value in self.choices
        return _is_number(value) and self.low <= value <= self.high and (self.type == "float" or value == int(value))

    def probe_values(self) -> list[Any]:
        """Values that, between them, show whether the run config accepts every value of this entry."""
        if self.type == "categorical":
            return list(self.choices)
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]


def parse_space(raw: Any) -> dict[str, Param]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(
            "space: expected a mapping of run-config keys to distributions, e.g. "
            "{model.temperature: {type: float, low: 0.05, high: 0.5, log: true}}"
        )
    return {str(key): _parse_param(str(key), spec) for key, spec in raw.items()}


def parse_grid(raw: Any) -> dict[str, Param]:
    """A grid: each key's list of values, every combination of which a trial runs (kept as categoricals)."""
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, list) for v in raw.values()):
        raise ConfigError(
            "grid: expected a mapping of run-config keys to lists of values, e.g. {model.proj_dim: [64, 128]}"
        )
    return {
        str(key): _parse_param(str(key), {"type": "categorical", "choices": values}, "grid")
        for key, values in raw.items()
    }


def _parse_param(key: str, spec: Any, section: str = "space") -> Param:
    where = f"{section}.{key}"
    if not isinstance(spec, dict) or spec.get("type") not in TYPES:
        got = spec.get("type") if isinstance(spec, dict) else spec
        raise ConfigError(f"{where}: type={got!r}; expected one of {', '.join(TYPES)} with its fields")
    kind, log = spec["type"], bool(spec.get("log", False))
    if kind == "log-float":
        kind, log = "float", True
    unknown = sorted(set(spec) - FIELDS[kind] - {"type"})
    if unknown:
        raise ConfigError(
            f"{where}: {unknown[0]!r} is not a field of a {kind}; it takes {', '.join(sorted(FIELDS[kind]))}"
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices must be a non-empty list")
        if any(not isinstance(c, str | int | float | bool) and c is not None for c in choices):
            raise ConfigError(f"{where}: choices must be numbers, strings, booleans or null")
        if len({json.dumps(c) for c in choices}) != len(choices):
            raise ConfigError(f"{where}: choices repeat a value")
        return Param(key, kind, choices=tuple(choices))

    low, high, step = spec.get("low"), spec.get("high"), spec.get("step")
    for name, value in (("low", low), ("high", high)):
        if not _is_number(value):
            raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
    if kind == "int" and not all(float(v).is_integer() for v in (low, high)):
        raise ConfigError(f"{where}: an int range needs whole low and high, got {low}..{high}; use type: float")
    if not low < high:
        raise ConfigError(f"{where}: empty range low={low} >= high={high}: set low < high")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {low}")
    if step is not None:
        if not _is_number(step) or step <= 0:
            raise ConfigError(f"{where}: step must be a number > 0, got {step!r}")
        if log:
            raise ConfigError(f"{where}: step and log cannot be combined: drop one")
        if step > high - low:
            raise ConfigError(f"{where}: step {step} is wider than the range {low}..{high}")
    return Param(key, kind, low=low, high=high, log=log, step=step)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def cli_value(value: Any) -> str:
    """A value as the run's command line reads it: strings as they are, the rest as JSON (true, null, 0.1)."""
    return value if isinstance(value, str) else json.dumps(value)


def overrides(values: dict[str, Any]) -> list[str]:
    """`{"model.temperature": 0.1}` as `["--model.temperature", "0.1"]`."""
    args: list[str] = []
    for key, value in values.items():
        args += [f"--{key}", cli_value(value)]
    return args


def set_key(config: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key in a run config, through `class_path`/`init_args` nodes as the CLI does:
    `model.temperature` lands in `model.init_args.temperature` when `model` names its class."""
    node, parts = config, key.split(".")
    for part in parts[:-1]:
        if part not in node and "class_path" in node:
            node = node.setdefault("init_args", {})
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    if parts[-1] not in node and "class_path" in node:
        node = node.setdefault("init_args", {})
    node[parts[-1]] = value


def check_keys(base: Path | dict[str, Any], entries: dict[str, list[Any]], where: str) -> None:
    """Parse the base config with each entry's values through the run CLI's own parser.

    `entries` maps a key to the values it will take (`{"model.temperature": [0.05, 0.5]}`); a key the
    run config does not have, or a value it refuses, is a ConfigError naming `<where>.<key>`.
    """
    with tempfile.TemporaryDirectory() as folder:
        if isinstance(base, dict):
            path = Path(folder) / "base.yaml"
            path.write_text(yaml.safe_dump(base))
        else:
            path = base
        rounds = max([1, *(len(values) for values in entries.values())])
        for i in range(rounds):
            values = {key: vals[i % len(vals)] for key, vals in entries.items() if vals}
            try:
                _parse(path, values)
            except ConfigError:
                _name_culprit(path, values, where)
                raise


def _name_culprit(path: Path, values: dict[str, Any], where: str) -> None:
    """Raise the error of the first entry that fails alone, under its own name."""
    for key, value in values.items():
        try:
            _parse(path, {key: value})
        except ConfigError as err:
            reason = str(err).split(" (see `")[0]
            raise ConfigError(f"{where}.{key}={cli_value(value)}: the run config refuses it ({reason})") from None


def _parse(path: Path, values: dict[str, Any]) -> None:
    check_run_config(path, overrides(values))
