"""What a test that says something learns or trains compares against: the same setup at random initialisation.

- `untrained(...)`: a metric of the untrained model, from the `test` or `validate` verb of the trained run's config
  and options, in this process, into the same store under its own experiment (the model as its config builds it
  from its seed, as the fit did; the same callback on the same split; no training).
- `untrained_loss(...)`: the method's loss of the untrained model over a few batches with fresh views, and its
  noise: a run that trains ends below it by several times that noise.
- `parsed_run(args)`: `contrastlab fit ARGS` parsed by the run CLI, model and data built, no trainer.
- `build(args)`: the untrained model and data of a fit's `-c CONFIG` and options.
- `untrained_svm(...)` / `svm_accuracy(...)` / `probe_auroc(...)`: `contrastlab eval`'s SVM and AUROC protocols on
  a model's features (the untrained one's: the bar the trained run's `eval` figure is compared with).
- `untrained_weights(...)`: the backbone weights a run's checkpoint left where the fit started.
- `logged_finite(value)`: a metric read back from MLflow was finite (MLflow stores an inf as the largest float).

Each is one pass over a small split, no training: about a second once the imports are paid.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import store_client

EXPERIMENT = "random-init"


def untrained(cli_here: Callable, verb: str, args: list[str], cwd: Path, key: str) -> float:
    """The metric `key` (e.g. `test/knn_top1`, `val/knn_top1`, `test/auroc`) that `contrastlab VERB ARGS` logs
    for the untrained model. `args` are the trained run's (`-c CONFIG`, options, the in-process store's)."""
    return evaluated(cli_here, verb, args, cwd, key, EXPERIMENT)


def evaluated(cli_here: Callable, verb: str, args: list[str], cwd: Path, key: str, experiment: str) -> float:
    """The metric `key` that `contrastlab VERB ARGS` (test or validate, no training) logs into `experiment`."""
    assert verb in ("test", "validate"), verb
    code, err = cli_here(verb, *args, "--tracking.experiment", experiment, cwd=cwd)
    assert code == 0, err[-3000:]
    client = store_client(cwd)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], order_by=["start_time DESC"])
    return runs[0].data.metrics[key]


def parsed_run(args: list[str]):
    """`contrastlab fit ARGS` through the run CLI's own parser, its model and DataModule built but no trainer and
    no run: what the command would train, as it would build it."""
    import warnings

    from contrastlab.platform.cli import ContrastlabCLI

    class BuildOnly(ContrastlabCLI):
        def instantiate_trainer(self, **kwargs):
            return None

    args = [a.replace("--tracking-uri", "--tracking.uri", 1) if a.startswith("--tracking-uri") else a for a in args]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        return BuildOnly(run=False, args=args)


def build(args: list[str]):
    """The model and DataModule that `contrastlab fit ARGS` starts from (`-c CONFIG` and options, as the fit got
    them), seeded as the fit seeds them; the data set up for fitting."""
    cli = parsed_run(args)
    cli.datamodule.setup("fit")
    return cli.model, cli.datamodule


def untrained_loss(args: list[str], batches: int = 8) -> tuple[float, float]:
    """The method's training loss (without the probe's) of the model `contrastlab fit ARGS` starts from, over
    `batches` batches of its training data, each with fresh views: (mean, standard deviation), the level a run
    starts at and the noise of one step's loss around it."""
    import itertools
    from types import SimpleNamespace

    import torch

    model, data = build(args)
    model._trainer = SimpleNamespace(training=True)  # what on_after_batch_transfer reads of its trainer
    model.train()  # batch statistics, as in training
    losses = []
    with torch.no_grad():
        for batch in itertools.islice(itertools.cycle(data.train_dataloader()), batches):
            batch = model.on_after_batch_transfer(batch, 0)
            losses.append(float(model.contrastive_loss(model.encode(batch, batch["views"]), batch)))
    spread = torch.tensor(losses)
    return float(spread.mean()), float(spread.std())


def untrained_svm(args: list[str]) -> float:
    """Test accuracy of `contrastlab eval`'s SVM protocol (its defaults) on the features of the model `contrastlab
    fit ARGS` starts from: the same extraction, splits and SVM as `eval --protocols svm` on the trained run."""
    return svm_accuracy(*build(args))


def svm_accuracy(model, data) -> float:
    """`contrastlab eval --protocols svm`'s test accuracy (its defaults) of `model`'s features of `data`."""
    from contrastlab.evaluation import protocols as P
    from contrastlab.evaluation.features import extract_features

    train, test = (extract_features(model, data.eval_loader(split), "cpu") for split in ("train", "test"))
    return P.svm_rbf(train["features"], train["y"], test["features"], test["y"])["acc"]


def untrained_weights(model, ckpt: Path) -> list[str]:
    """The backbone weights of the checkpoint `ckpt` still equal to those of the untrained `model` (`build`'s): the
    ones a run did not train."""
    import torch

    trained = torch.load(ckpt, weights_only=True)["state_dict"]
    return [k for k, v in model.backbone.named_parameters() if torch.equal(trained[f"backbone.{k}"], v)]


def logged_finite(value: float) -> bool:
    """Whether a metric read back from MLflow was finite when logged: MLflow stores an inf as the largest float."""
    return math.isfinite(value) and abs(value) < sys.float_info.max


def probe_auroc(model, data) -> float:
    """`contrastlab eval --protocols auroc`'s test AUROC (its linear probe, chosen on val) of `model`'s features."""
    from contrastlab.evaluation import protocols as P
    from contrastlab.evaluation.features import extract_features

    train, val, test = (extract_features(model, data.eval_loader(s), "cpu") for s in ("train", "val", "test"))
    probe = P.linear_probe(*(f[k] for f in (train, val, test) for k in ("features", "y")), data.info.num_classes)
    return P.auroc_ap(probe.test_scores.cpu(), test["y"], data.info.num_classes)["auroc"]
