"""The hooks a method or a modality overrides: encode (here mask-aware), embed, evaluators, named loaders."""

import lightning as L
import torch
from torch import Tensor, nn

from contrastlab.augment.vision import ImageViews
from contrastlab.contract import DataInfo, ViewPipeline
from contrastlab.datamodules.base import ContrastiveDataModule, TensorSamples, pad_collate
from contrastlab.modules import MeanShifted, SimCLR
from contrastlab.modules.nets.registry import register_backbone

GREY = DataInfo("grey", "image", (1, 8, 8), 10, mean=(0.3,), std=(0.4,), views="contrastlab.augment.vision.ImageViews")


def trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def test_embed_is_the_normalised_eval_view_through_encode():
    torch.manual_seed(0)
    model = SimCLR(backbone="small_cnn", data_info=GREY, proj_hidden_dim=16).eval()
    x = (torch.rand(4, 1, 8, 8) * 255).to(torch.uint8)
    expected = model.backbone((x.float() / 255 - 0.3) / 0.4)
    assert isinstance(model.augment, ImageViews)  # the data's proposal, bound to its statistics
    assert torch.allclose(model.embed({"x": x}), expected, atol=1e-5)
    assert torch.allclose(model(model.augment.eval_view(x)), expected, atol=1e-5)


def test_evaluators_follow_the_data_and_the_method():
    single = SimCLR(backbone="small_cnn", data_info=GREY).evaluators()
    assert (single.monitor, single.mode) == ("val/knn_top1", "max")
    multi = DataInfo("tags", "image", (1, 8, 8), 5, multilabel=True, mean=(0.3,), std=(0.4,), views=GREY.views)
    assert SimCLR(backbone="small_cnn", data_info=multi).evaluators().monitor == "val/map"
    unlabelled = DataInfo("raw", "image", (1, 8, 8), 0, mean=(0.3,), std=(0.4,), views=GREY.views)
    assert (SimCLR(backbone="small_cnn", data_info=unlabelled).evaluators().mode) == "min"
    anomaly = MeanShifted(backbone="small_cnn", data_info=GREY).evaluators()
    assert (anomaly.monitor, type(anomaly.callbacks[0]).__name__) == ("val/auroc", "AnomalyMetrics")


# -- a mask-aware encoder on variable-length series --------------------------------------------------


@register_backbone("test_masked_conv1d", dims=1)
class MaskedConv1d(nn.Module):
    def __init__(self, in_chans: int, width: int = 8):
        super().__init__()
        self.conv = nn.Conv1d(in_chans, width, 1)  # pointwise: padding cannot leak into real steps
        self.num_features = width

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        h = torch.relu(self.conv(x))
        if mask is None:
            return h.mean(dim=-1)
        mask = mask[:, None, :].to(h.dtype)
        return (h * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)


class Scale(ViewPipeline):
    def forward(self, x):
        return [x * torch.empty(x.shape[0], 1, 1).uniform_(0.8, 1.2) for _ in range(self.num_views)]

    def eval_view(self, x):
        return x


class MaskedSimCLR(SimCLR):
    """SimCLR whose encoder averages over the real time steps only."""

    def encode(self, batch, views):
        self.masks_seen = getattr(self, "masks_seen", 0) + int("mask" in batch)
        return [self.backbone(v, batch.get("mask")) for v in views]


class Ragged(ContrastiveDataModule):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    @property
    def info(self):
        return DataInfo("ragged", "series", (1, 0), 2, views="tests.modules.test_hooks.Scale")

    def load_split(self, split):
        g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
        samples = []
        for i in range(32):
            length = 6 + i % 7
            x = torch.randn(1, length, generator=g) + (3.0 if i % 2 else -3.0)
            samples.append({"x": x, "y": i % 2, "idx": i})
        return samples

    def collate(self, samples):
        return pad_collate(samples)


def test_a_mask_aware_encoder_trains_and_evaluates_on_padded_batches():
    torch.manual_seed(0)
    data = Ragged(batch_size=8)
    model = MaskedSimCLR(backbone="test_masked_conv1d", data_info=data.info, proj_hidden_dim=8, proj_dim=4)
    run = trainer(limit_train_batches=2)
    run.fit(model, data)
    assert model.masks_seen > 0 and "val/knn_top1" in run.callback_metrics
    model.eval()
    one = data.split("val")[0]
    alone = model.embed({"x": one["x"][None]})
    padded = model.embed(pad_collate([one, data.split("val")[6]]))[:1]  # sample 6 is longer: sample 0 is padded
    assert torch.allclose(alone, padded, atol=1e-6)


# -- multi-label data -------------------------------------------------------------------------------


class Tags(ContrastiveDataModule):
    """8x8 grey images whose quadrants are lit or not: four binary labels per image."""

    @property
    def info(self):
        return DataInfo("tags", "image", (1, 8, 8), 4, multilabel=True, mean=(0.3,), std=(0.4,), views=GREY.views)

    def load_split(self, split):
        g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
        y = torch.randint(0, 2, (64, 4), generator=g)
        x = torch.zeros(64, 1, 8, 8)
        for q, (r, c) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
            x[:, 0, r : r + 4, c : c + 4] += y[:, q, None, None] * 200
        return TensorSamples((x + torch.rand(x.shape, generator=g) * 40).to(torch.uint8), y)


def test_multilabel_data_reports_map_and_auroc():
    torch.manual_seed(0)
    data = Tags(batch_size=32)
    model = SimCLR(backbone="small_cnn", backbone_kwargs={"widths": (8,)}, data_info=data.info, proj_hidden_dim=8)
    model.augment = ImageViews(size=8, hflip_p=0.0, crop_scale=(0.9, 1.0), jitter=(0.1, 0.1, 0, 0), grayscale_p=0)
    model.augment.bind(data.info)
    run = trainer()
    run.fit(model, data)
    metrics = run.callback_metrics
    assert {"val/map", "val/auroc", "val/probe_map"} <= set(metrics) and "val/knn_top1" not in metrics
    assert 0.5 < float(metrics["val/map"]) <= 1 and 0.5 < float(metrics["val/auroc"]) <= 1
