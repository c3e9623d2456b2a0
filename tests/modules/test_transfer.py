"""Starting an encoder from a contrastlab checkpoint: all backbone weights or a clear error."""

import lightning as L
import pytest
import torch

from contrastlab.errors import CheckpointError
from contrastlab.modules.core.transfer import load_backbone
from contrastlab.modules.nets.vision import SmallCNN


def test_loads_the_backbone_part_of_a_checkpoint(tmp_path):
    L.seed_everything(0)
    trained = SmallCNN(in_chans=1, widths=(8, 16))
    state = {f"backbone.{k}": v for k, v in trained.state_dict().items()}
    state["projector.0.weight"] = torch.zeros(3, 3)  # other parts of the method are ignored
    torch.save({"state_dict": state, "hyper_parameters": {"backbone": "small_cnn"}}, tmp_path / "run.ckpt")
    fresh = SmallCNN(in_chans=1, widths=(8, 16))
    load_backbone(fresh, tmp_path / "run.ckpt")
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(fresh.eval()(x), trained.eval()(x))
    with pytest.raises(CheckpointError, match="of another shape or input channels"):
        load_backbone(SmallCNN(in_chans=3, widths=(8, 16)), tmp_path / "run.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.ckpt is not a readable checkpoint"):
        load_backbone(fresh, tmp_path / "junk.ckpt")
