"""G-SimCLR's pseudo-labels (modules/core/clusters.py): spherical k-means finds separated clusters, the bank grows by
dataset index and loads from a checkpoint of any size; and CACR's and G-SimCLR's refusals of their keys."""

import pytest
import torch
import torch.nn.functional as F

from contrastlab.augment.vision import ImageViews
from contrastlab.errors import ConfigError
from contrastlab.modules import CACR, GSimCLR
from contrastlab.modules.core.clusters import PseudoLabels, spherical_kmeans


def three_directions(per: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Points scattered tightly around 3 orthogonal directions of R^6, shuffled; and which direction each is near."""
    torch.manual_seed(seed)
    truth = torch.arange(3).repeat_interleave(per)[torch.randperm(3 * per)]
    points = F.one_hot(truth, 6).float() * 5 + 0.3 * torch.randn(3 * per, 6)
    return points, truth


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a[:, None] == a[None, :], b[:, None] == b[None, :])


def test_spherical_kmeans_finds_separated_clusters_the_same_way_from_the_same_seed():
    points, truth = three_directions()
    first = spherical_kmeans(points, 3, generator=torch.Generator().manual_seed(0))
    again = spherical_kmeans(points, 3, generator=torch.Generator().manual_seed(0))
    assert same_partition(first, truth) and torch.equal(first, again)
    assert same_partition(spherical_kmeans(points * 7, 3, generator=torch.Generator().manual_seed(1)), truth)  # cosine


def test_pseudo_labels_cluster_what_was_recorded_and_load_from_any_size():
    points, truth = three_directions()
    labels = PseudoLabels(dim=6)
    index = torch.arange(10, 70)  # indices need not start at 0: the buffers grow to the largest
    assert (labels.of(index) == -1).all()  # nothing clustered yet: no negative is excluded
    labels.record(index[:40], points[:40])
    labels.record(index[40:], points[40:])
    assert labels.refresh(k=3, seed=0) == 60
    assert same_partition(labels.of(index), truth) and (labels.labels[:10] == -1).all()

    state = labels.state_dict()
    assert set(state) == {"bank", "seen", "labels"} and state["labels"].shape == (70,)
    fresh = PseudoLabels(dim=6)  # empty, as a model built before its first step
    fresh.load_state_dict(state)
    larger = PseudoLabels(dim=6)
    larger.record(torch.tensor([99]), torch.randn(1, 6))  # grown past the checkpoint's size
    larger.load_state_dict(state)
    for loaded in (fresh, larger):
        assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())


def small(model, info, **kw):
    return model(
        backbone="small_cnn", backbone_kwargs={"widths": (8,)}, proj_hidden_dim=8, proj_dim=4, data_info=info, **kw
    )


def test_cacr_and_gsimclr_refuse_their_bad_keys_naming_them(digits_info):
    with pytest.raises(ConfigError, match=r"model.augment.init_args.num_views=1: CACR contrasts views"):
        small(CACR, digits_info, augment=ImageViews(size=8, num_views=1))
    with pytest.raises(ConfigError, match=r"model.init_args.tau_neg must be >= 0"):
        small(CACR, digits_info, tau_neg=-1.0)
    with pytest.raises(ConfigError, match=r"model.init_args.refresh_every must be >= 1"):
        small(GSimCLR, digits_info, refresh_every=0)

    class Data:  # what setup reads of a DataModule: its training split and name
        info = digits_info

        @staticmethod
        def split(name):
            return range(50)

    model = small(GSimCLR, digits_info, num_clusters=60)
    model.trainer = type("Trainer", (), {"datamodule": Data()})()
    with pytest.raises(ConfigError, match=r"num_clusters=60 is more than the 50 training samples of digits"):
        model.setup("fit")
