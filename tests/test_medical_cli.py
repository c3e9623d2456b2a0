"""Medical data through the CLI, as a user runs it: the shipped MedMNIST configs train on MedMNIST-format files the
test writes (2-D multi-label, 3-D binary), resume, and `contrastlab eval` reports AUROC, accuracy and fine-tuning."""

from __future__ import annotations

import torch

from tests.conftest import REPO, in_process_store, store_client, the_error_line
from tests.medical import write_medmnist

BREAST = str(REPO / "configs" / "simclr" / "breastmnist.yaml")
ORGAN3D = str(REPO / "configs" / "simclr" / "organmnist3d.yaml")
SHORT = ["--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1", "--data.init_args.batch_size", "16"]
EVAL = ["--finetune-fractions", "0.1,1.0", "--finetune-epochs", "1", "--tsne-points", "0"]


def train_resume_evaluate(cli_here, cwd, config: str, experiment: str, *args: str) -> dict[str, float]:
    """fit one epoch, resume to two, evaluate: the run's metrics."""
    fit = ["fit", "-c", config, "--data.init_args.root", "data", *SHORT, *args, *in_process_store(cwd)]
    code, err = cli_here(*fit, cwd=cwd)
    assert code == 0, err[-3000:]
    client = store_client(cwd)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    run_id = run.info.run_id
    code, err = cli_here(*fit, "--trainer.max_epochs", "2", "--resume", cwd=cwd)
    assert code == 0, err[-3000:]
    (resumed,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert resumed.info.run_id == run_id and resumed.info.status == "FINISHED"
    last = cwd / "checkpoints" / experiment / run_id / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1
    code, err = cli_here("eval", "--run", run_id, *EVAL, cwd=cwd)
    assert code == 0, err[-3000:]
    return client.get_run(run_id).data.metrics


def test_simclr_on_a_2d_multilabel_medmnist_file_trains_resumes_and_gives_auroc(cli_here, tmp_path):
    write_medmnist(tmp_path / "data" / "chestmnist.npz", multilabel=14)
    metrics = train_resume_evaluate(cli_here, tmp_path, BREAST, "chestmnist", "--data.init_args.flag", "chestmnist")
    assert {"val/map", "val/auroc", "test/auroc"} <= set(metrics)
    for key in ("eval/auroc/auroc", "eval/linear/map", "eval/finetune_10pct/auroc", "eval/finetune_100pct/map"):
        assert 0 < metrics[key] <= 1, key


def test_simclr_on_a_3d_medmnist_file_trains_resumes_and_gives_auroc_and_accuracy(cli_here, tmp_path):
    write_medmnist(tmp_path / "data" / "nodulemnist3d.npz", dims=3, size=16)
    widths = ["--model.init_args.backbone_kwargs.widths", "[8, 16, 32, 64]"]
    metrics = train_resume_evaluate(cli_here, tmp_path, ORGAN3D, "nodulemnist3d", "--data.init_args.flag", "nodulemnist3d", *widths)
    assert 0.5 <= metrics["val/knn_top1"] <= 1
    assert metrics["eval/auroc/auroc"] > 0.6  # large or small cubes: found after two epochs
    for key in ("eval/linear/top1", "eval/finetune_10pct/top1", "eval/finetune_10pct/auroc", "eval/finetune_100pct/auroc"):
        assert 0 <= metrics[key] <= 1, key
    assert metrics["eval/finetune_10pct/labels"] == 6 and metrics["eval/finetune_100pct/labels"] == 64


def test_a_missing_medmnist_file_is_one_line_naming_where_to_put_it(cli_here, tmp_path):
    code, err = cli_here("fit", "-c", BREAST, "--data.init_args.root", "nowhere", *in_process_store(tmp_path), cwd=tmp_path)
    line = the_error_line(code, err)
    assert "nowhere/breastmnist.npz" in line and "download" in line
