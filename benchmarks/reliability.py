"""Bad input, hostile files and a crowd on a new store, through the CLI as a user runs it.

Each case runs `contrastlab ...` in a fresh process in its own folder and records the exit code, the
seconds it took and the one `contrastlab: error:` line it printed (or the last line). Then N fits start
together on a new embedded store: every one must finish. Prints a markdown table (docs/benchmarks/platform.md).

    .venv/bin/python benchmarks/reliability.py [--crowd 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SIMCLR = REPO / "configs" / "simclr" / "digits.yaml"
BYOL = REPO / "configs" / "byol" / "digits.yaml"
TINY = [
    "--trainer.max_epochs", "1", "--data.init_args.max_train_samples", "256", "--data.init_args.batch_size", "64",
    "--tracking.system_metrics_interval", "0", "--test_after_fit", "false",
]  # fmt: skip
SECRET = "Sup3rSecretPw"


class RunsCode:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def contrastlab(cwd: Path, *args: str, timeout: float = 900) -> tuple[int, float, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "contrastlab", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    took = time.monotonic() - started
    lines = [line for line in proc.stderr.splitlines() if line.startswith("contrastlab: error:")]
    shown = lines[-1] if lines else (proc.stderr.strip().splitlines() or [""])[-1]
    return proc.returncode, took, shown, proc.stdout + proc.stderr


def trained(root: Path, config: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    code, _, line, _ = contrastlab(root, "fit", "-c", str(config), *TINY)
    assert code == 0, line
    (ckpt,) = (root / "checkpoints").rglob("last.ckpt")
    return ckpt


def cases(root: Path) -> list[tuple[str, Path, list[str], Path | None]]:
    """(what, folder, arguments, marker that must not appear)."""
    simclr, byol = trained(root / "simclr", SIMCLR), trained(root / "byol", BYOL)
    marker = root / "code-ran"
    evil = root / "evil" / "checkpoints" / "digits" / ("0" * 32) / "last.ckpt"
    evil.parent.mkdir(parents=True)
    meta = {"run_id": "0" * 32, "method": "simclr", "experiment": "digits"}
    torch.save({"contrastlab": meta, "state_dict": {}, "payload": RunsCode(marker)}, evil)
    junk = root / "notes.ckpt"
    junk.write_text("not a checkpoint")
    fit = ["fit", "-c", str(SIMCLR)]
    return [
        ("crafted checkpoint: `fit --resume FILE`", root / "evil", [*fit, "--resume", str(evil)], marker),
        ("crafted checkpoint: `fit --resume` (scan)", root / "evil", [*fit, "--resume"], marker),
        (
            "crafted checkpoint: `test --ckpt_path FILE`",
            root / "evil",
            ["test", "-c", str(SIMCLR), "--ckpt_path", str(evil)],
            marker,
        ),  # fmt: skip
        ("a text file as `--ckpt_path`", root / "junk", [*fit, "--ckpt_path", str(junk)], None),
        (
            "`--ckpt_path` with a changed hyper-parameter",
            root / "simclr",
            [*fit, *TINY, "--ckpt_path", str(simclr), "--model.temperature", "0.5"],
            None,
        ),  # fmt: skip
        ("`--ckpt_path` of another method's run", root / "simclr", [*fit, *TINY, "--ckpt_path", str(byol)], None),
        ("unreachable tracking server", root / "server", [*fit, "--tracking-uri", "http://127.0.0.1:9"], None),
        (
            "a password in an unreachable server's URI",
            root / "server",
            [*fit, "--tracking-uri", f"http://alice:{SECRET}@127.0.0.1:9"],
            None,
        ),  # fmt: skip
        ("a store in an unwritable place", root / "ro", [*fit, "--tracking-uri", "sqlite:////proc/x/mlflow.db"], None),
        (
            "diverging fit (`--model.optimizer.lr 1e6`)",
            root / "nan",
            [*fit, *TINY, "--trainer.max_epochs", "3", "--model.init_args.optimizer.lr", "1e6"],
            None,
        ),  # fmt: skip
        ("batch larger than the data", root / "batch", [*fit, "--data.init_args.batch_size", "5000"], None),
        ("unknown backbone", root / "backbone", [*fit, "--model.init_args.backbone", "resnet81"], None),
    ]


def crowd(root: Path, n: int) -> tuple[int, int, float]:
    """n fits started at once in one new folder: (how many exited 0, runs FINISHED, seconds)."""
    root.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"OMP_NUM_THREADS": "1"}
    quick = [*TINY, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "0"]
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "contrastlab", "fit", "-c", str(SIMCLR), *quick],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(n)
    ]
    codes = [p.wait(timeout=1800) for p in procs]
    took = time.monotonic() - started
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits")
    finished = [r for r in client.search_runs([experiment.experiment_id]) if r.info.status == "FINISHED"]
    return codes.count(0), len(finished), took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crowd", type=int, default=8, help="fits started at once on a new store")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="contrastlab-reliability-") as folder:
        root = Path(folder)
        rows = []
        for what, cwd, argv, marker in cases(root):
            cwd.mkdir(parents=True, exist_ok=True)
            code, took, line, everything = contrastlab(cwd, *argv)
            notes = []
            if marker is not None:
                notes.append("code ran!" if marker.exists() else "no code ran")
            if SECRET in everything:
                notes.append("SECRET PRINTED")
            if "Traceback" in everything:
                notes.append("traceback")
            rows.append((what, code, took, line.replace("|", "\\|"), ", ".join(notes)))
            print(f"{what}: exit {code} in {took:.1f} s: {line}", flush=True)
        ok, finished, took = crowd(root / "crowd", args.crowd)
    print("\n| bad input | exit | s | what it prints | notes |\n|---|---:|---:|---|---|")
    for what, code, seconds, line, notes in rows:
        print(f"| {what} | {code} | {seconds:.1f} | `` {line} `` | {notes} |")  # the line may hold backticks
    print(f"\n{args.crowd} fits started together on a new store: {ok} exited 0, {finished} runs FINISHED, {took:.0f} s")


if __name__ == "__main__":
    main()
