"""The `contrastlab eval` verb: parse its options, evaluate one checkpoint (run.py) or many runs into one table
(table.py), and end a refusal with one line."""

from __future__ import annotations

import argparse
import os

from contrastlab.eval.args import parse_args
from contrastlab.eval.run import evaluate_target, pick_device
from contrastlab.eval.table import evaluate_table
from contrastlab.eval.targets import locate
from contrastlab.platform import tracking
from contrastlab.platform.exits import user_error_exit


def evaluate(args: argparse.Namespace) -> int:
    uri = tracking.resolve_uri(args.tracking_uri)  # an embedded store by its absolute path
    device = pick_device(args.device)  # checked before any work
    if args.runs or args.datasets:
        return evaluate_table(args, uri, device)
    target, client = locate(args, uri)
    evaluate_target(args, target, client, uri, device)
    return 0


def main(argv: list[str]) -> int:
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return evaluate(parse_args(argv))
    except SystemExit:
        raise
    except Exception as exc:
        code = user_error_exit(exc)
        if code is None:
            raise
        return code
