"""`contrastlab ui`: the MLflow UI on 127.0.0.1 against the store the runs use."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from contrastlab.platform import tracking

# MLflow 3's UI opens in its GenAI view unless the URL (or a click on its switch, which it remembers)
# asks for model training; our experiments are also tagged as model training (runpage.py).
MODEL_TRAINING_VIEW = "machine_learning"
UI_BASE = "http://127.0.0.1:5000"  # where `contrastlab ui` serves by default


def page_url(
    base: str, experiment_id: str | None = None, run_id: str | None = None, sort_by: tuple[str, bool] | None = None
) -> str:
    """A page of the MLflow UI at `base`, in its model-training view: the experiments, one's runs, or a run.

    `sort_by` (metric, ascending) orders the runs table by that metric. MLflow nests child runs under their parent
    only in its default start-time order, folded until clicked (which row is open it keeps in the browser alone,
    not even in a shared view); in any other order every run is a row of its own. So a sweep's page sorted by its
    objective opens with every trial in sight, best first. (Read in MLflow 3.17's UI bundle.)
    """
    path = "/experiments"
    if experiment_id is not None:
        path += f"/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")
    query = f"workflowType={MODEL_TRAINING_VIEW}"
    if sort_by is not None:
        metric, ascending = sort_by
        query += f"&orderByKey={quote(f'metrics.`{metric}`', safe='')}&orderByAsc={str(ascending).lower()}"
    return f"{base.rstrip('/')}/#{path}?{query}"


def main(argv: list[str], more_pages: Callable[[str, str], list[str]] | None = None) -> int:
    """`more_pages(uri, base)`: lines naming more pages worth opening first (the sweeps' trials, from the sweeps
    layer, which this one may not import)."""
    parser = argparse.ArgumentParser(prog="contrastlab ui", description=__doc__)
    parser.add_argument("--tracking-uri", default=None, help="store to browse (default: the runs' default store)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--host", default="127.0.0.1", help="keep 127.0.0.1 unless you mean to share it")
    # MLflow's default is 4 worker processes, each importing mlflow (about 250 MB): one person browsing needs one.
    parser.add_argument("--workers", type=int, default=1, help="server processes (default 1; more for a team)")
    args = parser.parse_args(argv)
    try:
        uri = tracking.resolve_uri(args.tracking_uri)
    except tracking.ConfigError as err:
        print(f"contrastlab: error: {err}", file=sys.stderr)
        return 2
    if not uri.startswith(tracking.SQLITE_PREFIX):
        print(f"{uri} is a tracking server: open it in a browser; `contrastlab ui` serves local stores")
        return 0
    artifacts = Path(uri[len(tracking.SQLITE_PREFIX) :]).resolve().parent / "artifacts"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        artifacts.as_uri(),
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        str(args.workers),
    ]
    url = page_url(f"http://{args.host}:{args.port}")
    print(f"MLflow UI for {uri} at {url} (Ctrl-C to stop)", flush=True)
    for line in more_pages(uri, f"http://{args.host}:{args.port}") if more_pages else []:
        print(line, flush=True)
    # Browsing runs needs no job runner: MLflow 3 would start six job-consumer processes beside the UI (each
    # importing mlflow, about 250 MB), for its GenAI features. A user who wants them sets the variable to true.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # Become the UI process, so that a signal to `contrastlab ui` reaches MLflow's server directly.
    os.execv(sys.executable, command)
