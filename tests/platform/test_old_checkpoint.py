"""A checkpoint written before the consolidation's moves still loads, weights-only, into today's code: module
paths that a checkpoint names (DataInfo, OptimizerConfig) and state-dict keys must keep working across moves."""

from __future__ import annotations

import torch

from tests.conftest import REPO

# `contrastlab fit -c configs/simclr/digits.yaml` at commit 104aa82 (main before the consolidation), two steps,
# 64 training images, small_cnn widths [8, 16], projection 16 -> 8: 104 KB
FIXTURE = REPO / "tests" / "fixtures" / "simclr_digits_104aa82.ckpt"


def test_a_checkpoint_written_before_the_consolidation_loads_weights_only_into_simclr():
    from contrastlab.modules import SimCLR
    from contrastlab.platform.checkpoints import load_weights_only

    ckpt = load_weights_only(FIXTURE)
    hparams = {k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")}
    model = SimCLR(**hparams)
    assert hparams["backbone_kwargs"] == {"widths": [8, 16]}
    model.load_state_dict(ckpt["state_dict"], strict=True)
    for key, value in ckpt["state_dict"].items():
        assert torch.equal(model.state_dict()[key], value), key
