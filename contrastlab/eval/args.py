"""The options of `contrastlab eval`: the general ones here, each protocol's own from its protocol
(`Protocol.add_options`, see evaluation/registry.py)."""

from __future__ import annotations

import argparse

from contrastlab.errors import ConfigError
from contrastlab.evaluation import registry
from contrastlab.evaluation.features import SPACES

DESCRIPTION = (
    "`contrastlab eval`: evaluate a checkpoint, or a run's best checkpoint, offline with the protocols the\n"
    "papers use, and log the results into the MLflow run that wrote the checkpoint."
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, like every other refusal of the CLI
        raise ConfigError(f"{message} (see `contrastlab eval --help`)")


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _baselines(text: str) -> list[str]:
    names = _names(text)
    return [] if names == ["none"] else names


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = _Parser(prog="contrastlab eval", description=DESCRIPTION)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--ckpt", help="a checkpoint written by contrastlab fit")
    which.add_argument("--run", help="an MLflow run id: its best checkpoint (else its last)")
    which.add_argument("--runs", type=_names, help="comma-separated run ids: evaluate each, write one table")
    which.add_argument(
        "--datasets",
        type=_names,
        help="comma-separated dataset names (a run's `dataset` tag): evaluate their finished runs, write one table",
    )
    parser.add_argument(
        "--filter", help="with --datasets: an MLflow filter on the runs too, e.g. \"tags.method = 'SimCLR'\""
    )
    parser.add_argument(
        "--baselines",
        type=_baselines,
        default=None,
        help="the practitioner's baselines beside the learned features, comma-separated: those the data declares "
        "(raw_nn, raw_logistic, raw_dtw, mfcc_nn, mfcc_logistic, minirocket_ridge, ...) and supervised (default: "
        "all the data allows; none: no baseline)",
    )
    parser.add_argument("--dtw-window", type=float, help="raw_dtw's Sakoe-Chiba band, a fraction (default: none)")
    parser.add_argument("--table-experiment", default="eval-tables", help="the experiment of a table's run")
    parser.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="with --run/--runs/--datasets: each run's best checkpoint (else its last), or its last",
    )
    parser.add_argument(
        "--tracking-uri", help="MLflow store (default MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)"
    )
    parser.add_argument(
        "--protocols",
        default=None,
        help=f"comma-separated, from {','.join(registry.names())} (default: all the data supports)",
    )
    parser.add_argument(
        "--features",
        choices=SPACES,
        default="backbone",
        help="what the protocols on frozen features read: the backbone's output (default), or the projector's "
        "after it, the space the loss compares (keeps less of what the views vary, e.g. the speaker)",
    )
    for protocol in registry.protocols():
        protocol.add_options(parser)
    parser.add_argument("--register", metavar="NAME", help="log the encoder to the MLflow Model Registry as NAME")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--cache-dir", help="where features are cached (default: <checkpoint folder>/eval-cache)")
    parser.add_argument(
        "--tsne-points", type=int, default=2000, help="points in the t-SNE picture (default 2000; 0: no picture)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of subsets, fine-tuning, SVM folds, t-SNE")
    args = parser.parse_args(argv)
    args.protocols = _parse_protocols(args.protocols)
    for protocol in registry.protocols():
        protocol.check_options(args)
    if args.dtw_window is not None and not 0 <= args.dtw_window <= 1:
        raise ConfigError(f"--dtw-window: {args.dtw_window} is not a fraction in [0, 1]; e.g. 0.1")
    if args.filter and not args.datasets:
        raise ConfigError("--filter selects among the runs of --datasets; give --datasets too")
    return args


def _parse_protocols(text: str | None) -> list[str] | None:
    if text is None:
        return None
    known = registry.names()
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in known:
            raise ConfigError(f"--protocols: unknown protocol {name!r}; choose from {','.join(known)}")
    return names or None
