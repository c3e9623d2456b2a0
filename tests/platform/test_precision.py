"""`trainer.precision: auto`: bf16-mixed where the hardware runs bf16 fast, else float32, and the reason said."""

from __future__ import annotations

import pytest

from contrastlab.platform import precision


@pytest.mark.parametrize(
    ("flags", "accelerator", "expected"),
    [
        ({"avx512f", "avx512_bf16"}, "auto", ("bf16-mixed", "auto: CPU with AVX-512 BF16")),
        ({"amx_bf16", "avx512_bf16"}, "cpu", ("bf16-mixed", "auto: CPU with AVX-512 BF16 and AMX")),
        ({"avx2", "avx512f"}, "cpu", ("32-true", "auto: this CPU has no AVX-512 BF16 or AMX")),
        (set(), "mps", ("32-true", "auto: accelerator mps")),
    ],
)
def test_auto_follows_the_cpu_flags(monkeypatch, flags, accelerator, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    assert precision.resolve("auto", accelerator) == expected


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_on_cuda_asks_the_device(monkeypatch, bf16, expected):
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(precision.torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    assert precision.resolve("auto", "gpu")[0] == expected
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset())
    assert precision.resolve("auto", "cpu")[0] == "32-true"  # the CPU was asked for, whatever the GPU


def test_a_precision_given_by_name_is_kept_and_the_trainer_takes_auto(monkeypatch):
    assert precision.resolve("16-mixed", "auto") == ("16-mixed", "set in the config")
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    trainer = precision.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    assert trainer.precision == "bf16-mixed"
    assert precision.Trainer(precision="32-true", logger=False, enable_checkpointing=False).precision == "32-true"


def test_channels_last_defaults_on_for_2d_convolutions_only(digits_info):
    from torch import nn

    from contrastlab.modules import SimCLR
    from contrastlab.modules.core.speed import wants_channels_last

    assert SimCLR(backbone="small_cnn", data_info=digits_info).channels_last
    assert not SimCLR(backbone="small_cnn", data_info=digits_info, channels_last=False).channels_last
    assert not wants_channels_last(nn.Sequential(nn.Conv1d(1, 4, 3)), (1, 128))
    assert not wants_channels_last(nn.Sequential(nn.Linear(4, 4)), (3, 32, 32))


def test_auto_keeps_float32_for_3d_convolutions_on_a_cpu(monkeypatch):
    """bf16 steps of a 3-D ResNet on synthetic volumes reached a NaN loss within 3 steps on this CPU."""
    from torch import nn

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    volumes, images = nn.Sequential(nn.Conv3d(1, 4, 3)), nn.Sequential(nn.Conv2d(1, 4, 3))
    assert precision.resolve("auto", "cpu", volumes) == (
        "32-true",
        "auto: 3-D convolutions, which diverged in bf16 on CPU",
    )
    assert precision.resolve("auto", "cpu", images)[0] == "bf16-mixed"
    assert precision.resolve("bf16-mixed", "cpu", volumes)[0] == "bf16-mixed"  # asked for by name: kept
