"""Volume views: the geometry of every view in one grid_sample, exact on known volumes; the intensity ops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from contrastlab.augment.medical import MedicalImageViews
from contrastlab.augment.volume import RandomContrast, RandomGamma, VolumeViews, gaussian_blur3d, resample, volume_theta
from contrastlab.contract import DataInfo

CUBE = torch.arange(6 * 6 * 6, dtype=torch.float32).view(1, 1, 6, 6, 6)
ONES, ZEROS = torch.ones(1, 3), torch.zeros(1, 3)


def geometry(sides=ONES, centres=ZEROS, flips=ONES, angles=ZEROS, shifts=ZEROS, size=(6, 6, 6)):
    return resample(CUBE, volume_theta(sides, centres, flips, angles, shifts), size)


def test_every_view_of_a_batch_is_resampled_by_one_grid_sample(monkeypatch):
    calls = []
    original = F.grid_sample

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(F, "grid_sample", counting)
    views = VolumeViews(size=8, num_views=3)
    out = views(torch.randint(0, 255, (4, 1, 12, 12, 12), dtype=torch.uint8))
    assert len(calls) == 1 and calls[0] == (12, 1, 12, 12, 12)
    assert [v.shape for v in out] == [(4, 1, 8, 8, 8)] * 3
    assert not torch.equal(out[0], out[1])  # views differ


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_flips_reverse_the_right_axis(axis):
    flips = torch.ones(1, 3)
    flips[0, axis] = -1
    assert torch.allclose(geometry(flips=flips), CUBE.flip(2 + axis), atol=1e-4)


@pytest.mark.parametrize("axis, dims, turns", [(0, (3, 4), 1), (1, (2, 4), -1), (2, (2, 3), 1)])
def test_a_quarter_turn_about_each_axis_is_rot90(axis, dims, turns):
    angles = torch.zeros(1, 3)
    angles[0, axis] = math.pi / 2
    assert torch.allclose(geometry(angles=angles), torch.rot90(CUBE, turns, dims), atol=1e-4)


def test_a_crop_samples_the_voxels_of_its_box():
    # half of each side, centred in the first octant, at half the size: exactly that octant's voxels
    out = geometry(sides=torch.full((1, 3), 0.5), centres=torch.full((1, 3), -0.5), size=(3, 3, 3))
    assert torch.allclose(out, CUBE[..., :3, :3, :3], atol=1e-4)
    # a shift of the whole crop by one voxel (2/6 of the [-1, 1] range) along W
    shifted = geometry(shifts=torch.tensor([[0.0, 0.0, 2 / 6]]))
    assert torch.allclose(shifted[..., :5], CUBE[..., 1:], atol=1e-4) and shifted[..., 5].abs().max() < 1e-3


def test_intensity_ops():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 6, 6, 6)
    contrasted = RandomContrast(contrast=0.5, brightness=0.0, p=1.0)(x)
    assert torch.allclose(contrasted.mean(dim=(1, 2, 3, 4)), x.mean(dim=(1, 2, 3, 4)), atol=1e-5)
    assert not torch.allclose(contrasted, x)
    ramp = torch.linspace(0, 1, 6 * 6 * 6).view(1, 1, 6, 6, 6)
    assert torch.allclose(RandomGamma(gamma=(2.0, 2.0), p=1.0)(ramp), ramp**2, atol=1e-5)
    assert torch.equal(RandomGamma(p=0.0)(ramp), ramp)
    # a blur keeps a constant volume, leaves sigma-0 samples alone, and spreads a point as a Gaussian
    constant = torch.full((2, 1, 5, 5, 5), 3.0)
    assert torch.allclose(gaussian_blur3d(constant, torch.tensor([1.0, 0.5])), constant)
    point = torch.zeros(2, 1, 9, 9, 9)
    point[:, :, 4, 4, 4] = 1
    blurred = gaussian_blur3d(point, torch.tensor([1.0, 0.0]))
    assert torch.equal(blurred[1], point[1])
    profile = torch.exp(-0.5 * torch.arange(-3, 4.0) ** 2)  # truncated at 3 sigma
    profile = F.pad(profile / profile.sum(), (1, 1))
    assert torch.allclose(blurred[0, 0, 4, 4], profile * profile[4] ** 2, atol=1e-6)
    assert blurred[0].sum().item() == pytest.approx(1.0, abs=1e-5)


def test_volume_views_bind_to_the_data_and_clamp_uint8():
    info = DataInfo("vol", "volume", (1, 10, 12, 14), 2, mean=(0.5,), std=(0.25,))
    views = VolumeViews.for_data(info)
    assert views.size == (10, 12, 14)
    x = torch.randint(0, 255, (3, 1, 10, 12, 14), dtype=torch.uint8)
    for view in views(x):
        assert view.shape == (3, 1, 10, 12, 14)
        assert view.min() >= (0 - 0.5) / 0.25 - 1e-5 and view.max() <= (1 - 0.5) / 0.25 + 1e-5
    assert torch.allclose(views.eval_view(x), (x.float() / 255 - 0.5) / 0.25)


def test_the_grey_medical_recipe_has_no_colour():
    views = MedicalImageViews.for_data(DataInfo("b", "image", (1, 28, 28), 2, mean=(0.5,), std=(0.25,)))
    assert views.size == 28 and all(len(c) <= 1 for c in views.colour)  # brightness/contrast jitter only
    out = views(torch.randint(0, 255, (5, 1, 28, 28), dtype=torch.uint8))
    assert [v.shape for v in out] == [(5, 1, 28, 28)] * 2
    with pytest.raises(ValueError, match="no saturation or hue"):
        MedicalImageViews(jitter=(0.4, 0.4, 0.4, 0.1))
