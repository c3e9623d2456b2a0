"""Which checkpoint is "best": the later one on a tie (a small validation split's kNN top-1 ties often)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from contrastlab.platform.callbacks import RunCheckpoint


def unanimous(decision: bool) -> bool:
    return decision


@pytest.mark.parametrize(
    "mode, new, replaces",
    [
        ("max", 0.5, True),
        ("max", 0.6, True),
        ("max", 0.4, False),
        ("min", 0.5, True),
        ("min", 0.6, False),
        ("min", 0.4, True),
    ],
)
def test_a_tie_replaces_the_best_checkpoint_a_worse_value_does_not(tmp_path, mode, new, replaces):
    checkpoint = RunCheckpoint(str(tmp_path), "exp", monitor="val/knn_top1", mode=mode, method="simclr")
    trainer = SimpleNamespace(strategy=SimpleNamespace(reduce_boolean_decision=unanimous))
    assert checkpoint.check_monitor_top_k(trainer, torch.tensor(0.5))  # the first value always
    checkpoint.best_k_models = {"best-epoch=0-step=30.ckpt": torch.tensor(0.5)}
    checkpoint.kth_best_model_path = "best-epoch=0-step=30.ckpt"
    assert checkpoint.check_monitor_top_k(trainer, torch.tensor(new)) is replaces
    assert checkpoint.check_monitor_top_k(trainer, None) is False
