"""The quality ledger: each reference recipe trained and evaluated as a user would, over seeds, beside the baseline
a practitioner would run instead, and a gate that fails a rerun below the recorded figures.

    .venv/bin/python benchmarks/quality.py                          # every recipe, 3 seeds: writes the ledger
    .venv/bin/python benchmarks/quality.py --only digits-simclr     # one recipe (the others stay as recorded)
    .venv/bin/python benchmarks/quality.py --check [--only NAME]    # rerun and compare: exit 1 on a regression
    make quality                                                    # the check of every recipe: a release's gate

A recipe (benchmarks/quality.yaml, or `--recipes FILE`) is a run config and its overrides, the `contrastlab eval`
protocols to run on its checkpoint, the figures to record (MLflow keys the eval logs, e.g. `eval/knn/top1_k20`)
and the baselines beside them (keys the same eval logs from the same splits, e.g. the raw-pixel 1-NN). Each seed is
`contrastlab fit -c CONFIG --seed_everything S ...` then `contrastlab eval --run RUN ...`, each a process of its
own on a store of the ledger's (`--store`, default a temporary one), and the figures are read back from the run.
`--keep DIR` keeps the checkpoints under DIR (by default they go with a temporary folder), so that a run can be
evaluated again: `contrastlab eval --run RUN --tracking-uri STORE --checkpoint last`.

The ledger (benchmarks/quality.json) holds, per recipe and figure: the metric, split and protocol, each seed's
value, mean and sd, the baselines' values the same way, the wall seconds per seed (fit and eval), the fit's
wall and CPU seconds, the commit (`-dirty` when tracked files differ from it), the machine and the
date. `--check` reruns and names every figure whose new mean falls below its recorded mean - max(2 sd, 0.01).
The table of the ledger goes into docs/benchmarks/quality.md (mean ± sd beside each baseline).
"""

from __future__ import annotations

import argparse
import atexit
import functools
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from figures import mean_sd, write_block  # noqa: E402

from contrastlab.platform.warm import WarmProcesses  # noqa: E402

RECIPES = HERE / "quality.yaml"
LEDGER = HERE / "quality.json"
TOLERANCE = 0.01  # the least a figure may fall before the gate says so: below it, a rerun is noise
RUN_LINE = re.compile(r"^run ([0-9a-f]{32}) in experiment")


@dataclass
class Recipe:
    name: str
    config: str
    figures: dict[str, str]  # figure name -> the MLflow metric key `contrastlab eval` logs
    split: str
    overrides: list[str] = field(default_factory=list)
    protocols: str = "knn,linear"
    eval_args: list[str] = field(default_factory=list)
    baselines: dict[str, str] = field(default_factory=dict)
    note: str = ""


def load_recipes(path: Path) -> dict[str, Recipe]:
    raw = yaml.safe_load(path.read_text()) or {}
    recipes = {}
    for name, spec in raw.items():
        unknown = set(spec) - (set(Recipe.__dataclass_fields__) - {"name"})
        if unknown:
            raise SystemExit(f"{path}: recipe {name}: unknown key {sorted(unknown)[0]!r}")
        recipes[name] = Recipe(name=name, **spec)
    return recipes


@functools.cache
def warm() -> WarmProcesses:
    """Where each command is forked: a server that imports once for every seed's fit and eval."""
    processes = WarmProcesses(["contrastlab.platform.cli", "contrastlab.eval.cli"], entry="contrastlab.cli:main",
                              main_module="contrastlab", cwd=REPO)  # fmt: skip
    atexit.register(processes.close)
    return processes


def contrastlab(args: list[str], store: str) -> tuple[str, float, float]:
    """`contrastlab ARGS` as its own process: its stdout, wall seconds and CPU seconds (user + system, all its
    threads), or SystemExit with its error's last lines. On a shared machine the wall says little; the CPU seconds
    over the threads it used are the idle wall's estimate."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        command = warm().start([*args, "--tracking-uri", store], env, out, err, cwd=REPO)
        if command.wait() != 0:
            tail = err.read_text(errors="replace")[-3000:]
            raise SystemExit(f"contrastlab {' '.join(args[:3])} ... exited {command.returncode}:\n{tail}")
        wall = time.monotonic() - started
        cpu = getattr(command, "cpu_seconds", None)  # a forked command's, as its server measured it
        if cpu is None:  # a new interpreter's, waited on here
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return out.read_text(errors="replace"), wall, cpu


def run_seed(recipe: Recipe, seed: int, store: str, cwd: Path) -> dict:
    """One seed: fit, eval, and the figures and baselines read back from the run."""
    import mlflow

    started = time.monotonic()
    # from the checkout, where configs find ../shared/data; checkpoints beside the store, not in the checkout
    fit = ["fit", "-c", str(REPO / recipe.config), "--seed_everything", str(seed)]
    fit += ["--tracking.experiment", f"quality-{recipe.name}", "--tracking.checkpoint_dir", str(cwd / "checkpoints")]
    fit += recipe.overrides
    out, fit_wall, fit_cpu = contrastlab(fit, store)
    run_id = next((m.group(1) for line in out.splitlines() if (m := RUN_LINE.match(line))), None)
    if run_id is None:
        raise SystemExit(f"{recipe.name}: the fit printed no run id:\n{out[-2000:]}")
    contrastlab(["eval", "--run", run_id, "--protocols", recipe.protocols, "--tsne-points", "0", *recipe.eval_args],
                store)  # fmt: skip
    metrics = mlflow.MlflowClient(store).get_run(run_id).data.metrics
    wanted = {**recipe.figures, **recipe.baselines}
    missing = [key for key in wanted.values() if key not in metrics]
    if missing:
        logged = ", ".join(sorted(k for k in metrics if k.startswith("eval/")))
        raise SystemExit(f"{recipe.name}: run {run_id} logged no {missing[0]} (it logged {logged})")
    return {
        "figures": {name: metrics[key] for name, key in recipe.figures.items()},
        "baselines": {name: metrics[key] for name, key in recipe.baselines.items()},
        "seconds": time.monotonic() - started,
        "fit_seconds": fit_wall,
        "fit_cpu_seconds": fit_cpu,
        "run_id": run_id,
    }


def summary(values: list[float]) -> dict:
    mean, sd = mean_sd(values)
    return {"values": values, "mean": mean, "sd": sd}


def measure(recipe: Recipe, seeds: list[int], store: str, cwd: Path) -> dict:
    """The recipe's ledger entry: every figure and baseline over the seeds."""
    runs = []
    for seed in seeds:
        runs.append(run_seed(recipe, seed, store, cwd))
        shown = ", ".join(f"{k} {v:.4f}" for k, v in {**runs[-1]["figures"], **runs[-1]["baselines"]}.items())
        last = runs[-1]
        seconds = f"{last['seconds']:.0f} s; fit {last['fit_seconds']:.0f} s, {last['fit_cpu_seconds']:.0f} CPU-s"
        print(f"{recipe.name} seed {seed}: {shown} ({seconds})", flush=True)
    return {
        "config": recipe.config,
        "overrides": recipe.overrides,
        "split": recipe.split,
        "protocols": recipe.protocols,
        "seeds": seeds,
        "figures": {
            name: {"metric": key, **summary([r["figures"][name] for r in runs])} for name, key in recipe.figures.items()
        },
        "baselines": {
            name: {"metric": key, **summary([r["baselines"][name] for r in runs])}
            for name, key in recipe.baselines.items()
        },
        "seconds": [round(r["seconds"], 1) for r in runs],
        "fit_seconds": [round(r["fit_seconds"], 1) for r in runs],
        "fit_cpu_seconds": [round(r["fit_cpu_seconds"], 1) for r in runs],
        "commit": commit(),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "note": recipe.note,
    }


def regressions(recorded: dict, rerun: dict) -> list[str]:
    """Each figure of `rerun` whose mean falls below the recorded mean - max(2 sd, TOLERANCE), said in one line."""
    fallen = []
    for recipe, entry in rerun.items():
        for name, now in entry["figures"].items():
            before = (recorded.get(recipe) or {}).get("figures", {}).get(name)
            if before is None:
                continue
            floor = before["mean"] - max(2 * before["sd"], TOLERANCE)
            if now["mean"] < floor:
                fallen.append(
                    f"{recipe}/{name}: {now['mean']:.4f} ± {now['sd']:.4f} is below {floor:.4f} "
                    f"(recorded {before['mean']:.4f} ± {before['sd']:.4f} at {before.get('commit', entry['commit'])})"
                )
    return fallen


def verdict(recorded: dict, rerun: dict) -> str:
    """Each figure of `rerun` beside its recorded one, one line each: `held` unless it fell (see `regressions`)."""
    fallen = regressions(recorded, rerun)
    lines = []
    for name, entry in rerun.items():
        for figure, now in entry["figures"].items():
            before = recorded[name]["figures"].get(figure)
            held = "" if any(line.startswith(f"{name}/{figure}:") for line in fallen) else " held"
            was = f" (recorded {before['mean']:.4f} ± {before['sd']:.4f})" if before else " (not recorded)"
            lines.append(f"{name}/{figure}: {now['mean']:.4f} ± {now['sd']:.4f}{was}{held}")
    return "\n".join(lines)


def table(ledger: dict) -> str:
    lines = [
        "| recipe | split | figure | ours (mean ± sd) | baselines (mean ± sd) | seeds | s per seed | commit |",
        "|---|---|---|---:|---|---:|---:|---|",
    ]
    for recipe, entry in ledger.items():
        baselines = "; ".join(f"{name} {b['mean']:.3f} ± {b['sd']:.3f}" for name, b in entry["baselines"].items())
        for name, figure in entry["figures"].items():
            lines.append(
                f"| {recipe} | {entry['split']} | {name} | {figure['mean']:.3f} ± {figure['sd']:.3f} | "
                f"{baselines or '-'} | {len(figure['values'])} | {statistics.fmean(entry['seconds']):.0f} | "
                f"{short(entry['commit'])} |"
            )
    notes = [f"- **{recipe}**: {entry['note']}" for recipe, entry in ledger.items() if entry.get("note")]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def commit(repo: Path = REPO) -> str:
    """HEAD's hash, with "-dirty" when tracked files differ from it: the figures then came from code no commit holds."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    if not head:
        return "unknown"
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True
    )
    return f"{head}-dirty" if changed.stdout.strip() else head


def short(commit: str) -> str:
    return commit[:8] + (" (dirty)" if commit.endswith("-dirty") else "")


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores, {platform.processor() or platform.system()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="rerun and exit 1 on a figure below the ledger's")
    parser.add_argument("--only", help="comma-separated recipe names (default: every recipe)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipes", type=Path, default=RECIPES)
    parser.add_argument("--ledger", type=Path, default=LEDGER)
    parser.add_argument("--store", help="MLflow store of the runs (default: a temporary one)")
    parser.add_argument(
        "--keep", type=Path, help="keep the runs' checkpoints (and eval's feature caches) under this folder"
    )
    parser.add_argument("--write-docs", action="store_true", help="also rewrite the table in the benchmark docs")
    args = parser.parse_args(argv)
    recipes = load_recipes(args.recipes)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(recipes)
    unknown = [n for n in names if n not in recipes]
    if unknown:
        parser.error(f"--only {unknown[0]}: no such recipe in {args.recipes} (it has {', '.join(recipes)})")
    recorded = json.loads(args.ledger.read_text()) if args.ledger.is_file() else {}
    if args.check:
        missing = [n for n in names if n not in recorded]
        if missing and args.only:
            parser.error(f"--check: {missing[0]} has no figures in {args.ledger}; run without --check first")
        if missing:  # every recipe: those recorded are checked, the others said
            print(f"not in {args.ledger.name} yet (record them without --check): {', '.join(missing)}", flush=True)
            names = [n for n in names if n in recorded]
        if not names:
            parser.error(f"--check: {args.ledger} records no recipe; run without --check first")

    rerun, failed = {}, []
    with tempfile.TemporaryDirectory(prefix="quality-") as folder:
        store = args.store or f"sqlite:///{Path(folder) / 'mlflow.db'}"
        where = args.keep or Path(folder)
        for name in names:
            try:
                rerun[name] = measure(recipes[name], args.seeds, store, where)
            except SystemExit as failure:  # one recipe's failure costs neither the others nor what they measured
                print(f"FAILED {name}: {failure}", file=sys.stderr, flush=True)
                failed.append(name)
                continue
            if args.check:  # said as each recipe ends: a check of many recipes runs for hours
                print(verdict(recorded, {name: rerun[name]}), flush=True)
            else:
                record(args.ledger, name, rerun[name])
    if failed:
        print(f"FAILED {len(failed)} of {len(names)} recipes: {', '.join(failed)}", file=sys.stderr)

    if args.check:
        fallen = regressions(recorded, rerun)
        for line in fallen:
            print(f"REGRESSION {line}", file=sys.stderr)
        return 1 if fallen or failed else 0
    ledger = json.loads(args.ledger.read_text()) if args.ledger.is_file() else {}
    print(f"wrote {', '.join(rerun) or 'no recipe'} to {args.ledger}")
    if args.write_docs:
        write_block("quality", table(ledger), "## The quality ledger: `benchmarks/quality.py`")
    print(table(ledger))
    return 1 if failed else 0


def record(ledger: Path, name: str, entry: dict) -> None:
    """`entry` into the ledger file as `name`, read afresh (another run may have written to it meanwhile) and
    replaced in one step, so that a reader never sees half a file."""
    current = json.loads(ledger.read_text()) if ledger.is_file() else {}
    current[name] = entry
    partial = ledger.with_name(f".{ledger.name}.{os.getpid()}")
    partial.write_text(json.dumps(current, indent=1) + "\n")
    os.replace(partial, ledger)


if __name__ == "__main__":
    raise SystemExit(main())
