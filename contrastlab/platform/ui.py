"""`contrastlab ui`: the MLflow UI on 127.0.0.1 against the store the runs use."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from contrastlab.platform import tracking


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="contrastlab ui", description=__doc__)
    parser.add_argument("--tracking-uri", default=None, help="store to browse (default: the runs' default store)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--host", default="127.0.0.1", help="keep 127.0.0.1 unless you mean to share it")
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
    ]
    print(f"MLflow UI for {uri} at http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    # Become the UI process, so that a signal to `contrastlab ui` reaches MLflow's server directly.
    os.execv(sys.executable, command)
