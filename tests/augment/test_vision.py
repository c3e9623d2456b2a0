import pytest
import torch

from contrastlab.augment.vision import BYOLViews, ImageViews
from contrastlab.contract import DataInfo
from contrastlab.errors import ConfigError


def colour_batch(n=16, size=32):
    torch.manual_seed(0)
    return (torch.rand(n, 3, size, size) * 255).to(torch.uint8)


def test_views_shape_dtype_range_and_device():
    x = colour_batch()
    views = ImageViews(size=24, num_views=3)(x)
    assert len(views) == 3
    for v in views:
        assert v.shape == (16, 3, 24, 24) and v.dtype == torch.float32 and v.device == x.device
        assert 0.0 <= v.min() and v.max() <= 1.0


def test_views_differ_between_views_and_samples_and_calls():
    x = colour_batch()
    aug = ImageViews(size=32)
    v1, v2 = aug(x)
    assert not torch.allclose(v1, v2)
    again = aug(x)[0]
    assert not torch.allclose(v1, again)
    # each sample gets its own random crop: the crop boxes differ within one batch
    same = torch.stack([x[0]] * 8)
    views = aug(same)[0]
    assert not torch.allclose(views[0], views[1])


def test_grey_batches_skip_colour_ops():
    """Saturation, hue and grayscale leave a grey batch as it is (and 1 channel); brightness and contrast still act."""
    torch.manual_seed(0)
    whole = dict(size=8, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=0.0, jitter_p=1.0)  # no geometry
    colour_only = ImageViews(**whole, jitter=(0.0, 0.0, 0.4, 0.1), grayscale_p=1.0)
    grey = (torch.rand(8, 1, 8, 8) * 255).to(torch.uint8)
    for view in colour_only(grey):
        assert view.shape == (8, 1, 8, 8) and torch.allclose(view, grey.float() / 255, atol=1e-6)
    rgb = colour_batch(n=8, size=8)
    assert not torch.allclose(colour_only(rgb)[0], rgb.float() / 255, atol=0.01)  # the same ops act on colour
    light_and_contrast = ImageViews(**whole, jitter=(0.4, 0.4, 0.4, 0.1), grayscale_p=1.0)
    for view in light_and_contrast(grey):
        changed = (view - grey.float() / 255).abs().amax(dim=(1, 2, 3)) > 0.01
        assert view.shape == (8, 1, 8, 8) and changed.all()  # every sample's brightness or contrast moved


def test_eval_view_is_deterministic_and_resized():
    x = colour_batch(size=40)
    aug = ImageViews(size=32)
    a, b = aug.eval_view(x), aug.eval_view(x)
    assert a.shape == (16, 3, 32, 32) and torch.equal(a, b)
    assert torch.equal(ImageViews(size=40).eval_view(x), x.float() / 255)


def test_byol_recipe_is_asymmetric():
    aug = BYOLViews(size=32)
    assert len(aug.photometric[0]) == 1 and len(aug.photometric[1]) == 2  # blur; blur + solarize
    assert aug.photometric[0][0].p == 1.0 and aug.photometric[1][0].p == pytest.approx(0.1)
    assert aug.photometric[1][1].p == pytest.approx(0.2)


def test_solarize_inverts_bright_pixels_of_chosen_samples():
    from contrastlab.augment.vision import RandomSolarize

    x = torch.tensor([0.2, 0.5, 0.9]).view(1, 1, 1, 3).repeat(2, 1, 1, 1)
    assert torch.allclose(RandomSolarize(p=1.0)(x)[0, 0, 0], torch.tensor([0.2, 0.5, 0.1]))
    assert torch.equal(RandomSolarize(p=0.0)(x), x)


def test_crop_boxes_follow_scale_and_ratio():
    from contrastlab.augment.vision import RandomGeometry

    boxes = RandomGeometry(32, scale=(0.3, 0.6), ratio=(0.5, 2.0)).crop_boxes(2000, 64, 48, torch.device("cpu"))
    cx, cy, w, h = boxes.unbind(1)
    area = w * h / (64 * 48)
    assert area.min() > 0.28 and area.max() < 0.62
    assert (w / h).min() > 0.45 and (w / h).max() < 2.2
    assert (cx - w / 2).min() >= 0 and (cx + w / 2).max() <= 48 and (cy - h / 2).min() >= 0 and (cy + h / 2).max() <= 64
    # a full-image "crop" with no flip or affine reproduces the image
    x = colour_batch(n=2).float() / 255
    same = RandomGeometry(32, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip_p=0.0)(x)
    assert torch.allclose(same, x, atol=1e-5)
    flipped = RandomGeometry(32, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip_p=1.0)(x)
    assert torch.allclose(flipped, x.flip(-1), atol=1e-5)


def test_per_view_values_must_match_views():
    with pytest.raises(ValueError, match="blur_p"):
        ImageViews(num_views=2, blur_p=[1.0, 0.5, 0.1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_views_stay_on_the_gpu():
    views = ImageViews(size=32)(colour_batch().cuda())
    assert all(v.is_cuda for v in views)


def test_colour_adjustments_match_torchvision_per_sample():
    import torchvision.transforms.v2.functional as TF

    from contrastlab.augment.vision import jitter_colour

    x = colour_batch(n=4).float() / 255
    factors = torch.tensor([0.6, 1.0, 1.3, 1.4])
    cases = [
        ({"brightness": factors}, TF.adjust_brightness),
        ({"contrast": factors}, TF.adjust_contrast),
        ({"saturation": factors}, TF.adjust_saturation),
    ]
    for kwargs, reference in cases:
        args = {"brightness": None, "contrast": None, "saturation": None, "hue": None, **kwargs}
        ours = jitter_colour(x.clone(), **args)
        expected = torch.stack([reference(x[i], float(factors[i])) for i in range(4)])
        assert torch.allclose(ours, expected, atol=1e-5), kwargs


def test_hue_rotation_keeps_luma_and_zero_is_identity():
    from contrastlab.augment.vision import jitter_colour

    x = colour_batch(n=4).float() / 255 * 0.2 + 0.4  # low chroma: rotations stay inside [0, 1]
    same = jitter_colour(x.clone(), None, None, None, torch.zeros(4))
    assert torch.allclose(same, x, atol=1e-5)
    shifted = jitter_colour(x.clone(), None, None, None, torch.tensor([0.05, 0.1, -0.1, 0.02]))
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert not torch.allclose(shifted, x, atol=1e-3)
    assert torch.allclose((shifted * luma).sum(1), (x * luma).sum(1), atol=1e-4)


def test_subpixel_crop_boxes_take_any_size_and_place_inside_the_image():
    from contrastlab.augment.vision import ImageViews, RandomGeometry

    cpu = torch.device("cpu")
    whole = RandomGeometry(8, scale=(0.5, 1.0)).crop_boxes(4000, 8, 8, cpu)
    sub = RandomGeometry(8, scale=(0.5, 1.0), subpixel=True).crop_boxes(4000, 8, 8, cpu)
    # whole pixels: at 8 px only a few (w, h) pairs and corners exist; real-valued boxes are all different
    assert len({(w, h) for _, _, w, h in whole.tolist()}) < 20
    assert len({(w, h) for _, _, w, h in sub.tolist()}) == 4000
    cx, cy, w, h = sub.unbind(1)
    assert (w * h / 64).min() >= 0.5 - 1e-6 and (w * h / 64).max() <= 1.0 + 1e-6
    assert (cx - w / 2).min() >= 0 and (cx + w / 2).max() <= 8 and (cy - h / 2).min() >= 0 and (cy + h / 2).max() <= 8
    assert ((cx - w / 2) % 1 != 0).float().mean() > 0.9  # corners between pixels
    views = ImageViews(size=8, crop_scale=(0.5, 1.0), crop_subpixel=True, hflip_p=0.0)(colour_batch(n=4))
    assert len(views) == 2 and views[0].shape == (4, 3, 8, 8) and 0 <= views[0].min() and views[0].max() <= 1


def test_multi_crop_declares_its_groups_and_keeps_the_global_views_of_the_plain_recipe():
    from contrastlab.contract import ViewGroup, multi_size

    info = DataInfo("rgb", "image", (3, 32, 32))
    x = colour_batch()
    plain, multi = ImageViews(size=32), ImageViews(size=32, local_crops=6, local_size=16)
    assert multi.num_views == 8 and not multi_size(plain.view_groups(info))
    assert multi.view_groups(info) == (ViewGroup("global", 2, (3, 32, 32)), ViewGroup("local", 6, (3, 16, 16)))
    torch.manual_seed(0)
    views = multi(x)
    assert [v.shape[-1] for v in views] == [32] * 2 + [16] * 6
    torch.manual_seed(0)
    # the global crops draw first, so a recipe gains local crops without changing its global views' stream
    assert all(torch.equal(a, b) for a, b in zip(plain(x), views[:2]))
    assert multi.eval_view(x).shape[-1] == 32


def test_local_crops_need_a_local_size_that_fits():
    with pytest.raises(ConfigError, match="model.augment.local_size=0 with local_crops=4"):
        ImageViews(size=8, local_crops=4)
    with pytest.raises(ConfigError, match="local_size=12"):
        ImageViews(size=8, local_crops=4, local_size=12)
    with pytest.raises(ConfigError, match="blur_p: 2 per-view values given for 6 views"):
        ImageViews(size=8, local_crops=4, local_size=6, blur_p=[1.0, 0.1])
