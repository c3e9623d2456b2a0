"""GradCache for two-tower methods: the sample's backbone and the text tower both encode in chunks, and the
gradients equal the full batch's (float64, encoders without batch statistics)."""

from __future__ import annotations

import pytest
import torch

from contrastlab.augment.vision import ImageViews
from contrastlab.contract import DataInfo
from contrastlab.modules import CLIP, ConVIRT
from tests.modules.test_gradcache import Attached, NoBatchStats, gradients, relative_error

TEXT = {"kind": "wordpiece", "vocab_size": 30, "pad_id": 0, "max_tokens": 10, "sha256": "0" * 64}
INFO = DataInfo("pairs", "image", (1, 8, 8), 3, mean=(0.3,), std=(0.37,), views="contrastlab.augment.vision.ImageViews",
                extra={"text": TEXT, "class_names": ["a", "b", "c"]})  # fmt: skip
COMMON = dict(
    backbone="small_cnn", backbone_kwargs={"widths": (8,)}, data_info=INFO, augment=ImageViews(num_views=1, size=8),
    text_tower={"width": 8, "layers": 1, "heads": 2, "dropout": 0.0},
)  # fmt: skip
METHODS = {
    "convirt": lambda **kw: ConVIRT(proj_hidden_dim=16, proj_dim=8, **COMMON, **kw),
    "clip": lambda **kw: CLIP(embed_dim=8, **COMMON, **kw),
}


@pytest.mark.parametrize("name", METHODS)
def test_two_tower_gradients_equal_the_full_batch_in_float64(name, monkeypatch):
    torch.manual_seed(0)
    model = METHODS[name](grad_cache_chunk=0)
    model.backbone = NoBatchStats()
    model.double()
    trainer = Attached()
    monkeypatch.setattr(type(model), "trainer", property(lambda self: trainer))
    monkeypatch.setattr(type(model), "log", lambda self, *a, **k: None)
    n = 10
    x = (torch.rand(n, 1, 8, 8) * 255).to(torch.uint8)
    lengths = torch.randint(3, 10, (n,))
    mask = torch.arange(10)[None, :] < lengths[:, None]
    ids = torch.randint(4, 30, (n, 10)).masked_fill(~mask, 0)
    batch = model.on_after_batch_transfer(
        {"x": x, "y": torch.arange(n) % 3, "idx": torch.arange(n), "input_ids": ids, "attention_mask": mask}, 0
    )
    batch["views"] = [v.double() for v in batch["views"]]
    full = gradients(model, batch)
    model.hparams.grad_cache_chunk = 4  # chunks of 4, 4 and 2 on both towers
    cached = gradients(model, batch)
    assert relative_error(cached, full) < 1e-10
    assert any(k.startswith("text_tower.") for k in cached) and any(k.startswith("backbone.") for k in cached)
