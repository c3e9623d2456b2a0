"""`contrastlab eval` and the predict embeddings, as a user drives them, on one short digits run."""

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from contrastlab.evaluation.registry import Context, Needs, Protocol, register, unregister
from tests.conftest import (
    DIGITS_CONFIG,
    QUICK,
    give_store,
    in_process_store,
    run_cli,
    run_on_terminal,
    store_client,
    the_error_line,
)

NO_BASELINES = ("--baselines", "none")
FAST = ["--finetune-epochs", "1", "--finetune-fractions", "0.1,1.0", "--k", "1,20", "--tsne-points", "150"]


def contrastlab_here(cwd: Path, *args: str) -> int:
    """`contrastlab ARGS` inside this process (the imports are paid once), in `cwd`; its exit code."""
    from contrastlab.cli import main

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.setattr(sys, "argv", ["contrastlab", *args])
        try:
            main(list(args))
        except SystemExit as stop:
            return stop.code or 0
    return 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of SimCLR on digits: (folder, run id, checkpoint folder)."""
    cwd = give_store(tmp_path_factory.mktemp("eval"))
    args = ["fit", "-c", str(DIGITS_CONFIG), *QUICK, "--trainer.max_epochs", "1", "--test_after_fit", "false"]
    args += in_process_store(cwd)
    assert contrastlab_here(cwd, *args) == 0
    client = store_client(cwd)
    (run,) = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    return cwd, run.info.run_id, cwd / "checkpoints" / "digits" / run.info.run_id


def test_eval_logs_every_protocol_into_the_run(trained, cli_here):
    cwd, run_id, folder = trained
    code, err = cli_here("eval", "--run", run_id, *FAST, cwd=cwd)
    assert code == 0, err[-3000:]
    client = store_client(cwd)
    run = client.get_run(run_id)
    metrics = run.data.metrics
    expected = [
        "eval/knn/top1_k1",
        "eval/knn/top1_k20",
        "eval/linear/top1",
        "eval/linear/val_top1",
        "eval/linear/l2",
        "eval/svm/acc",
        "eval/svm/C",
        "eval/finetune_10pct/top1",
        "eval/finetune_100pct/top1",
        "eval/finetune_10pct/labels",
        "eval/auroc/auroc",
        "eval/auroc/ap",
        "eval/auroc/l2",  # its penalty, chosen by val AUROC
        # the practitioner's baselines beside: raw pixels, and the same net from random init, fine-tuned alike
        "eval/baseline_raw_nn/acc",
        "eval/baseline_raw_logistic/acc",
        "eval/baseline_raw_logistic/l2",
        "eval/baseline_supervised_10pct/top1",
        "eval/baseline_supervised_100pct/top1",
    ]
    assert not [key for key in expected if key not in metrics], sorted(metrics)
    for key in ("eval/knn/top1_k20", "eval/linear/top1", "eval/svm/acc"):
        assert 0.5 < metrics[key] <= 1.0, (key, metrics[key])
    assert 0.8 < metrics["eval/auroc/auroc"] <= 1.0
    assert metrics["eval/finetune_10pct/labels"] == 126 and metrics["eval/finetune_100pct/labels"] == 1257
    assert metrics["eval/baseline_supervised_10pct/labels"] == 126  # the same subsets as fine-tuning
    assert metrics["eval/baseline_raw_nn/acc"] > 0.95  # 8x8 digits: 1-NN on the pixels is strong
    assert run.info.status == "FINISHED"  # the run keeps its status
    # logged at the step of the checkpoint evaluated (the run's best: one epoch of 4 steps)
    ckpt = next(folder.glob("best-*.ckpt"))
    assert [m.step for m in client.get_metric_history(run_id, "eval/knn/top1_k20")] == [4]
    artifacts = {a.path for a in client.list_artifacts(run_id, "eval")}
    assert artifacts == {
        "eval/results.md",
        "eval/results.csv",
        "eval/options.json",
        "eval/tsne.png",
        "eval/history",
    }
    table = Path(client.download_artifacts(run_id, "eval/results.md", str(cwd))).read_text()
    assert ckpt.name in table and "| learned | svm | acc |" in table and "| finetune_100pct | top1 |" in table
    assert "`k=[1, 20]`" in table and "`finetune_epochs=1`" in table  # the options the figures came from
    assert (
        "| raw, 1-NN | baseline_raw_nn | acc |" in table and "| raw, logistic | baseline_raw_logistic | acc |" in table
    )
    assert "| supervised from random init, 10% of labels | baseline_supervised_10pct | top1 |" in table
    picture = Path(client.download_artifacts(run_id, "eval/tsne.png", str(cwd))).read_bytes()
    assert picture[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name.split("-")[1] for p in (folder / "eval-cache").glob("features-*.pt")) == [
        "test",
        "train",
        "val",
    ]


def test_a_second_eval_with_other_options_keeps_the_first_ones_figures_and_options(trained, cli_here, tmp_path):
    import json

    cwd, run_id, folder = trained
    ckpt = str(folder / "last.ckpt")
    for extra in (["--k", "5"], ["--k", "5", "--knn-standardize"]):
        code, err = cli_here(
            "eval", "--ckpt", ckpt, "--protocols", "knn", "--tsne-points", "0", *NO_BASELINES, *extra, cwd=cwd
        )
        assert code == 0, err[-3000:]
    client = store_client(cwd)
    options = json.loads(Path(client.download_artifacts(run_id, "eval/options.json", str(tmp_path))).read_text())
    assert options["k"] == [5] and options["knn_standardize"] is True and options["protocols"] == ["knn"]
    assert "tracking_uri" not in options and "ckpt" not in options  # where things are is not an option
    history = sorted(a.path for a in client.list_artifacts(run_id, "eval/history"))
    tables = [Path(client.download_artifacts(run_id, path, str(tmp_path))).read_text() for path in history[-2:]]
    assert ["`knn_standardize=false`" in t for t in tables] == [True, False]
    assert ["`knn_standardize=true`" in t for t in tables] == [False, True]
    logged = {f"{m.value:.4g}" for m in client.get_metric_history(run_id, "eval/knn/top1_k5")}
    assert {re.search(r"\| knn \| top1_k5 \| ([0-9.]+) \|", t).group(1) for t in tables} <= logged


def test_features_after_the_projector_are_evaluated_and_cached_apart(trained, cli_here, tmp_path):
    """`--features projector`: the protocols read SimCLR's projector outputs (its 128-wide z, not the backbone's
    256), cached beside the backbone's, and the options say which features the figures are of."""
    cwd, run_id, folder = trained
    ckpt = str(folder / "last.ckpt")
    figures = {}
    for space in ("backbone", "projector"):
        args = ["--protocols", "knn", "--k", "5", "--tsne-points", "0", *NO_BASELINES, "--features", space]
        args += ["--cache-dir", str(tmp_path / "cache")]  # the module's other tests read the checkpoint's own cache
        code, err = cli_here("eval", "--ckpt", ckpt, *args, cwd=cwd)
        assert code == 0, err[-3000:]
        client = store_client(cwd)
        options = json.loads(Path(client.download_artifacts(run_id, "eval/options.json", str(tmp_path))).read_text())
        assert options["features"] == space
        figures[space] = client.get_run(run_id).data.metrics["eval/knn/top1_k5"]
    cached = (tmp_path / "cache").glob("features-test*.pt")
    widths = sorted({torch.load(path, weights_only=True)["features"].shape[1] for path in cached})
    assert widths == [128, 256], widths  # both kept: neither overwrote the other
    assert figures["backbone"] != figures["projector"], figures


def test_a_second_eval_reads_the_cached_features(trained, cli_here, monkeypatch):
    cwd, run_id, folder = trained
    ckpt = str(folder / "last.ckpt")
    code, err = cli_here("eval", "--ckpt", ckpt, "--protocols", "knn", "--tsne-points", "0", *NO_BASELINES, cwd=cwd)
    assert code == 0, err[-3000:]

    def no_extraction(*args, **kwargs):
        raise AssertionError("features were extracted again")

    monkeypatch.setattr("contrastlab.eval.run.extract_features", no_extraction)
    code, err = cli_here("eval", "--ckpt", ckpt, "--protocols", "knn", "--tsne-points", "0", *NO_BASELINES, cwd=cwd)
    assert code == 0, err[-3000:]


def test_eval_on_a_terminal_draws_bars_with_an_eta_under_its_lines(trained, tmp_path):
    cwd, _, folder = trained
    args = ["--protocols", "knn", "--tsne-points", "0", *NO_BASELINES, "--cache-dir", str(tmp_path)]  # features anew
    proc = run_on_terminal("eval", "--ckpt", str(folder / "last.ckpt"), *args, cwd=cwd)
    shown = proc.stdout
    assert proc.returncode == 0, shown[-3000:]
    for what in ("features of train", "features of test", "protocols"):
        assert re.search(rf"{what}: 100%\|[^|\r\n]*\| \d+/\d+ \[\d\d:\d\d<\d\d:\d\d", shown), (what, shown[-3000:])
    assert re.search(r"[\r\n]knn: [\d.]+ s\r?\n", shown), shown[-3000:]  # a line of its own, above the bar


def test_a_bar_is_drawn_on_a_terminal_only(monkeypatch):
    from contrastlab.platform import terminal

    steps = [1, 2]
    assert terminal.bar(steps, "steps") is steps  # pytest's captured output is no terminal
    monkeypatch.setattr(terminal, "on_terminal", lambda: True)
    assert terminal.bar(steps, "steps") is not steps and list(terminal.bar(steps, "steps")) == steps


def test_register_gives_the_same_features_on_raw_samples(trained, cli_here):
    import mlflow

    from contrastlab.datamodules.vision import Digits

    cwd, run_id, folder = trained
    code, err = cli_here(
        "eval", "--run", run_id, "--protocols", "knn", "--tsne-points", "0", "--register", "digits-encoder",
        *NO_BASELINES, cwd=cwd,
    )  # fmt: skip
    assert code == 0, err[-3000:]
    uri = f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    encoder = mlflow.pytorch.load_model("models:/digits-encoder/1")
    raw = next(iter(Digits().eval_loader("test")))["x"][:16]
    assert raw.dtype == torch.uint8
    cached = torch.load(next((folder / "eval-cache").glob("features-test-*.pt")), weights_only=True)
    assert torch.allclose(encoder(raw), cached["features"][:16], atol=1e-5)
    assert store_client(cwd).get_run(run_id).info.status == "FINISHED"  # logging the model left it as it was


def test_run_without_a_local_checkpoint_fetches_it_from_the_artifacts(trained, cli_here, tmp_path):
    cwd, run_id, _ = trained
    uri = f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}"
    args = ("eval", "--run", run_id, "--tracking-uri", uri, "--protocols", "knn", "--k", "5", "--tsne-points", "0",
            "--knn-standardize", *NO_BASELINES)  # fmt: skip
    code, err = cli_here(*args, cwd=tmp_path)  # another folder: no checkpoints/ here
    assert code == 0, err[-3000:]
    fetched = list((tmp_path / "checkpoints" / "digits" / run_id).glob("best-*.ckpt"))
    assert len(fetched) == 1
    assert store_client(cwd).get_run(run_id).data.metrics["eval/knn/top1_k5"] > 0.5  # on z-scored features


def test_predict_writes_the_embeddings_and_logs_them(trained):
    cwd, run_id, folder = trained
    args = ["predict", "-c", str(DIGITS_CONFIG), "--ckpt_path", str(folder / "last.ckpt"), *in_process_store(cwd)]
    assert contrastlab_here(cwd, *args) == 0
    embeddings = torch.load(folder / "embeddings.pt", weights_only=True)
    assert embeddings["features"].shape == (360, 256) and torch.equal(embeddings["idx"], torch.arange(360))
    assert (embeddings["y"] >= 0).all()
    client = store_client(cwd)
    assert [a.path for a in client.list_artifacts(run_id, "predict")] == ["predict/embeddings.pt"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run", "0123456789abcdef"], "--run 0123456789abcdef: no such run in sqlite:///"),
        (["--ckpt", "nope/last.ckpt"], "--ckpt: checkpoint nope/last.ckpt not found"),
        (["--run", "x", "--protocols", "knn,probe"], "--protocols: unknown protocol 'probe'"),
        (["--run", "x", "--finetune-fractions", "0.1,2"], "--finetune-fractions: 2.0 is not in (0, 1]"),
        ([], "one of the arguments --ckpt --run --runs --datasets is required"),
        (["--run", "x", "--device", "tpu:0:1"], "--device tpu:0:1: expected auto, cpu, cuda or cuda:N"),
    ],
    ids=["wrong-run", "missing-ckpt", "unknown-protocol", "bad-fraction", "no-target", "bad-device"],
)
def test_bad_input_is_one_line(tmp_path, cli_here, args, message):
    line = the_error_line(*cli_here("eval", *args, cwd=tmp_path))
    assert message in line, line


@pytest.mark.parametrize("with_config", [True, False], ids=["no-checkpoint", "no-config"])
def test_a_run_without_checkpoint_or_config_is_one_line(trained, cli_here, tmp_path, with_config):
    cwd, run_id, _ = trained
    client = store_client(cwd)
    other = client.create_run(client.get_run(run_id).info.experiment_id).info.run_id
    if with_config:
        config = client.download_artifacts(run_id, "config.yaml", str(tmp_path))
        client.log_artifact(other, config)
    line = the_error_line(*cli_here("eval", "--run", other, cwd=cwd))
    if with_config:
        assert f"--run {other}: no checkpoint under checkpoints/digits/{other} nor among the run's artifacts" in line
    else:
        assert f"run {other} has no config.yaml artifact" in line


def test_a_checkpoint_from_another_store_is_one_line(trained, cli_here, tmp_path):
    _, run_id, folder = trained
    line = the_error_line(*cli_here("eval", "--ckpt", str(folder / "last.ckpt"), cwd=tmp_path))
    store = tmp_path / "mlruns" / "mlflow.db"
    assert f"belongs to MLflow run {run_id}, which sqlite:///{store} does not hold" in line


def test_a_protocol_the_data_cannot_support_is_one_line(tmp_path, cli_here):
    """An unlabelled image folder: a linear probe is refused by name; by default every label protocol is skipped."""
    from PIL import Image
    from sklearn.datasets import load_digits

    (tmp_path / "scans").mkdir()
    for i, image in enumerate(load_digits().images[:64]):
        Image.fromarray((image * 255 / 16).astype("uint8")).save(tmp_path / "scans" / f"{i}.png")
    data = (
        "--data.class_path contrastlab.datamodules.vision.ImageFolder --data.init_args.root scans "
        "--data.init_args.size 8 --data.init_args.channels 1 --data.init_args.batch_size 32"
    ).split()
    fit = ["fit", "-c", str(DIGITS_CONFIG), *QUICK, *data, "--trainer.max_epochs", "1", *in_process_store(tmp_path)]
    assert contrastlab_here(tmp_path, *fit) == 0
    (ckpt,) = (tmp_path / "checkpoints" / "scans").glob("*/last.ckpt")
    client = store_client(tmp_path)
    run_id = ckpt.parent.name
    line = the_error_line(*cli_here("eval", "--ckpt", str(ckpt), "--protocols", "linear", cwd=tmp_path))
    assert line == (
        "contrastlab: error: linear: scans has no labels (data.info.num_classes is 0); linear needs labelled data"
    )
    assert not client.list_artifacts(run_id, "eval")  # refused before anything was logged
    code, err = cli_here("eval", "--ckpt", str(ckpt), "--tsne-points", "20", cwd=tmp_path)
    assert code == 0, err[-3000:]
    assert not [key for key in client.get_run(run_id).data.metrics if key.startswith("eval/")]
    results = Path(client.download_artifacts(run_id, "eval/results.md", str(tmp_path))).read_text()
    for protocol in ("knn", "linear", "svm", "finetune", "auroc"):  # every label protocol, each with its reason
        assert f"- {protocol} skipped: scans has no labels" in results, results
    assert "tsne.png" in [Path(a.path).name for a in client.list_artifacts(run_id, "eval")]  # what it can do
    shutil.rmtree(tmp_path / "scans")


def test_embeddings_gathered_from_ranks_keep_one_row_per_sample():
    from contrastlab.platform.callbacks import _first_of_each

    idx = torch.tensor([0, 2, 4, 0, 1, 3, 5, 1])  # two ranks' shards, DistributedSampler-padded
    assert idx[_first_of_each(idx)].tolist() == [0, 1, 2, 3, 4, 5]


def test_the_eval_verb_in_its_own_process(tmp_path):
    """The console entry point reaches the verb, and a refusal is one line and exit status 2."""
    proc = run_cli("eval", "--ckpt", "missing.ckpt", cwd=tmp_path, check=False)
    assert the_error_line(proc.returncode, proc.stderr).startswith(
        "contrastlab: error: --ckpt: checkpoint missing.ckpt"
    )


# -- a protocol is one file: one registered here, and nowhere else, is a `--protocols` choice and a table column


class NearestCentroid(Protocol):
    """Test accuracy of the nearest class mean of the train features (cosine)."""

    name = "toy"
    needs = Needs(single_label="a centroid classifies one class per sample")
    headline = "centroid_top1"

    def run(self, ctx: Context) -> dict[str, float]:
        train, test = ctx.feats["train"], ctx.feats["test"]
        x = torch.nn.functional.normalize(train["features"], dim=1)
        centroids = torch.stack([x[train["y"] == c].mean(0) for c in range(ctx.num_classes)])
        predicted = (torch.nn.functional.normalize(test["features"], dim=1) @ centroids.T).argmax(1)
        return {"centroid_top1": (predicted == test["y"]).float().mean().item(), "classes": float(ctx.num_classes)}


@pytest.fixture
def toy():
    register(NearestCentroid)
    yield
    unregister(NearestCentroid.name)


def test_a_protocol_registered_in_this_file_is_evaluated_and_tabulated(trained, toy, cli_here):
    cwd, run_id, _ = trained
    args = ("--checkpoint", "last", "--tsne-points", "0")
    code, err = cli_here("eval", "--run", run_id, "--protocols", "toy", *args, *NO_BASELINES, cwd=cwd)
    assert code == 0, err[-3000:]
    client = store_client(cwd)
    metrics = client.get_run(run_id).data.metrics
    assert 0.5 < metrics["eval/toy/centroid_top1"] <= 1 and metrics["eval/toy/classes"] == 10

    code, err = cli_here("eval", "--runs", run_id, "--protocols", "toy,knn", "--k", "5", "--baselines", "none", *args,
                         cwd=cwd)  # fmt: skip
    assert code == 0, err[-3000:]
    (table,) = client.search_runs([client.get_experiment_by_name("eval-tables").experiment_id])
    cells = {key: value for key, value in table.data.metrics.items() if key.startswith("digits/")}
    assert cells.keys() == {"digits/simclr_toy/centroid_top1", "digits/simclr_knn/top1_k5"}, cells
    assert cells["digits/simclr_toy/centroid_top1"] == metrics["eval/toy/centroid_top1"]
    folder = Path(client.download_artifacts(table.info.run_id, "", str(cwd / "table")))
    assert "| dataset | configuration | runs | knn | toy |" in (folder / "table.md").read_text().splitlines()


def test_an_unregistered_protocol_is_unknown(tmp_path, cli_here):
    line = the_error_line(*cli_here("eval", "--run", "x", "--protocols", "toy", cwd=tmp_path))
    assert "--protocols: unknown protocol 'toy'; choose from knn,linear,svm,finetune,auroc" in line
