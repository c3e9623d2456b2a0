import pytest
import torch

from contrastlab.errors import ConfigError
from contrastlab.modules.backbones import create_backbone


@pytest.mark.parametrize("size", [8, 28, 32])
def test_small_cnn_pools_any_small_image_to_num_features(size):
    net = create_backbone("small_cnn", in_chans=1)
    out = net(torch.randn(3, 1, size, size))
    assert out.shape == (3, net.num_features)


def test_timm_model_by_name_with_cifar_stem_keeps_32px_resolution():
    net = create_backbone("resnet18", in_chans=3, cifar_stem=True)
    assert net.conv1.stride == (1, 1) and isinstance(net.maxpool, torch.nn.Identity)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 512)
    # A 3x3 stride-1 stem keeps 32x32 at 32x32 into layer1, unlike ImageNet's 7x7/2 + max-pool.
    assert net.forward_features(torch.randn(1, 3, 32, 32)).shape[-1] == 4


def test_grey_input_to_timm_model():
    net = create_backbone("resnet18", in_chans=1)
    assert net(torch.randn(2, 1, 64, 64)).shape == (2, 512)


def test_unknown_backbone_names_the_key_and_suggests():
    with pytest.raises(ConfigError, match=r"model.backbone: unknown backbone 'resnet81'; did you mean .*resnet18"):
        create_backbone("resnet81")


def test_options_that_do_not_apply_are_refused():
    with pytest.raises(ConfigError, match="cifar_stem"):
        create_backbone("small_cnn", cifar_stem=True)
    with pytest.raises(ConfigError, match="cifar_stem"):
        create_backbone("vit_tiny_patch16_224", cifar_stem=True)
    with pytest.raises(ConfigError, match="backbone_kwargs"):
        create_backbone("small_cnn", no_such_arg=1)


def test_small_cnn_per_stage_strides_and_convs_express_a_plain_four_conv_net():
    # lightly-style: four conv-BN-ReLU, a stride-1 conv after the last stride-2 one
    net = create_backbone("small_cnn", in_chans=3, widths=(32, 64, 128, 128), convs_per_stage=1, strides=(1, 2, 2, 1))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [1, 2, 2, 1] and [c.out_channels for c in convs] == [32, 64, 128, 128]
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 128)
    uneven = create_backbone("small_cnn", in_chans=1, widths=(8, 16), convs_per_stage=(1, 3))
    assert sum(isinstance(m, torch.nn.Conv2d) for m in uneven.modules()) == 4
    # the defaults are unchanged: two convs per stage, stride 2 from the second stage
    default = [m.stride[0] for m in create_backbone("small_cnn").modules() if isinstance(m, torch.nn.Conv2d)]
    assert default == [1, 1, 2, 1, 2, 1]


def test_small_cnn_per_stage_lists_of_the_wrong_length_name_the_key():
    message = "model.backbone_kwargs: small_cnn has 3 widths, 3 convs_per_stage and 2 strides"
    with pytest.raises(ConfigError, match=message):
        create_backbone("small_cnn", strides=(1, 2))
