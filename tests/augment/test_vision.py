import pytest
import torch

from contrastlab.augment.vision import BYOLViews, ImageViews


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
    x = (torch.rand(8, 1, 8, 8) * 255).to(torch.uint8)
    views = ImageViews(size=8, hflip_p=0.0)(x)  # default jitter has saturation and hue
    assert views[0].shape == (8, 1, 8, 8)


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
