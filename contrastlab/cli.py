"""The `contrastlab` command: the one dispatcher of its verbs.

- fit, validate, test, predict: a run (contrastlab/platform/cli.py, LightningCLI tracked in MLflow);
- sweep: an Optuna study whose trials are runs (contrastlab/sweeps/study.py);
- eval: a trained run's encoder evaluated offline (contrastlab/eval/cli.py);
- ui: the MLflow UI over the runs' store (contrastlab/platform/ui.py).

Each verb's code is imported when the verb is called, so that a run loads no sweep or eval code.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    # MLflow 3 sends usage events from the client; on a machine without internet its sender stalled a
    # training's logging (a short fit ran far longer, its steps unseen until the end). Opt back in by setting it.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    verb = argv[0] if argv else ""
    if verb == "ui":
        from contrastlab.platform.ui import main as ui_main
        from contrastlab.sweeps.summary import sweep_pages

        raise SystemExit(ui_main(argv[1:], more_pages=sweep_pages))
    if verb in ("sweep", "eval"):
        from contrastlab.platform.cli import quiet_known_warnings

        quiet_known_warnings()
        if verb == "sweep":
            from contrastlab.sweeps.study import main as verb_main
        else:
            from contrastlab.eval.cli import main as verb_main
        raise SystemExit(verb_main(argv[1:]))
    from contrastlab.platform.cli import main as run_main

    run_main(argv)
