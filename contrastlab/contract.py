"""What data, views, nets and methods agree on, and nothing else: the batch keys, `DataInfo`, the `ViewPipeline`,
and `HandFeatures` (the baseline features a DataModule declares for evaluation).

A DataModule's dataset yields `{SAMPLE: raw sample, LABEL: label or -1, INDEX: index}` (multi-label data: a
multi-hot label, all -1 when unlabelled; a padding collate adds `MASK` and `LENGTHS`); it says what one sample is
with a `DataInfo` and proposes its default view pipeline (`DataInfo.views`, built by `default_views`). On the
device the method's view pipeline adds `VIEWS` in training and `EVAL_VIEW` in validation, test and predict.
Validation and test read two named loaders, `BANK_LOADER` (the kNN feature bank: the train split in order) and
`QUERY_LOADER` (the split being evaluated).

Normalisation has one rule: what comes before the views is the data's, what comes after is the pipeline's.
- The DataModule puts raw values on the scale its samples are defined in, once, when it reads them, so that
  every random view acts on that scale and none undoes it: a CT window (Hounsfield units to [0, 1]), MR
  foreground z-scores or a study's min-max (datamodules/medical.py), series z-scores, per series or by the
  train split's statistics (datamodules/series.py: a z-score after a scaling view would undo the scaling).
  `DataInfo.extra` records which (`intensity`, `normalize`), and `DataInfo.mean`/`std` describe the result.
- The pipeline normalises its views for the network: per-channel statistics (`augment.ops.ChannelNormalize`,
  along dim 1 at any rank, from `DataInfo.mean`/`std` or the config), dB spectrograms, a sequence's per-view
  z-score.

A config may replace the data's pipeline (`model.init_args.augment`). Either way the module calls `bind(info)`
once, so a pipeline written for a kind of data (say "images") picks up what it was not told about this dataset
(its mean and std) from the data's `DataInfo`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from contrastlab.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Batch = dict[str, Any]

# The batch keys.
SAMPLE = "x"  # the raw sample: a uint8 image, a float waveform or series, a volume
LABEL = "y"  # a class index, or a multi-hot vector; -1 when unlabelled
INDEX = "idx"  # the sample's index in its split
MASK = "mask"  # (B, T) True on real steps, where a collate pads samples of different lengths
LENGTHS = "lengths"  # (B,) real steps of each padded sample
VIEWS = "views"  # training: the V views of the batch, made on the device by the view pipeline
EVAL_VIEW = "eval_view"  # validation, test, predict: the deterministic view

# The named evaluation loaders; a DataModule that returns them as a list gives them in this order.
BANK_LOADER, QUERY_LOADER = "bank", "query"
POSITIONAL_LOADERS = (BANK_LOADER, QUERY_LOADER)

# Classes that moved file, by the class path that older runs name: in a checkpoint's `DataInfo.views`, in a run's
# config.yaml (read back by `contrastlab eval` and compared by `--resume`). Data, not code: no old module remains.
MOVED_CLASSES = {
    "contrastlab.augment.volume.MedicalImageViews": "contrastlab.augment.medical.MedicalImageViews",
    "contrastlab.augment.tstcc.TSTCCViews": "contrastlab.augment.series.TSTCCViews",
}


@dataclass(frozen=True)
class ViewGroup:
    """Views of one kind that a pipeline makes: `count` views, each sample of `shape` (no batch dimension).

    Multi-crop (Caron et al. 2020) makes two groups: global crops at the data's size, then smaller local crops.
    A pipeline lists its groups in the order `forward` returns them, the first group being the views a method may
    treat as global (SwAV's assignments, DINO's teacher inputs).
    """

    name: str
    count: int
    shape: tuple[int, ...]


@dataclass(frozen=True)
class DataInfo:
    """What a method needs to know about its data, known before any file is read.

    Args:
        name: the dataset's name (the default MLflow experiment).
        modality: "image", "audio", "series", "volume", ... (a run tag; backbones check the sample rank).
        shape: one sample: (C, H, W), (C, T), (C, D, H, W), ...; a size that varies between samples (padded by
            the DataModule's collate) may be given as 0. A view pipeline whose views have another shape (a crop, a
            spectrogram) says which in its `view_info(info)`, and the backbone is built for that.
        num_classes: 0 for unlabelled data.
        multilabel: labels are multi-hot vectors (B, num_classes) rather than class indices.
        mean, std: per-channel statistics, for pipelines that normalise by them (empty when unused).
        sample_rate: samples per second of audio or series data.
        views: class path of the `ViewPipeline` the data proposes by default (its `for_data(info)` builds it).
        extra: anything else a modality's pipelines or backbones need (plain values: it is saved in checkpoints).
    """

    name: str
    modality: str
    shape: tuple[int, ...]
    num_classes: int = 0
    multilabel: bool = False
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    sample_rate: float | None = None
    views: str = ""
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def sample_dims(self) -> int:
        """Dimensions of one channel of a sample: 1 for (C, T), 2 for (C, H, W), 3 for (C, D, H, W)."""
        return len(self.shape) - 1

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        # Checkpoints written before `shape` existed hold (channels, size) of square images.
        if "shape" not in state and "channels" in state:
            channels, size = state.pop("channels"), state.pop("size")
            state["shape"] = (channels, size, size)
            state.setdefault("views", "contrastlab.augment.vision.ImageViews")
        if "views" in state:
            state["views"] = MOVED_CLASSES.get(state["views"], state["views"])
        defaults = {f.name: f.default for f in fields(self) if f.default is not MISSING}
        defaults["extra"] = {}
        for key, value in {**defaults, **state}.items():
            object.__setattr__(self, key, value)


Samples = Sequence[np.ndarray]  # raw samples as their evaluation loader gives them, each over its own steps


@dataclass(frozen=True)
class HandFeatures:
    """Hand-crafted features of raw samples: what a practitioner classifies before learning anything, the
    baseline a learned representation must beat (a DataModule's `hand_features()`, by name).

    Args:
        label: what the features are, as a table shows it ("MFCC mean+std", "raw").
        fit: the train split's samples and a seed -> the transform of any split's samples (an (N, D) array, or
            one array per sample). Fitted on train alone, so nothing of val or test leaks into the features.
        classifiers: what evaluation runs on them, from "nn" (1-NN, Euclidean), "dtw" (1-NN by DTW: samples
            (C, T)), "logistic" (L2 tuned on val), "ridge" (ridge regression one-vs-rest, alpha by
            leave-one-out).
    """

    label: str
    fit: Callable[[Samples, int], Callable[[Samples], np.ndarray | Samples]]
    classifiers: tuple[str, ...]


def as_they_are(train: Samples, seed: int) -> Callable[[Samples], Samples]:
    """The `fit` of raw features: the samples themselves (pixels, values)."""
    return lambda samples: samples


class ViewPipeline(nn.Module):
    """Raw batch -> V views. Subclasses implement `forward` and `eval_view` and set `num_views`.

    - `forward(x)`: a list of `num_views` random views of the raw batch `x` (B, C, ...), each a float
      tensor on x's device, normalised.
    - `augment_batch(batch)`: what training adds to the batch: `VIEWS` (the default: `forward(batch[SAMPLE])`)
      and whatever else a method reads about them, e.g. where two crops overlap (TS2Vec); a pipeline that
      produces such keys overrides it.
    - `eval_view(x)`: the one deterministic view used for evaluation and embeddings, normalised the same way.
    - `bind(info)`: called once by the method with the data's `DataInfo`; a pipeline fills what its
      config left open (statistics, sizes) from it. The default does nothing.
    - `for_data(info)`: the pipeline a DataModule proposes for its data (`DataInfo.views` names the class).
    - `view_info(info)`: the data as the encoder sees it, i.e. `info` with the shape of this pipeline's views,
      which the backbone is built for. The default: the views have the raw samples' shape. A pipeline that
      crops to another length or turns waveforms into spectrograms ((C, T) -> (C, mels, frames)) says so here.
    - `view_groups(info)`: the groups of views `forward` returns, in order (`ViewGroup`: name, count, shape);
      the default is one group of `num_views` views of `view_info(info)`'s shape. A pipeline whose views differ
      in size (multi-crop's global and local crops) declares each group, and methods that cannot take views of
      several sizes refuse it (`multi_size`).
    - `preview(x)`: a picture (matplotlib Figure) of a few raw samples beside their views, logged at the
      start of each run; the default draws each panel by its rank (`preview_views`).
    """

    num_views: int = 2

    def forward(self, x: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def eval_view(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def augment_batch(self, batch: Batch) -> Batch:
        return {VIEWS: self(batch[SAMPLE])}

    def bind(self, info: DataInfo) -> None:
        return None

    def view_info(self, info: DataInfo) -> DataInfo:
        return info

    def view_groups(self, info: DataInfo) -> tuple[ViewGroup, ...]:
        return (ViewGroup("views", self.num_views, self.view_info(info).shape),)

    def preview(self, x: Tensor) -> Figure:
        return preview_views(self, x)

    @classmethod
    def for_data(cls, info: DataInfo) -> ViewPipeline:
        pipeline = cls()
        pipeline.bind(info)
        return pipeline


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
        raise ConfigError(f"DataInfo.views={info.views!r} is not a contrastlab.contract.ViewPipeline subclass")
    return cls.for_data(info)


def check_pipeline(pipeline: nn.Module) -> None:
    """Refuse, naming the key, an `augment` that lacks the contract's parts."""
    missing = [name for name in ("eval_view", "num_views") if not hasattr(pipeline, name)]
    if missing:
        raise ConfigError(
            f"model.augment: {type(pipeline).__name__} lacks {', '.join(missing)}; a view pipeline subclasses "
            "contrastlab.contract.ViewPipeline (forward -> views, eval_view, num_views)"
        )


def view_groups(pipeline: nn.Module, info: DataInfo) -> tuple[ViewGroup, ...]:
    """A pipeline's view groups, checked against its `num_views`; a pipeline written without the method (one
    duck-typed on `forward`, `eval_view` and `num_views`) makes one group of views shaped as the data."""
    declare = getattr(pipeline, "view_groups", None)
    groups = declare(info) if declare is not None else (ViewGroup("views", pipeline.num_views, info.shape),)
    if sum(g.count for g in groups) != pipeline.num_views:
        raise ConfigError(
            f"model.augment: {type(pipeline).__name__} declares {sum(g.count for g in groups)} views in its "
            f"view_groups but num_views={pipeline.num_views}; the groups must add up to the views forward returns"
        )
    return tuple(groups)


def multi_size(groups: tuple[ViewGroup, ...]) -> bool:
    """Whether the views come in more than one shape (multi-crop)."""
    return len({g.shape for g in groups}) > 1


def describe_groups(groups: tuple[ViewGroup, ...]) -> str:
    """`2 global of (1, 8, 8) + 4 local of (1, 6, 6)`: for error messages."""
    return " + ".join(f"{g.count} {g.name} of {g.shape}" for g in groups)


# -- the views picture: raw samples beside their views, the fastest way to see a broken recipe -------------------
#
# One row per sample and one column per picture (raw, the evaluation view, each random view); a panel is drawn by
# its rank alone: (C, H, W) as an image (one channel grey, three RGB, otherwise the first channel), (C, T) as one
# line per channel, (C, D, H, W) as its middle slice. A pipeline whose views read better another way (a
# spectrogram with a frequency axis, a CT window) overrides `ViewPipeline.preview`. Each panel is scaled to its
# own range, so normalised views and raw uint8 samples show alike.

PANEL_INCHES = 1.4
MAX_LINES = 4  # channels drawn for a (C, T) panel: more is unreadable


def preview_views(pipeline: nn.Module, x: Tensor) -> Figure:
    """Raw samples, the evaluation view and each random view of `x` as one figure, for any pipeline
    that keeps the contract (`forward`, `eval_view`), without touching the global random stream."""
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        views = pipeline(x)
        columns = {"raw": x, "eval view": pipeline.eval_view(x)}
        sizes = {tuple(view.shape[2:]) for view in views}
        for i, view in enumerate(views):
            # multi-crop: say each view's size, since panels are drawn at one size whatever their pixels
            size = f" ({'x'.join(map(str, view.shape[2:]))})" if len(sizes) > 1 else ""
            columns[f"view {i + 1}{size}"] = view
    return views_figure(columns, title=type(pipeline).__name__)


def views_figure(columns: dict[str, Tensor], title: str = "") -> Figure:
    """Columns of batched tensors (B, C, ...) with one name each, drawn as a grid of B rows."""
    from matplotlib.figure import Figure

    names = list(columns)
    rows = min(len(t) for t in columns.values())
    figure = Figure(figsize=(PANEL_INCHES * len(names), PANEL_INCHES * rows), dpi=100, layout="constrained")
    axes = figure.subplots(rows, len(names), squeeze=False)
    for col, name in enumerate(names):
        batch = columns[name].detach().float().cpu()
        for row in range(rows):
            ax = axes[row][col]
            draw_panel(ax, batch[row].numpy())
            if row == 0:
                ax.set_title(name, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    return figure


def draw_panel(ax, sample: np.ndarray) -> None:
    """One sample (C, ...) on one axis, by its rank."""
    ax.set_xticks([])
    ax.set_yticks([])
    if sample.ndim == 1:  # (C,): a feature vector
        ax.bar(np.arange(len(sample)), sample, color="tab:blue")
        return
    if sample.ndim == 2:  # (C, T)
        for channel in sample[:MAX_LINES]:
            ax.plot(channel, linewidth=0.7)
        return
    while sample.ndim > 3:  # (C, D, H, W) and deeper: the middle slice
        sample = sample[:, sample.shape[1] // 2]
    image = _unit_range(sample)
    if image.shape[0] == 3:
        ax.imshow(np.transpose(image, (1, 2, 0)), interpolation="nearest")
    else:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")


def _unit_range(x: np.ndarray) -> np.ndarray:
    low, high = float(np.nanmin(x)), float(np.nanmax(x))
    return np.zeros_like(x) if high <= low else (x - low) / (high - low)
