"""Medical data through the CLI, as a user runs it: the shipped MedMNIST configs train on MedMNIST-format files the
test writes (2-D multi-label, 3-D binary), resume, and `contrastlab eval` reports AUROC, accuracy and fine-tuning."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import REPO, give_store, in_process_store, store_client, the_error_line
from tests.learning import build, probe_auroc
from tests.medical import write_medmnist

BREAST = str(REPO / "configs" / "simclr" / "breastmnist.yaml")
ORGAN3D = str(REPO / "configs" / "simclr" / "organmnist3d.yaml")
SHORT = ["--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1", "--data.init_args.batch_size", "16"]
EVAL = ["--finetune-fractions", "0.1,1.0", "--finetune-epochs", "1", "--tsne-points", "0"]
EVAL += ["--baselines", "raw_nn"]  # the pixels, voxels beside the learned features (a logistic on them: seconds)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One folder, hence one MLflow store (created once: its schema migrations cost seconds), for every run here;
    each run has its own experiment and data folder."""
    return give_store(tmp_path_factory.mktemp("medical"))


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


def test_simclr_on_a_2d_multilabel_medmnist_file_trains_resumes_and_gives_auroc(cli_here, workdir):
    write_medmnist(workdir / "data" / "chestmnist.npz", multilabel=14)
    metrics = train_resume_evaluate(cli_here, workdir, BREAST, "chestmnist", "--data.init_args.flag", "chestmnist")
    assert {"val/map", "val/auroc", "test/auroc"} <= set(metrics)
    for key in ("eval/auroc/auroc", "eval/linear/map", "eval/finetune_10pct/auroc", "eval/finetune_100pct/map"):
        assert 0 < metrics[key] <= 1, key
    assert "eval/baseline_raw_nn/acc" not in metrics  # skipped: a 1-NN classifies one class per sample


def test_simclr_on_a_3d_medmnist_file_trains_resumes_and_gives_auroc_and_accuracy(cli_here, workdir):
    write_medmnist(workdir / "data" / "nodulemnist3d.npz", dims=3, size=16)
    widths = ["--model.init_args.backbone_kwargs.widths", "[8, 16, 32, 64]"]
    metrics = train_resume_evaluate(
        cli_here, workdir, ORGAN3D, "nodulemnist3d", "--data.init_args.flag", "nodulemnist3d", *widths
    )
    assert 0.5 <= metrics["val/knn_top1"] <= 1
    # Large or small cubes, found by two epochs of training: eval's AUROC (its linear probe) on the trained encoder
    # well above the same protocol on the untrained one (measured 1.0 against 0.836).
    args = ["-c", ORGAN3D, "--data.init_args.root", "data", *SHORT, "--data.init_args.flag", "nodulemnist3d", *widths]
    before = probe_auroc(*build(args))
    assert metrics["eval/auroc/auroc"] >= before + 0.1, (metrics["eval/auroc/auroc"], before)
    for key in (
        "eval/linear/top1",
        "eval/finetune_10pct/top1",
        "eval/finetune_10pct/auroc",
        "eval/finetune_100pct/auroc",
        "eval/baseline_raw_nn/acc",  # raw voxels
    ):
        assert 0 <= metrics[key] <= 1, key
    assert metrics["eval/finetune_10pct/labels"] == 6 and metrics["eval/finetune_100pct/labels"] == 64


def test_a_missing_medmnist_file_is_one_line_naming_where_to_put_it(cli_here, tmp_path):
    code, err = cli_here(
        "fit", "-c", BREAST, "--data.init_args.root", "nowhere", *in_process_store(tmp_path), cwd=tmp_path
    )
    line = the_error_line(code, err)
    assert "nowhere/breastmnist.npz" in line and "download" in line


def write_patient_studies(root, patients: int = 6, studies: int = 4, size: int = 12) -> None:
    """NIfTI studies at 2 mm: each patient's anatomy (a bright cube at a place of its own) under several
    'sequences' (another intensity scale, new noise); a diagnosis label for evaluation only."""
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    rows = ["path,label,patient"]
    for p in range(patients):
        corner = rng.integers(0, size // 2, 3)
        for s in range(studies):
            data = rng.normal(100, 10, (size, size, size)).astype(np.float32)
            d, h, w = corner
            data[d : d + size // 2, h : h + size // 2, w : w + size // 2] *= 2.0 + s
            nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), root / f"p{p}_s{s}.nii.gz")
            rows.append(f"p{p}_s{s}.nii.gz,{p % 2},P{p:03d}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


def test_supcon_takes_its_positives_from_the_patient_group(cli_here, workdir, monkeypatch):
    from contrastlab.modules import losses

    write_patient_studies(workdir / "data" / "studies")
    seen = []
    supcon = losses.supcon

    def recording(views, labels, *args, **kwargs):
        seen.append(labels.tolist())
        return supcon(views, labels, *args, **kwargs)

    monkeypatch.setattr(losses, "supcon", recording)
    config = str(REPO / "configs" / "supcon" / "studies_by_patient.yaml")
    small = ["--data.init_args.shape", "[12, 12, 12]", "--data.init_args.batch_size", "8"]
    small += [
        "--model.init_args.backbone_kwargs.widths",
        "[8, 16, 32, 64]",
        "--trainer.max_epochs",
        "2",
        "--trainer.check_val_every_n_epoch",
        "1",
    ]
    code, err = cli_here(
        "fit", "-c", config, *small, "--test_after_fit", "false", *in_process_store(workdir), cwd=workdir
    )
    assert code == 0, err[-3000:]
    client = store_client(workdir)
    (run,) = client.search_runs([client.get_experiment_by_name("studies").experiment_id])
    assert run.data.params["model.positives_key"] == "group" and "val/knn_top1" in run.data.metrics
    # the loss saw patient ids (4 training patients, 4 studies each), never the diagnosis labels
    assert seen and all(set(batch) <= set(range(6)) and len(set(batch)) < len(batch) for batch in seen)
    assert any(max(batch) > 1 for batch in seen)
