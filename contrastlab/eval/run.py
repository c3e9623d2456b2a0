"""`contrastlab eval`: evaluate a checkpoint, or a run's best checkpoint, offline with the protocols the
papers use, and log the results into the MLflow run that wrote the checkpoint.

    contrastlab eval --run RUN_ID                       # every protocol the data supports
    contrastlab eval --ckpt checkpoints/digits/RUN/last.ckpt --protocols knn,linear --k 1,20
    contrastlab eval --run RUN_ID --register digits-encoder     # also into the Model Registry
    contrastlab eval --datasets GunPoint,ArrowHead --protocols svm   # one table over many runs

This module runs one located checkpoint: the model and data are built from the run's own `config.yaml`
(targets.py), the features of each split the chosen protocols read are extracted once and cached beside
the checkpoint, the protocols come from `contrastlab.evaluation.registry`, the data's baselines from
`contrastlab.evaluation.baselines` (on the same splits, beside them), and the results go into the run
(report.py) and, with `--register`, into the Model Registry (export.py). The options are in args.py, the
verb's entry in cli.py, and `--runs`/`--datasets` tables in table.py.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from contrastlab.errors import ConfigError
from contrastlab.eval.export import register
from contrastlab.eval.report import eval_options, log_results, results_markdown
from contrastlab.eval.targets import Target, build
from contrastlab.evaluation import baselines as B
from contrastlab.evaluation import registry
from contrastlab.evaluation.features import FeatureCache, Features, extract_features, split_loader
from contrastlab.evaluation.plots import tsne_png
from contrastlab.evaluation.protocols import UnsupportedProtocol
from contrastlab.evaluation.registry import timed
from contrastlab.platform import stores
from contrastlab.platform.terminal import bar

SPLITS = ("train", "val", "test")
LOADING = ("batch_size", "eval_batch_size", "num_workers")  # data settings that change no sample


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device here; use --device cpu (or auto)")
    return device


@dataclass
class Evaluated:
    """One checkpoint's results, and what they were computed on."""

    results: dict[str, dict[str, float]]
    skipped: dict[str, str]
    datamodule: Any
    sources: dict[str, str] = field(default_factory=dict)  # the protocol of each group of results
    labels: dict[str, str] = field(default_factory=dict)  # what each baseline's group of results is


def features(args: argparse.Namespace, target: Target, model, datamodule, requested: list[str], device):
    """The features of each split the `requested` protocols read (None: the data has no such split), cached."""
    cache = FeatureCache(Path(args.cache_dir) if args.cache_dir else target.ckpt.parent / "eval-cache", target.ckpt)
    wanted = registry.splits_needed(requested) | {"train", "test"}
    feats: dict[str, Features | None] = {}
    for split in SPLITS:
        if split not in wanted:
            continue
        loader = split_loader(datamodule.eval_loader, split)
        if loader is None:
            feats[split] = None
            continue
        shown = bar(loader, f"features of {split}")
        cached = split if args.features == "backbone" else f"{split}-{args.features}"
        feats[split] = cache.get(cached, lambda shown=shown: extract_features(model, shown, device, args.features))
    if cache.hits:
        print(f"features of {', '.join(cache.hits)} read from the cache in {cache.folder}", flush=True)
    return feats


def choose(args: argparse.Namespace, requested: list[str], info, feats) -> tuple[list[str], dict[str, str]]:
    """The protocols the data supports, and why each other one is skipped; a protocol asked for by name
    that the data cannot support is refused before anything is logged."""
    chosen, skipped = [], {}
    for protocol in requested:
        reason = registry.support(protocol, info, feats)
        if reason is None:
            chosen.append(protocol)
        elif args.protocols:
            raise UnsupportedProtocol(protocol, reason)
        else:
            skipped[protocol] = reason
            print(f"skipped {protocol}: {reason}", flush=True)
    return chosen, skipped


def wanted_baselines(args: argparse.Namespace, datamodule) -> list[str]:
    """`--baselines` (default: every one the data declares), each checked against what the data declares."""
    known = B.names(datamodule)
    for name in args.baselines or []:
        if name not in known:
            choices = ",".join(known)
            raise ConfigError(
                f"--baselines: {datamodule.info.name} declares no baseline {name!r}; choose from {choices} or none"
            )
    return known if args.baselines is None else args.baselines


def baselines(args, target: Target, datamodule, model, initial, device, memo: dict | None):
    """The practitioner's baselines on this run's splits: (results, skipped, label of each group). Those of
    the data alone are computed once per data config when a table passes a `memo`; the supervised one, from this
    run's own initialisation, for every run."""
    wanted = wanted_baselines(args, datamodule)
    if not wanted:
        return {}, {}, {}
    # The data's config, less what does not change its splits, says which runs share those baselines.
    data = dict(target.config.get("data") or {})
    data["init_args"] = {k: v for k, v in (data.get("init_args") or {}).items() if k not in LOADING}
    key = repr((data, args.seed, args.dtw_window))
    memo = {} if memo is None else memo
    with timed("baselines"):
        hand = [n for n in wanted if n != B.SUPERVISED]
        if key not in memo:
            memo[key] = B.run_baselines(datamodule, hand, options=args, device=device)
        results, skipped = copy.deepcopy(memo[key])
        if B.SUPERVISED in wanted:
            fresh = copy.deepcopy(model)
            fresh.load_state_dict(initial)
            more, why = B.run_baselines(datamodule, [B.SUPERVISED], initial_model=fresh, options=args, device=device)
            results.update(more)
            skipped.update(why)
    named = lambda group: f"baseline_{group}"  # noqa: E731
    labels = {named(group): B.label(datamodule, group) for group in results}
    return (
        {named(g): m for g, m in results.items()},
        {named(n): why for n, why in skipped.items()},
        labels,
    )


def evaluate_target(
    args: argparse.Namespace, target: Target, client, uri: str, device: torch.device, memo: dict | None = None
) -> Evaluated:
    """Evaluate one located checkpoint with the requested protocols, and the data's baselines beside them, and
    log the results into its run. `memo`: baselines of the data alone already computed (a table's)."""
    model, datamodule, target.step, initial = build(target.config, target.ckpt)
    info = datamodule.info
    wanted_baselines(args, datamodule)  # a wrong name is refused before any work
    model.to(device)
    requested = args.protocols or registry.names()
    feats = features(args, target, model, datamodule, requested, device)
    chosen, skipped = choose(args, requested, info, feats)
    context = registry.Context(feats, info.num_classes, args, device, model, datamodule.eval_loader)
    results, sources = registry.run(chosen, context, shown=lambda protocols: bar(protocols, "protocols"))
    more, why, labels = baselines(args, target, datamodule, model, initial, device, memo)
    results.update(more)
    skipped.update(why)
    sources.update({group: "baseline" for group in more})
    picture = None
    if feats.get("test") is not None and args.tsne_points > 0:
        with timed("t-SNE"):
            picture = tsne_png(
                feats["test"]["features"],
                feats["test"]["y"],
                Path(tempfile.mkdtemp()) / "tsne.png",
                title=f"t-SNE of the test split: {target.ckpt.name} of run {target.run_id[:8]}",
                max_points=args.tsne_points,
                seed=args.seed,
            )
    options = eval_options(args)
    log_results(client, target, results, skipped, picture, labels, options)
    if args.register:
        example = next(iter(datamodule.eval_loader("test" if feats.get("test") is not None else "train")))["x"][:2]
        version = register(model, target, args.register, uri, client, example)
        print(f"registered the encoder as models:/{args.register}/{version}", flush=True)
    print(results_markdown(target, results, skipped, labels, options), flush=True)
    print(f"logged into run {target.run_id} ({stores.redact(uri)})", flush=True)
    return Evaluated(results, skipped, datamodule, sources, labels)
