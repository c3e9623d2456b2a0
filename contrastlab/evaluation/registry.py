"""The offline evaluation protocols of `contrastlab eval`, by name: one file per protocol, registered here.

A protocol is a subclass of `Protocol` decorated with `@register`. It declares what it needs (`Needs`: labels,
classes per split, which splits, single-label data, keys of `DataInfo.extra` such as a pairing) and returns
named metrics from features. The CLI's `--protocols`, the skip/refuse reasons (`support`), the results and
the headline metric of the `eval --runs` table all come from this registry, so adding a protocol is one file:

    from contrastlab.evaluation.registry import Needs, Protocol, register

    @register
    class Centroid(Protocol):
        name = "centroid"
        headline = "top1"
        needs = Needs(splits=("train", "test"), single_label="a centroid is one class per sample")

        def run(self, ctx):
            ...  # ctx.feats["train"]["features"], ctx.feats["train"]["y"], ctx.num_classes, ctx.options
            return {"top1": accuracy}

The built-in protocols live in `contrastlab/evaluation/offline/` and are registered the first time the
registry is read. This module knows no platform and no modality: the caller passes the data's `info`
(name, num_classes, extra), the features of each split, and a `Context` for running.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from tqdm import tqdm

from contrastlab.evaluation import protocols as P
from contrastlab.evaluation.features import Features

BUILTIN = "contrastlab.evaluation.offline"


@dataclass(frozen=True)
class Needs:
    """What a protocol needs of the data; `Protocol.support` turns each unmet need into one reason.

    Args:
        labels: the data must be labelled (`info.num_classes` > 0); False: the protocol runs on any data.
        splits: the splits whose features it reads, each of which must exist (e.g. ("train", "val", "test")).
        classes: with labels, the least number of classes of each split, in the order checked ("train": 2 is
            at least two classes; 1 is at least one labelled sample). Multi-label splits need one labelled row.
        single_label: the reason multi-label data is refused ("kNN top-1 needs one class per sample"); empty:
            multi-label data is fine.
        extra: keys of `info.extra` the data must carry, e.g. ("text",) for a protocol that needs an
            image-text pairing.
    """

    labels: bool = True
    splits: tuple[str, ...] = ("train", "test")
    classes: Mapping[str, int] = field(default_factory=lambda: {"train": 2, "test": 1})
    single_label: str = ""
    extra: tuple[str, ...] = ()


@dataclass
class Context:
    """What `Protocol.run` may read: the features of each split, the data's labels and loaders, the model,
    the device, the parsed options (`options.seed`, and each protocol's own options), and `shared` work."""

    feats: dict[str, Features | None]
    num_classes: int
    options: Any
    device: torch.device
    model: Any = None
    loader: Callable[[str], Any] | None = None  # the DataModule's deterministic loader of a split
    _shared: dict[str, Any] = field(default_factory=dict)

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """`compute()` once per evaluation, for protocols that read the same fit (linear and auroc: the probe)."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]


def number_list(kind: Callable[[str], Any], option: str) -> Callable[[str], list]:
    """An argparse `type` for a protocol's option of comma-separated numbers (`--k 1,20`)."""

    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option}: expected comma-separated numbers, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"{option}: empty list")
        return values

    return parse


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    # tqdm.write, not print: on a terminal a bar is being drawn (`contrastlab eval`'s), and a print would cut it
    tqdm.write(f"{what}: {time.monotonic() - started:.1f} s", file=sys.stdout)
    sys.stdout.flush()


class Protocol:
    """One evaluation protocol. Subclasses set `name`, `needs`, `headline` and write `run`.

    `order` places a protocol's results among the others (lower first); `run_groups` returns more than
    one group of metrics (fine-tuning: one per labelled fraction, `finetune_10pct`, ...). `add_options` and
    `check_options` give a protocol its own `contrastlab eval` options.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[Needs] = Needs()
    headline: ClassVar[str | None] = None  # the metric the `eval --runs` table shows
    order: ClassVar[int] = 100

    def support(self, info, feats: Mapping[str, Features | None]) -> str | None:
        """Why the data (`info`: name, num_classes, extra) and its features cannot support this protocol, or None."""
        needs, name = self.needs, self.name
        if needs.labels and info.num_classes == 0:
            return f"{info.name} has no labels (data.info.num_classes is 0); {name} needs labelled data"
        for split in needs.splits:
            if feats.get(split) is None:
                return f"{info.name} has no {split} split; {name} needs {', '.join(needs.splits)}"
        for key in needs.extra:
            if key not in (getattr(info, "extra", None) or {}):
                return f"{info.name} has no {key!r} in data.info.extra; {name} needs it"
        if not needs.labels:
            return None
        try:
            first = next((feats[s] for s in needs.splits if feats.get(s) is not None), None)
            if needs.single_label and first is not None and P.is_multilabel(first["y"]):
                return f"multi-label data: {needs.single_label}"
            for split, minimum in needs.classes.items():
                if feats.get(split) is not None:
                    P.require_classes(name, feats[split]["y"], split, minimum=minimum)
        except P.UnsupportedProtocol as err:
            return err.reason
        return None

    def run(self, ctx: Context) -> dict[str, float]:
        """The metrics, logged as `eval/<name>/<metric>`."""
        raise NotImplementedError

    def run_groups(self, ctx: Context) -> dict[str, dict[str, float]]:
        """Groups of metrics by name (`eval/<group>/<metric>`); by default the one group `name`."""
        return {self.name: self.run(ctx)}

    def headline_of(self, metrics: Mapping[str, float]) -> tuple[str, float] | None:
        """The (metric, value) a table shows for one group of this protocol's metrics, or None."""
        if self.headline is not None and self.headline in metrics:
            return self.headline, metrics[self.headline]
        return None

    def add_options(self, parser) -> None:
        """Add this protocol's own options to the `contrastlab eval` argparse parser."""

    def check_options(self, options) -> None:
        """Refuse bad values of this protocol's options (raise ConfigError with one line)."""


_REGISTRY: dict[str, Protocol] = {}
_loaded = False


def register(cls: type[Protocol]) -> type[Protocol]:
    """Class decorator: add the protocol `cls.name` (a second class of the same name replaces the first)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__}: a protocol needs a name")
    _REGISTRY[cls.name] = cls()
    return cls


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        importlib.import_module(BUILTIN)


def names() -> list[str]:
    """Every registered protocol, the built-in ones first."""
    _load_builtin()
    return list(_REGISTRY)


def get(name: str) -> Protocol:
    _load_builtin()
    return _REGISTRY[name]


def protocols() -> list[Protocol]:
    _load_builtin()
    return list(_REGISTRY.values())


def support(name: str, info, feats: Mapping[str, Features | None]) -> str | None:
    """Why the data cannot support protocol `name`, or None when it can."""
    return get(name).support(info, feats)


def splits_needed(chosen: list[str]) -> set[str]:
    return {split for name in chosen for split in get(name).needs.splits}


def run(
    chosen: list[str], ctx: Context, shown: Callable[[list[Protocol]], Iterable[Protocol]] = iter
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Run the `chosen` protocols (in their `order`): the metrics of each group, and the protocol of each group.
    `shown` wraps the list as the caller shows progress (a bar on a terminal)."""
    results: dict[str, dict[str, float]] = {}
    sources: dict[str, str] = {}
    for protocol in shown(sorted((get(name) for name in chosen), key=lambda p: p.order)):
        for group, metrics in protocol.run_groups(ctx).items():
            results[group], sources[group] = metrics, protocol.name
    return results, sources


def headline(group: str, metrics: Mapping[str, float], source: str | None = None) -> tuple[str, float] | None:
    """The (metric, value) the table shows for one group of results; `source`: the protocol that gave it."""
    _load_builtin()
    protocol = _REGISTRY.get(source or group)
    return protocol.headline_of(metrics) if protocol is not None else None
