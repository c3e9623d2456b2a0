"""`contrastlab eval`: evaluate a checkpoint, or a run's best checkpoint, offline with the protocols the
papers use, and log the results into the MLflow run that wrote the checkpoint.

    contrastlab eval --run RUN_ID                       # every protocol the data supports
    contrastlab eval --ckpt checkpoints/digits/RUN/last.ckpt --protocols knn,linear --k 1,20
    contrastlab eval --run RUN_ID --register digits-encoder     # also into the Model Registry
    contrastlab eval --datasets GunPoint,ArrowHead --protocols svm   # one table over many runs

The model and data are built from the run's own `config.yaml` through the run CLI's parser, then the
checkpoint's weights are loaded (weights_only). Features of each split are extracted once and cached
beside the checkpoint. Metrics go to the run as `eval/<protocol>/<metric>` at the checkpoint's step,
with `eval/results.md`, `eval/results.csv` and `eval/tsne.png` as artifacts. `--runs` or `--datasets`
evaluate many runs into one table beside raw-feature baselines (see platform/eval_table.py).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from contrastlab.errors import CheckpointError, ConfigError
from contrastlab.evaluation import protocols as P
from contrastlab.evaluation.features import FeatureCache, Features, RawEncoder, extract_features
from contrastlab.evaluation.finetune import finetune, subset_loader
from contrastlab.evaluation.plots import tsne_png
from contrastlab.platform import checkpoints, stores, tracking
from contrastlab.platform.exits import user_error_exit

log = logging.getLogger("contrastlab")
PROTOCOLS = ("knn", "linear", "svm", "finetune", "auroc")
# The top-level keys of a run's config.yaml that building the model and data needs.
BUILD_KEYS = ("seed_everything", "model", "data")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, like every other refusal of the CLI
        raise ConfigError(f"{message} (see `contrastlab eval --help`)")


def _csv(kind, name: str):
    def parse(text: str):
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: expected comma-separated numbers, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"{name}: empty list")
        return values

    return parse


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = _Parser(prog="contrastlab eval", description=__doc__.split("\n\n")[0])
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
        default=None,
        help="with a table: raw-feature baselines beside it, from nn_euclidean,nn_dtw (default: both where the "
        "data allows; none: no baseline)",
    )
    parser.add_argument("--dtw-window", type=float, help="nn_dtw's Sakoe-Chiba band, a fraction (default: none)")
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
        help=f"comma-separated, from {','.join(PROTOCOLS)} (default: all the data supports)",
    )
    parser.add_argument("--k", type=_csv(int, "--k"), default=list(P.KNN_KS), help="kNN's k grid (default 1,5,20,200)")
    parser.add_argument("--knn-temperature", type=float, default=0.07, help="kNN vote weights exp(s/T) (default 0.07)")
    parser.add_argument(
        "--finetune-fractions",
        type=_csv(float, "--finetune-fractions"),
        default=[0.01, 0.1, 1.0],
        help="fractions of the train labels to fine-tune on (default 0.01,0.1,1.0)",
    )
    parser.add_argument("--finetune-epochs", type=int, default=10, help="epochs of each fine-tuning (default 10)")
    parser.add_argument("--finetune-lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    parser.add_argument("--finetune-batch-size", type=int, default=64, help="fine-tuning batch (default 64)")
    parser.add_argument("--svm-max-train", type=int, default=10000, help="SVM training samples at most (default 10000)")
    parser.add_argument("--register", metavar="NAME", help="log the encoder to the MLflow Model Registry as NAME")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--cache-dir", help="where features are cached (default: <checkpoint folder>/eval-cache)")
    parser.add_argument(
        "--tsne-points", type=int, default=2000, help="points in the t-SNE picture (default 2000; 0: no picture)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of subsets, fine-tuning, SVM folds, t-SNE")
    args = parser.parse_args(argv)
    args.protocols = _parse_protocols(args.protocols)
    for fraction in args.finetune_fractions:
        if not 0 < fraction <= 1:
            raise ConfigError(f"--finetune-fractions: {fraction} is not in (0, 1]; e.g. 0.01,0.1,1.0")
    if args.dtw_window is not None and not 0 <= args.dtw_window <= 1:
        raise ConfigError(f"--dtw-window: {args.dtw_window} is not a fraction in [0, 1]; e.g. 0.1")
    if args.filter and not args.datasets:
        raise ConfigError("--filter selects among the runs of --datasets; give --datasets too")
    if min(args.k) < 1:
        raise ConfigError(f"--k: {min(args.k)} is below 1; e.g. --k 1,5,20,200")
    if args.finetune_epochs < 1 or args.finetune_batch_size < 1:
        raise ConfigError("--finetune-epochs and --finetune-batch-size must be >= 1")
    return args


def _parse_protocols(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in PROTOCOLS:
            raise ConfigError(f"--protocols: unknown protocol {name!r}; choose from {','.join(PROTOCOLS)}")
    return names or None


# -- which checkpoint, which run, which config ----------------------------------------------------


@dataclass
class Target:
    ckpt: Path
    run_id: str
    config: dict[str, Any]
    status: str
    step: int = 0


def locate(args: argparse.Namespace, uri: str) -> tuple[Target, Any]:
    """The checkpoint, its run and the run's config; and a client of the store that holds the run."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if args.ckpt:
        ckpt = Path(args.ckpt)
        if not ckpt.is_file():
            raise ConfigError(
                f"--ckpt: checkpoint {ckpt} not found; pass a file written by contrastlab fit "
                "(checkpoints/<experiment>/<run id>/last.ckpt) or --run RUN_ID"
            )
        run_id = checkpoints.read_meta(ckpt)["run_id"]
        where = f"{ckpt} belongs to MLflow run {run_id}, which {stores.redact(uri)} does not hold"
        fix = "pass the --tracking-uri the run was logged to"
    else:
        run_id, ckpt = args.run, None
        where = f"--run {run_id}: no such run in {stores.redact(uri)}"
        fix = "copy the run id from `contrastlab ui`, pass --tracking-uri of the store it was logged to, or --ckpt PATH"
    client = MlflowClient(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise ConfigError(f"{where}; {fix}") from err
    config = run_config(client, run_id)
    if ckpt is None:
        experiment = client.get_experiment(run.info.experiment_id).name
        ckpt = run_checkpoint(client, run_id, experiment, config, getattr(args, "checkpoint", "best"))
    return Target(ckpt=ckpt, run_id=run_id, config=config, status=run.info.status), client


def run_config(client, run_id: str) -> dict[str, Any]:
    """The run's resolved config: its newest `resumes/<time>-config.yaml`, else `config.yaml`."""
    names = ["config.yaml"]
    try:
        resumes = sorted(a.path for a in client.list_artifacts(run_id, "resumes") if a.path.endswith("-config.yaml"))
        names = resumes[-1:] + names
    except Exception:  # a store without that folder
        pass
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            try:
                path = client.download_artifacts(run_id, name, folder)
            except Exception:
                continue
            return yaml.safe_load(Path(path).read_text()) or {}
    raise CheckpointError(
        f"run {run_id} has no config.yaml artifact, so its model cannot be rebuilt; "
        "evaluate a run trained by contrastlab fit"
    )


def run_checkpoint(client, run_id: str, experiment: str, config: dict[str, Any], prefer: str = "best") -> Path:
    """The run's best checkpoint, else its last (`prefer` "last": its last): from its checkpoint folder, else
    from its artifacts (downloaded into that folder, so a second eval finds it and its cached features)."""
    root = Path((config.get("tracking") or {}).get("checkpoint_dir") or "checkpoints")
    folder = checkpoints.run_dir(root, experiment, run_id)
    local = _best_or_last(list(folder.glob("*.ckpt")) if folder.is_dir() else [], prefer)
    if local is not None:
        return local
    logged = [
        f.path
        for d in client.list_artifacts(run_id)
        if d.is_dir
        for f in client.list_artifacts(run_id, d.path)
        if f.path.endswith(".ckpt")
    ]
    chosen = _best_or_last([Path(p) for p in logged], prefer)
    if chosen is None:
        raise CheckpointError(
            f"--run {run_id}: no checkpoint under {folder} nor among the run's artifacts; "
            "pass --ckpt PATH to a checkpoint of that run"
        )
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(client.download_artifacts(run_id, chosen.as_posix(), tmp))
        shutil.move(str(path), folder / path.name)
    return folder / path.name


def _best_or_last(paths: list[Path], prefer: str = "best") -> Path | None:
    """The newest `best-*.ckpt` (by modification time where the file is here), else `last.ckpt`; `prefer`
    "last": `last.ckpt` where there is one."""
    best = sorted(
        (p for p in paths if p.name.startswith("best")), key=lambda p: (p.stat().st_mtime if p.exists() else 0, p.name)
    )
    last = [p for p in paths if p.name == "last.ckpt"]
    return (last or best or [None])[-1] if prefer == "last" else (best or last or [None])[-1]


def build(config: dict[str, Any], ckpt: Path):
    """The model and DataModule of `config` (through the run CLI's parser), with `ckpt`'s weights."""
    from contrastlab.platform.cli import ContrastlabCLI

    class Build(ContrastlabCLI):
        def instantiate_trainer(self, **kwargs):
            return None

    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump({k: config[k] for k in BUILD_KEYS if k in config}))
        cli = Build(run=False, args=["-c", str(path)])
    model, datamodule = cli.model, cli.datamodule
    state = checkpoints.load_weights_only(ckpt, "--ckpt")
    try:
        model.load_state_dict(state["state_dict"])
    except (KeyError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"{ckpt} does not fit its run's config.yaml ({first}); pass a checkpoint of that run"
        ) from err
    return model, datamodule, int(state.get("global_step", 0))


# -- the protocols -----------------------------------------------------------------------------------


def support(protocol: str, info, feats: dict[str, Features | None]) -> str | None:
    """Why the data cannot support `protocol`, or None when it can."""
    if info.num_classes == 0:
        return f"{info.name} has no labels (data.info.num_classes is 0); {protocol} needs labelled data"
    needs = {"linear": ("train", "val", "test"), "auroc": ("train", "val", "test")}.get(protocol, ("train", "test"))
    for split in needs:
        if feats.get(split) is None:
            return f"{info.name} has no {split} split; {protocol} needs {', '.join(needs)}"
    train_y, test_y = feats["train"]["y"], feats["test"]["y"]
    try:
        if protocol == "knn":
            if P.is_multilabel(train_y):
                return "multi-label data: kNN top-1 needs one class per sample"
            P.require_classes(protocol, train_y, "train")
        elif protocol == "svm":
            if P.is_multilabel(train_y):
                return "multi-label data: an SVM classifies one class per sample"
            P.require_classes(protocol, train_y, "train")
        else:
            P.require_classes(protocol, train_y, "train")
        P.require_classes(protocol, test_y, "test", minimum=2 if protocol == "auroc" else 1)
        if protocol in ("linear", "auroc"):
            P.require_classes(protocol, feats["val"]["y"], "val", minimum=1)
    except P.UnsupportedProtocol as err:
        return err.reason
    return None


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


def fraction_name(fraction: float) -> str:
    return f"finetune_{fraction * 100:g}pct"


def evaluate(args: argparse.Namespace) -> int:
    uri = tracking.resolve_uri(args.tracking_uri)  # an embedded store by its absolute path
    device = pick_device(args.device)  # checked before any work
    if args.runs or args.datasets:
        from contrastlab.platform.eval_table import evaluate_table

        return evaluate_table(args, uri, device)
    target, client = locate(args, uri)
    evaluate_target(args, target, client, uri, device)
    return 0


@dataclass
class Evaluated:
    """One checkpoint's results, and what they were computed on."""

    results: dict[str, dict[str, float]]
    skipped: dict[str, str]
    datamodule: Any


def evaluate_target(args: argparse.Namespace, target: Target, client, uri: str, device: torch.device) -> Evaluated:
    """Evaluate one located checkpoint with the requested protocols and log the results into its run."""
    model, datamodule, target.step = build(target.config, target.ckpt)
    info = datamodule.info
    model.to(device)

    cache = FeatureCache(Path(args.cache_dir) if args.cache_dir else target.ckpt.parent / "eval-cache", target.ckpt)
    requested = args.protocols or list(PROTOCOLS)
    feats: dict[str, Features | None] = {}
    for split in ("train", "val", "test"):
        if split == "val" and not {"linear", "auroc"} & set(requested):
            continue  # only the probe's choice of penalty reads the val split
        try:
            loader = datamodule.eval_loader(split)
        except (KeyError, ValueError, NotImplementedError):  # data with no such split
            loader = None
        if loader is None or len(loader.dataset) == 0:
            feats[split] = None
            continue
        feats[split] = cache.get(split, lambda loader=loader: extract_features(model, loader, device))
    if cache.hits:
        print(f"features of {', '.join(cache.hits)} read from the cache in {cache.folder}", flush=True)

    chosen, skipped = [], {}
    for protocol in requested:
        reason = support(protocol, info, feats)
        if reason is None:
            chosen.append(protocol)
        elif args.protocols:  # asked for by name: refuse before anything is logged
            raise P.UnsupportedProtocol(protocol, reason)
        else:
            skipped[protocol] = reason
            print(f"skipped {protocol}: {reason}", flush=True)

    results = run_protocols(args, chosen, model, datamodule, feats, info, device)
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
    log_results(client, target, results, skipped, picture)
    if args.register:
        example = next(iter(datamodule.eval_loader("test" if feats.get("test") is not None else "train")))["x"][:2]
        version = register(model, target, args.register, uri, client, example)
        print(f"registered the encoder as models:/{args.register}/{version}", flush=True)
    print(results_markdown(target, results, skipped), flush=True)
    print(f"logged into run {target.run_id} ({stores.redact(uri)})", flush=True)
    return Evaluated(results, skipped, datamodule)


@contextlib.contextmanager
def timed(what: str):
    started = time.monotonic()
    yield
    print(f"{what}: {time.monotonic() - started:.1f} s", flush=True)


def run_protocols(args, chosen: list[str], model, datamodule, feats, info, device) -> dict[str, dict[str, float]]:
    train, val, test = feats["train"], feats.get("val"), feats["test"]
    results: dict[str, dict[str, float]] = {}
    if "knn" in chosen:
        with timed("knn"):
            results["knn"] = P.knn_grid(
                train["features"],
                train["y"],
                test["features"],
                test["y"],
                info.num_classes,
                tuple(args.k),
                args.knn_temperature,
            )
    if "linear" in chosen or "auroc" in chosen:
        with timed("linear probe"):
            on_device = [t.to(device) for split in (train, val, test) for t in (split["features"], split["y"])]
            probe = P.linear_probe(*on_device, info.num_classes)
        if "linear" in chosen:
            results["linear"] = probe.metrics
        if "auroc" in chosen:
            results["auroc"] = P.auroc_ap(probe.test_scores.cpu(), test["y"], info.num_classes)
    if "svm" in chosen:
        with timed("svm"):
            results["svm"] = P.svm_rbf(
                train["features"],
                train["y"],
                test["features"],
                test["y"],
                max_train_samples=args.svm_max_train,
                seed=args.seed,
            )
    if "finetune" in chosen:
        multilabel = P.is_multilabel(train["y"])
        train_loader, test_loader = datamodule.eval_loader("train"), datamodule.eval_loader("test")
        for fraction in args.finetune_fractions:
            # Subsets are drawn from the cached labels; `idx` maps them back to the dataset's samples.
            indices = train["idx"][P.stratified_subset(train["y"], fraction, args.seed)]
            with timed(fraction_name(fraction)):
                metrics = finetune(
                    model,
                    subset_loader(train_loader, indices, args.finetune_batch_size, args.seed),
                    test_loader,
                    feature_dim=train["features"].shape[1],
                    num_outputs=train["y"].shape[1] if multilabel else info.num_classes,
                    multilabel=multilabel,
                    epochs=args.finetune_epochs,
                    lr=args.finetune_lr,
                    device=device,
                    seed=args.seed,
                )
            results[fraction_name(fraction)] = {**metrics, "labels": float(len(indices))}
    return results


# -- into the run ---------------------------------------------------------------------------------------


def metric_rows(results: dict[str, dict[str, float]]) -> list[tuple[str, str, float]]:
    return [(protocol, name, value) for protocol, metrics in results.items() for name, value in metrics.items()]


def results_markdown(target: Target, results, skipped: dict[str, str]) -> str:
    lines = [
        f"# Evaluation of {target.ckpt.name} (run {target.run_id}, step {target.step})",
        "",
        "| protocol | metric | value |",
        "|---|---|---|",
        *(f"| {p} | {m} | {v:.4g} |" for p, m, v in metric_rows(results)),
    ]
    if skipped:
        lines += ["", *(f"- {p} skipped: {why}" for p, why in skipped.items())]
    return "\n".join(lines) + "\n"


def log_results(client, target: Target, results, skipped: dict[str, str], picture: Path | None) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(f"eval/{p}/{m}", float(v), now, target.step)
        for p, m, v in metric_rows(results)
        if v == v and abs(v) != float("inf")  # MLflow stores no inf; the SVM's hard margin is C = inf
    ]
    for start in range(0, len(metrics), 1000):
        client.log_batch(target.run_id, metrics=metrics[start : start + 1000])
    with tempfile.TemporaryDirectory() as folder:
        md = Path(folder) / "results.md"
        md.write_text(results_markdown(target, results, skipped))
        with open(Path(folder) / "results.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["protocol", "metric", "value", "checkpoint", "step"])
            for row in metric_rows(results):
                writer.writerow([*row, target.ckpt.name, target.step])
        if picture is not None:
            shutil.copy(picture, Path(folder) / "tsne.png")
        for name in ("results.md", "results.csv", "tsne.png"):
            if (Path(folder) / name).is_file():
                client.log_artifact(target.run_id, str(Path(folder) / name), "eval")
    if picture is not None:
        shutil.rmtree(picture.parent, ignore_errors=True)


def register(model, target: Target, name: str, uri: str, client, example) -> str:
    """Log `RawEncoder(model)` to the run and register it as `name`; returns the new version.

    The encoder is saved as a torch.export program (`pt2`: a graph and weights, no pickled code), traced
    on `example` (a few raw samples) with a free batch size; a model that torch.export cannot trace is
    pickled instead, and the command says so.
    """
    import mlflow

    encoder = RawEncoder(copy.deepcopy(model).cpu())
    versions = tracking.package_versions()
    requirements = [f"{pkg}=={versions[pkg]}" for pkg in ("torch", "lightning", "timm", "kornia") if pkg in versions]
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    example = torch.as_tensor(example).cpu()
    try:
        with mlflow.start_run(run_id=target.run_id):
            try:
                info = mlflow.pytorch.log_model(
                    encoder,
                    name="encoder",
                    serialization_format="pt2",
                    input_example=example.numpy(),
                    registered_model_name=name,
                    pip_requirements=requirements,
                )
            except Exception as err:  # torch.export cannot trace every model
                print(f"torch.export failed ({type(err).__name__}); the encoder is pickled instead", flush=True)
                info = mlflow.pytorch.log_model(
                    encoder,
                    name="encoder",
                    serialization_format="pickle",
                    registered_model_name=name,
                    pip_requirements=requirements,
                )
    finally:
        # start_run marks the run RUNNING and then FINISHED: give it back the status it had.
        client.update_run(target.run_id, status=target.status)
    return str(info.registered_model_version)


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
