import pytest
import torch
from torch import nn

from contrastlab.contract import DataInfo
from contrastlab.errors import ConfigError
from contrastlab.modules.core.backbones import available_backbones, create_backbone
from contrastlab.modules.nets.registry import BACKBONES, register_backbone

GREY = DataInfo("grey", "image", (1, 8, 8))
RGB = DataInfo("rgb", "image", (3, 32, 32))
SERIES = DataInfo("series", "series", (2, 64))


@pytest.mark.parametrize("size", [8, 28, 32])
def test_small_cnn_pools_any_small_image_to_num_features(size):
    net = create_backbone("small_cnn", GREY)
    out = net(torch.randn(3, 1, size, size))
    assert out.shape == (3, net.num_features)


def test_timm_model_by_name_with_cifar_stem_keeps_32px_resolution():
    net = create_backbone("resnet18", RGB, cifar_stem=True)
    assert net.conv1.stride == (1, 1) and isinstance(net.maxpool, torch.nn.Identity)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 512)
    # A 3x3 stride-1 stem keeps 32x32 at 32x32 into layer1, unlike ImageNet's 7x7/2 + max-pool.
    assert net.forward_features(torch.randn(1, 3, 32, 32)).shape[-1] == 4


def test_grey_input_to_timm_model():
    net = create_backbone("resnet18", GREY)
    assert net(torch.randn(2, 1, 64, 64)).shape == (2, 512)


def test_unknown_backbone_names_the_key_and_suggests():
    with pytest.raises(ConfigError, match=r"model.backbone: unknown backbone 'resnet81'; did you mean .*resnet18"):
        create_backbone("resnet81", RGB)


def test_options_that_do_not_apply_are_refused():
    with pytest.raises(ConfigError, match="cifar_stem"):
        create_backbone("small_cnn", GREY, cifar_stem=True)
    with pytest.raises(ConfigError, match="cifar_stem"):
        create_backbone("vit_tiny_patch16_224", RGB, cifar_stem=True)
    with pytest.raises(ConfigError, match="backbone_kwargs"):
        create_backbone("small_cnn", GREY, no_such_arg=1)


@register_backbone("test_tiny_conv1d", dims=1)
class TinyConv1d(nn.Module):
    def __init__(self, in_chans: int, width: int = 4, info: DataInfo | None = None):
        super().__init__()
        self.seen_info = info
        self.conv = nn.Conv1d(in_chans, width, 3, padding=1)
        self.num_features = width

    def forward(self, x):
        return self.conv(x).mean(dim=-1)


def test_a_registered_1d_net_is_built_for_1d_data_with_its_info():
    net = create_backbone("test_tiny_conv1d", SERIES, width=6)
    assert net(torch.randn(5, 2, 64)).shape == (5, 6) and net.seen_info is SERIES
    assert "test_tiny_conv1d" in available_backbones(1) and "test_tiny_conv1d" not in available_backbones(2)
    register_backbone("test_tiny_conv1d", dims=1)(TinyConv1d)  # the same class again (a re-import): fine
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("test_tiny_conv1d", dims=1)(nn.Identity)
    assert BACKBONES["test_tiny_conv1d"].factory is TinyConv1d


def test_a_net_of_another_rank_is_refused_naming_the_ones_that_fit():
    with pytest.raises(ConfigError, match=r"'small_cnn' takes 2-D samples .* \(1-D\): pick one of .*test_tiny_conv1d"):
        create_backbone("small_cnn", SERIES)
    with pytest.raises(ConfigError, match="unknown backbone 'resnet18'; did you mean .*resnet1d"):
        create_backbone("resnet18", SERIES)  # a 2-D timm name on series: the 1-D net of that name
    with pytest.raises(ConfigError, match="unknown backbone 'vit_tiny_patch16_224'; 1-D backbones are registered"):
        create_backbone("vit_tiny_patch16_224", SERIES)


def test_small_cnn_per_stage_strides_and_convs_express_a_plain_four_conv_net():
    # lightly-style: four conv-BN-ReLU, a stride-1 conv after the last stride-2 one
    net = create_backbone("small_cnn", RGB, widths=(32, 64, 128, 128), convs_per_stage=1, strides=(1, 2, 2, 1))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [1, 2, 2, 1] and [c.out_channels for c in convs] == [32, 64, 128, 128]
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 128)
    uneven = create_backbone("small_cnn", GREY, widths=(8, 16), convs_per_stage=(1, 3))
    assert sum(isinstance(m, torch.nn.Conv2d) for m in uneven.modules()) == 4
    # the defaults are unchanged: two convs per stage, stride 2 from the second stage
    default = [m.stride[0] for m in create_backbone("small_cnn", GREY).modules() if isinstance(m, torch.nn.Conv2d)]
    assert default == [1, 1, 2, 1, 2, 1]


def test_small_cnn_per_stage_lists_of_the_wrong_length_name_the_key():
    message = "model.backbone_kwargs: small_cnn has 3 widths, 3 convs_per_stage and 2 strides"
    with pytest.raises(ConfigError, match=message):
        create_backbone("small_cnn", GREY, strides=(1, 2))


def test_small_cnn_pool_size_keeps_a_coarse_layout():
    torch.manual_seed(0)
    net = create_backbone("small_cnn", GREY, widths=(4, 8), pool_size=2).eval()
    assert net.num_features == 8 * 4
    x = torch.zeros(1, 1, 8, 8)
    x[..., :4, :4] = 1.0  # something in the top-left quarter only
    cells = net(x).view(8, 2, 2)
    assert not torch.allclose(cells[:, 0, 0], cells[:, 1, 1])  # where it is shows in the features
    global_pool = create_backbone("small_cnn", GREY, widths=(4, 8)).eval()
    global_pool.load_state_dict(net.state_dict())
    assert torch.allclose(cells.mean(dim=(1, 2)), global_pool(x)[0], atol=1e-6)  # the cells average to global pooling
    with pytest.raises(ConfigError, match="model.backbone_kwargs.pool_size=0"):
        create_backbone("small_cnn", GREY, pool_size=0)


VIT = {"img_size": 8, "patch_size": 2, "depth": 1, "embed_dim": 24, "num_heads": 2}


def test_a_vit_takes_small_images_through_backbone_kwargs():
    net = create_backbone("vit_tiny_patch16_224", GREY, **VIT)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, net.num_features) and net.patch_embed.num_patches == 16
    # views of several sizes (multi-crop) with positions interpolated per size
    multi = create_backbone(
        "vit_tiny_patch16_224", GREY, view_shapes=[(1, 8, 8), (1, 4, 4)], dynamic_img_size=True, **VIT
    )
    assert multi(torch.randn(2, 1, 4, 4)).shape == (2, multi.num_features)


def test_a_vit_that_does_not_fit_the_views_is_named_by_its_key():
    with pytest.raises(
        ConfigError, match=r"model.backbone_kwargs.patch_size: .* 3x3 px patches, which do not tile the 8x8"
    ):
        create_backbone("vit_tiny_patch16_224", GREY, **(VIT | {"patch_size": 3}))
    with pytest.raises(ConfigError, match=r"model.backbone_kwargs.img_size: .* built for 224x224 .* set img_size: 8"):
        create_backbone("vit_tiny_patch16_224", GREY, depth=1)
    with pytest.raises(ConfigError, match=r"model.backbone_kwargs.dynamic_img_size: .* \(8x8, 6x6 px, multi-crop\)"):
        create_backbone("vit_tiny_patch16_224", GREY, view_shapes=[(1, 8, 8), (1, 6, 6)], **VIT)
    with pytest.raises(ConfigError, match=r"patch_size: .* do not tile the 6x6 px views"):
        create_backbone(
            "vit_tiny_patch16_224",
            GREY,
            view_shapes=[(1, 8, 8), (1, 6, 6)],
            dynamic_img_size=True,
            **(VIT | {"patch_size": 4}),
        )
