"""Fine-tuning on a labelled subset: a copy of the encoder and a linear head trained end to end on the
deterministic view, reported on the test split (the semi-supervised and medical protocol: 1%, 10% and
100% of the labels). The model passed in is never changed.

The learning rate decays to zero on a cosine by default: with a constant rate the last epoch's test AUC of a
BreastMNIST fine-tuning swung by 0.04 from one epoch to the next (0.871-0.908 around epoch 10), so the figure
depended on where training happened to stop; decayed, it settles (docs/benchmarks/medical.md)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from contrastlab.evaluation.protocols import auroc_ap, is_multilabel, labelled, stratified_subset

# The fine-tuning protocol's defaults, which the supervised baseline (baselines.py) shares.
FINETUNE_DEFAULTS = {"fractions": (0.01, 0.1, 1.0), "epochs": 10, "lr": 1e-3, "batch_size": 64, "schedule": "cosine"}
SCHEDULES = ("cosine", "constant")


def fraction_name(fraction: float) -> str:
    return f"finetune_{fraction * 100:g}pct"


def subset_loader(loader: DataLoader, indices: Tensor, batch_size: int, seed: int) -> DataLoader:
    """The samples at `indices` of `loader`'s dataset, reshuffled each epoch by a seeded generator, with
    the loader's own collate."""
    batch_size = min(batch_size, len(indices))
    return DataLoader(
        Subset(loader.dataset, indices.tolist()),
        batch_size=batch_size,
        shuffle=True,
        # A last batch of one sample would stop BatchNorm in training mode.
        drop_last=len(indices) % batch_size == 1,
        collate_fn=loader.collate_fn,
        generator=torch.Generator().manual_seed(seed),
    )


def finetune(
    model: nn.Module,
    train_loader: DataLoader,
    test_loader: DataLoader,
    feature_dim: int,
    num_outputs: int,
    multilabel: bool = False,
    epochs: int = 10,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    device: torch.device | str = "cpu",
    seed: int = 0,
    schedule: str = "cosine",
    val_loader: DataLoader | None = None,
) -> dict[str, float]:
    """Train `model.embed` + a linear head with AdamW and cross-entropy (binary cross-entropy per label for
    multi-label data) for `epochs` over `train_loader`, the rate decaying to zero on a cosine over every step
    (`schedule="cosine"`) or held (`"constant"`); return `top1` (or `map`) on `test_loader`, and `auroc`
    (binary, macro one-vs-rest, or macro over labels) where the test split has two classes. With a `val_loader`,
    the same metrics on val beside them (`val_top1`, `val_auroc`, ...): fine-tuning options are chosen there."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the caller's random streams stay where they were
        torch.manual_seed(seed)
        encoder = copy.deepcopy(model).to(device).train()
        head = nn.Linear(feature_dim, num_outputs).to(device)
        # Parameters that `embed` does not reach (projectors, momentum copies) get no gradient, and
        # AdamW leaves a parameter without one untouched.
        optimizer = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=lr, weight_decay=weight_decay)
        steps = epochs * len(train_loader)
        decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if schedule == "cosine" else None
        for _ in range(epochs):
            for batch in train_loader:
                batch = move_data_to_device(batch, device)
                logits = head(encoder.embed(batch))
                y = batch["y"]
                if multilabel:
                    loss = F.binary_cross_entropy_with_logits(logits, y.float())
                else:
                    loss = F.cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if decay is not None:
                    decay.step()
        metrics = _evaluate(encoder, head, test_loader, multilabel, device)
        if val_loader is not None:
            metrics |= {f"val_{k}": v for k, v in _evaluate(encoder, head, val_loader, multilabel, device).items()}
        return metrics


@torch.no_grad()
def _evaluate(encoder: nn.Module, head: nn.Module, loader: DataLoader, multilabel: bool, device) -> dict[str, float]:
    encoder.eval()
    scores, ys = [], []
    for batch in loader:
        batch = move_data_to_device(batch, device)
        scores.append(head(encoder.embed(batch)).float().cpu())
        ys.append(batch["y"].cpu())
    logits, y = torch.cat(scores), torch.cat(ys)
    keep = labelled(y)
    logits, y = logits[keep], y[keep]
    if multilabel or is_multilabel(y):
        from torchmetrics.functional import average_precision

        scores = logits.sigmoid()
        ap = average_precision(scores, y.long(), task="multilabel", num_labels=y.shape[1], average="macro")
        return {"map": float(ap), "auroc": auroc_ap(scores, y, y.shape[1])["auroc"]}
    metrics = {"top1": (logits.argmax(dim=1) == y).float().mean().item()}
    if len(y.unique()) >= 2:  # AUROC needs both classes in the test split
        metrics["auroc"] = auroc_ap(logits.softmax(dim=1), y, logits.shape[1])["auroc"]
    return metrics


def finetune_fractions(
    model: nn.Module,
    train_y: Tensor,
    train_idx: Tensor,
    train_loader: DataLoader,
    test_loader: DataLoader,
    feature_dim: int,
    num_classes: int,
    options,
    device: torch.device | str,
    val_loader: DataLoader | None = None,
) -> dict[str, dict[str, float]]:
    """`finetune` on seeded stratified subsets of train, one per `options.finetune_fractions` (`train_y` and
    `train_idx`: the train split's labels and dataset indices, in the loader's order): metrics by
    `fraction_name`, with the labelled samples each used (and val's metrics, given a `val_loader`)."""
    from contrastlab.evaluation.registry import timed

    multilabel = is_multilabel(train_y)
    results = {}
    for fraction in options.finetune_fractions:
        indices = train_idx[stratified_subset(train_y, fraction, options.seed)]
        with timed(fraction_name(fraction)):
            metrics = finetune(
                model,
                subset_loader(train_loader, indices, options.finetune_batch_size, options.seed),
                test_loader,
                feature_dim=feature_dim,
                num_outputs=train_y.shape[1] if multilabel else num_classes,
                multilabel=multilabel,
                epochs=options.finetune_epochs,
                lr=options.finetune_lr,
                device=device,
                seed=options.seed,
                schedule=options.finetune_schedule,
                val_loader=val_loader,
            )
        results[fraction_name(fraction)] = {**metrics, "labels": float(len(indices))}
    return results
