"""The view-pipeline contract: one raw batch in, V normalised views out, on the batch's device.

A modality's pipeline subclasses `ViewPipeline`. It owns everything between the raw samples a DataModule
yields and the tensors an encoder reads. The method never normalises; it calls the pipeline and encodes
what comes out.

Normalisation has one rule: what comes before the views is the data's, what comes after is the pipeline's.
- The DataModule puts raw values on the scale its samples are defined in, once, when it reads them, so that
  every random view acts on that scale and none undoes it: a CT window (Hounsfield units to [0, 1]), MR
  foreground z-scores or a study's min-max (datamodules/medical.py), series z-scores, per series or by the
  train split's statistics (datamodules/series.py: a z-score after a scaling view would undo the scaling).
  `DataInfo.extra` records which (`intensity`, `normalize`), and `DataInfo.mean`/`std` describe the result.
- The pipeline normalises its views for the network: per-channel statistics (`ChannelNormalize`, along dim 1
  at any rank, from `DataInfo.mean`/`std` or the config), dB spectrograms, a sequence's per-view z-score.

A DataModule proposes its data's default pipeline (`DataInfo.views`, built by `default_views`); a config
may replace it (`model.init_args.augment`). Either way the module calls `bind(info)` once, so a pipeline
written for a kind of data (say "images") picks up what it was not told about this dataset (its mean and
std) from the data's `DataInfo`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from contrastlab.errors import ConfigError

if TYPE_CHECKING:
    from contrastlab.datamodules.base import DataInfo


class ViewPipeline(nn.Module):
    """Raw batch -> V views. Subclasses implement `forward` and `eval_view` and set `num_views`.

    - `forward(x)`: a list of `num_views` random views of the raw batch `x` (B, C, ...), each a float
      tensor on x's device, normalised.
    - `augment_batch(batch)`: what training adds to the batch: `views` (the default: `forward(batch["x"])`)
      and whatever else a method reads about them, e.g. where two crops overlap (TS2Vec); a pipeline that
      produces such keys overrides it.
    - `eval_view(x)`: the one deterministic view used for evaluation and embeddings, normalised the same way.
    - `bind(info)`: called once by the method with the data's `DataInfo`; a pipeline fills what its
      config left open (statistics, sizes) from it. The default does nothing.
    - `for_data(info)`: the pipeline a DataModule proposes for its data (`DataInfo.views` names the class).
    - `view_info(info)`: the data as the encoder sees it, i.e. `info` with the shape of this pipeline's views,
      which the backbone is built for. The default: the views have the raw samples' shape. A pipeline that
      crops to another length or turns waveforms into spectrograms ((C, T) -> (C, mels, frames)) says so here.
    - `preview(x)`: a picture (matplotlib Figure) of a few raw samples beside their views, logged at the
      start of each run; the default draws each panel by its rank (augment/preview.py).
    """

    num_views: int = 2

    def forward(self, x: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def eval_view(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def augment_batch(self, batch: dict) -> dict:
        return {"views": self(batch["x"])}

    def bind(self, info: DataInfo) -> None:
        return None

    def view_info(self, info: DataInfo) -> DataInfo:
        return info

    def preview(self, x: Tensor):
        return preview_views(self, x)

    @classmethod
    def for_data(cls, info: DataInfo) -> ViewPipeline:
        pipeline = cls()
        pipeline.bind(info)
        return pipeline


class ChannelNormalize(nn.Module):
    """(x - mean) / std per channel along dim 1, for inputs of any rank: (B, C), (B, C, T), (B, C, H, W), ...

    The statistics are non-persistent buffers: they follow the module to its device and come from the
    data's DataInfo (or the config), not from a checkpoint's state.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std):
            raise ConfigError(f"normalisation: {len(mean)} channel means but {len(std)} standard deviations")
        if any(s <= 0 for s in std):
            raise ConfigError(f"normalisation: every channel's std must be > 0, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]), persistent=False)
        self.register_buffer("std", torch.tensor([float(s) for s in std]), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.mean.numel():
            raise ConfigError(
                f"normalisation: {self.mean.numel()} channel statistics for samples with {x.shape[1]} channels "
                f"(dim 1 of {tuple(x.shape)}): give one mean and std per channel"
            )
        per_channel = (1, -1, *([1] * (x.ndim - 2)))
        return (x - self.mean.view(per_channel).to(x.dtype)) / self.std.view(per_channel).to(x.dtype)


def preview_views(pipeline: nn.Module, x: Tensor):
    """Raw samples, the evaluation view and each random view of `x` as one figure, for any pipeline
    that keeps the contract (`forward`, `eval_view`), without touching the global random stream."""
    from contrastlab.augment.preview import views_figure

    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        views = pipeline(x)
        columns = {"raw": x, "eval view": pipeline.eval_view(x)}
        columns.update({f"view {i + 1}": view for i, view in enumerate(views)})
    return views_figure(columns, title=type(pipeline).__name__)


def import_class(path: str) -> type:
    """The class a dotted path names (`package.module.Class`)."""
    module_name, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"{path!r} names no importable class ({err}); give package.module.Class") from err


def default_views(info: DataInfo) -> ViewPipeline:
    """The view pipeline the data proposes (`info.views`), built and bound for that data."""
    if not info.views:
        raise ConfigError(
            f"model.augment: data {info.name!r} proposes no default view pipeline (its DataInfo.views is empty): "
            "set model.init_args.augment to a ViewPipeline"
        )
    cls = import_class(info.views)
    if not (isinstance(cls, type) and issubclass(cls, ViewPipeline)):
        raise ConfigError(f"DataInfo.views={info.views!r} is not a contrastlab.augment.base.ViewPipeline subclass")
    return cls.for_data(info)


def check_pipeline(pipeline: nn.Module) -> None:
    """Refuse, naming the key, an `augment` that lacks the contract's parts."""
    missing = [name for name in ("eval_view", "num_views") if not hasattr(pipeline, name)]
    if missing:
        raise ConfigError(
            f"model.augment: {type(pipeline).__name__} lacks {', '.join(missing)}; a view pipeline subclasses "
            "contrastlab.augment.base.ViewPipeline (forward -> views, eval_view, num_views)"
        )
