"""Views of 3-D volumes on the batch's device: CT, MR, MedMNIST 3-D (grey 2-D medical images: augment/medical.py).

`VolumeViews` makes V views of a (B, C, D, H, W) batch. The geometry of every view of every sample (a random
crop with its own size along each axis, flips along each axis, a small rotation about each axis and a
shift) is one 3x4 matrix per sample; the V views of the batch are resampled together by a single
`affine_grid` + `grid_sample`, instead of one pass per op and per sample (MONAI) or per op (Kornia's 3-D
augmentations): see benchmarks/medical.py. Intensity ops for CT and MR follow per sample: contrast and
brightness, gamma, Gaussian noise and a separable Gaussian blur with a per-sample sigma.

Angles and shifts act in the volume's normalised coordinates ([-1, 1] along each axis), which is physical
space for cubic volumes of isotropic voxels such as MedMNIST 3-D's; resample to isotropic spacing first
(`MedicalStudies(spacing=...)`) for others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab.augment.ops import ChannelNormalize, check_views, chosen, on_chosen, per_sample, triple
from contrastlab.contract import ViewPipeline
from contrastlab.errors import ConfigError

Triple = tuple[float, float, float]


def rotation_matrices(angles: Tensor) -> Tensor:
    """(N, 3, 3) rotations in (x, y, z) = (W, H, D) coordinates from (N, 3) angles in radians about the
    D, H and W axes (z, y, x), applied in that order: R = Rx @ Ry @ Rz."""
    n = angles.shape[0]
    cos, sin = angles.cos(), angles.sin()
    eye = torch.eye(3, device=angles.device, dtype=angles.dtype).expand(n, 3, 3)
    rz, ry, rx = eye.clone(), eye.clone(), eye.clone()
    # about z (the D axis): rotates x-y, the in-slice plane
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1] = cos[:, 0], -sin[:, 0], sin[:, 0], cos[:, 0]
    # about y (the H axis): rotates x-z
    ry[:, 0, 0], ry[:, 0, 2], ry[:, 2, 0], ry[:, 2, 2] = cos[:, 1], sin[:, 1], -sin[:, 1], cos[:, 1]
    # about x (the W axis): rotates y-z
    rx[:, 1, 1], rx[:, 1, 2], rx[:, 2, 1], rx[:, 2, 2] = cos[:, 2], -sin[:, 2], sin[:, 2], cos[:, 2]
    return rx @ ry @ rz


def volume_theta(sides: Tensor, centres: Tensor, flips: Tensor, angles: Tensor, shifts: Tensor) -> Tensor:
    """(N, 3, 4) `affine_grid` matrices for crops, flips, rotations and shifts, all per sample, in (D, H, W) order.

    sides: (N, 3) crop sides as fractions of each axis; centres: (N, 3) crop centres in normalised
    coordinates [-1, 1]; flips: (N, 3) +1 or -1; angles: (N, 3) radians about the D, H, W axes; shifts:
    (N, 3) in the crop's normalised coordinates. An output point p samples the input at
    diag(sides * flips) (R p + shift) + centre, so the crop is rotated about its own centre.
    """
    # affine_grid's coordinates are (x, y, z) = (W, H, D): reverse the last axis of every per-axis input.
    scale = (sides * flips).flip(-1)
    linear = scale[:, :, None] * rotation_matrices(angles)
    offset = scale * shifts.flip(-1) + centres.flip(-1)
    return torch.cat([linear, offset[:, :, None]], dim=2)


class RandomVolumeGeometry(nn.Module):
    """Random crop (volume fraction from `crop_scale`, per-axis aspect from `crop_ratio`), flips along each
    axis with `flip_p` (D, H, W), and with probability `affine_p` a rotation of up to `rotate_degrees` about
    each axis and a shift of up to `translate` (a fraction of the crop): the matrices of `volume_theta`."""

    def __init__(
        self,
        crop_scale: tuple[float, float] = (0.4, 1.0),
        crop_ratio: tuple[float, float] = (0.8, 1.25),
        flip_p: float | Triple = 0.5,
        rotate_degrees: float | Triple = 10.0,
        translate: float = 0.0,
        affine_p: float = 0.5,
    ):
        super().__init__()
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ConfigError(f"crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}")
        self.crop_scale, self.crop_ratio = crop_scale, crop_ratio
        self.flip_p = triple(flip_p, "flip_p")
        self.rotate_degrees = triple(rotate_degrees, "rotate_degrees")
        self.translate, self.affine_p = translate, affine_p

    def theta(self, n: int, device: torch.device) -> Tensor:
        uniform = lambda *shape: torch.rand(*shape, device=device)  # noqa: E731
        fraction = self.crop_scale[0] + (self.crop_scale[1] - self.crop_scale[0]) * uniform(n, 1)
        low, high = math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])
        aspect = low + (high - low) * uniform(n, 3)
        aspect = aspect - aspect.mean(dim=1, keepdim=True)  # per-axis aspects whose product is 1
        sides = (fraction.log() / 3 + aspect).exp().clamp(max=1.0)
        centres = (2 * uniform(n, 3) - 1) * (1 - sides)
        flips = torch.where(uniform(n, 3) < torch.tensor(self.flip_p, device=device), -1.0, 1.0)
        apply = (uniform(n, 1) < self.affine_p).float()
        limits = torch.tensor(self.rotate_degrees, device=device) * (math.pi / 180)
        angles = (2 * uniform(n, 3) - 1) * limits * apply
        shifts = (2 * uniform(n, 3) - 1) * (2 * self.translate) * apply
        return volume_theta(sides, centres, flips, angles, shifts)


def resample(x: Tensor, theta: Tensor, size: Sequence[int]) -> Tensor:
    """One `affine_grid` + `grid_sample` of a (N, C, D, H, W) batch to (N, C, *size), zeros outside."""
    grid = F.affine_grid(theta.to(x.dtype), [x.shape[0], x.shape[1], *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class RandomContrast(nn.Module):
    """x -> mean + c (x - mean) + b per sample (c in 1 +- contrast, b in +-brightness), with probability p."""

    def __init__(self, contrast: float = 0.25, brightness: float = 0.1, p: float = 0.8):
        super().__init__()
        self.contrast, self.brightness, self.p = contrast, brightness, p

    def forward(self, x: Tensor) -> Tensor:
        apply = chosen(x, self.p).to(x.dtype)
        n = x.shape[0]
        c = 1 + (2 * torch.rand(n, device=x.device) - 1) * self.contrast * apply
        b = (2 * torch.rand(n, device=x.device) - 1) * self.brightness * apply
        mean = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
        return mean + per_sample(c, x) * (x - mean) + per_sample(b, x)


class RandomGamma(nn.Module):
    """Gamma on each sample's own range: lo + (hi - lo) ((x - lo) / (hi - lo)) ** g, g log-uniform in `gamma`."""

    def __init__(self, gamma: tuple[float, float] = (0.7, 1.5), p: float = 0.5):
        super().__init__()
        self.gamma, self.p = gamma, p

    def _gamma(self, x: Tensor) -> Tensor:
        dims = tuple(range(1, x.ndim))
        low, high = math.log(self.gamma[0]), math.log(self.gamma[1])
        g = (low + (high - low) * torch.rand(x.shape[0], device=x.device)).exp()
        lo, hi = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
        span = (hi - lo).clamp(min=1e-6)
        return lo + span * ((x - lo) / span).clamp(0, 1).pow(per_sample(g, x))

    def forward(self, x: Tensor) -> Tensor:
        return on_chosen(x, self.p, self._gamma)


def gaussian_blur3d(x: Tensor, sigma: Tensor) -> Tensor:
    """A separable Gaussian blur of (N, C, D, H, W) with one sigma (in voxels) per sample, truncated at 3 sigma,
    edges replicated; sigma 0 leaves a sample as it is. Per axis, a sum over the kernel's taps of shifted
    copies weighted per sample: a few passes over memory, where a grouped conv3d is slow on CPUs."""
    radius = max(1, int(math.ceil(3 * float(sigma.max()))))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).clamp(min=1e-3)[:, None]
    kernel = torch.exp(-0.5 * (offsets[None] / s) ** 2)
    kernel = torch.where(sigma[:, None] > 0, kernel, (offsets[None] == 0).to(x.dtype))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (N, taps)
    out = x
    for axis in (2, 3, 4):
        length = out.shape[axis]
        padded = torch.cat(
            [out.narrow(axis, 0, 1).expand_as(out.narrow(axis, 0, radius))]
            + [out]
            + [out.narrow(axis, length - 1, 1).expand_as(out.narrow(axis, 0, radius))],
            dim=axis,
        )
        blurred = torch.zeros_like(out)
        for tap in range(2 * radius + 1):
            blurred += per_sample(kernel[:, tap], out) * padded.narrow(axis, tap, length)
        out = blurred
    return out


class RandomBlur3d(nn.Module):
    """Gaussian blur with sigma uniform in `sigma` (voxels), per sample, with probability p."""

    def __init__(self, sigma: tuple[float, float] = (0.1, 1.0), p: float = 0.2):
        super().__init__()
        self.sigma, self.p = sigma, p

    def _blur(self, x: Tensor) -> Tensor:
        sigma = self.sigma[0] + (self.sigma[1] - self.sigma[0]) * torch.rand(x.shape[0], device=x.device)
        return gaussian_blur3d(x, sigma)

    def forward(self, x: Tensor) -> Tensor:
        return on_chosen(x, self.p, self._blur)


class RandomVolumeNoise(nn.Module):
    """Additive Gaussian noise of standard deviation `std` on each sample with probability p."""

    def __init__(self, std: float = 0.03, p: float = 0.5):
        super().__init__()
        self.std, self.p = std, p

    def forward(self, x: Tensor) -> Tensor:
        return on_chosen(x, self.p, lambda chosen_x: chosen_x + self.std * torch.randn_like(chosen_x))


class VolumeViews(ViewPipeline):
    """V random views of a (B, C, D, H, W) volume batch, geometry in one `grid_sample`, then intensity ops.

    uint8 batches (MedMNIST 3-D) are read as [0, 1] and clamped there after the intensity ops; float batches
    (windowed CT in [0, 1], MR z-scores) are left unclamped unless `clamp` says so.

    Args:
        size: output (D, H, W), or one side; by default the data's.
        num_views: V.
        crop_scale, crop_ratio, flip_p, rotate_degrees, translate, affine_p: see `RandomVolumeGeometry`.
        contrast, brightness, contrast_p: `RandomContrast`; gamma, gamma_p: `RandomGamma`;
        noise_std, noise_p: additive Gaussian noise; blur_sigma, blur_p: `RandomBlur3d`.
        clamp: (low, high) to clamp views to before normalisation; None: [0, 1] for uint8 input only.
        mean, std: per-channel normalisation; by default the data's.
    """

    def __init__(
        self,
        size: int | Sequence[int] | None = None,
        num_views: int = 2,
        crop_scale: tuple[float, float] = (0.4, 1.0),
        crop_ratio: tuple[float, float] = (0.8, 1.25),
        flip_p: float | Triple = 0.5,
        rotate_degrees: float | Triple = 10.0,
        translate: float = 0.0,
        affine_p: float = 0.5,
        contrast: float = 0.25,
        brightness: float = 0.1,
        contrast_p: float = 0.8,
        gamma: tuple[float, float] = (0.7, 1.5),
        gamma_p: float = 0.3,
        noise_std: float = 0.03,
        noise_p: float = 0.5,
        blur_sigma: tuple[float, float] = (0.1, 1.0),
        blur_p: float = 0.2,
        clamp: tuple[float, float] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        super().__init__()
        check_views(num_views)
        self.size = None if size is None else tuple(int(s) for s in triple(size, "size"))
        self.num_views = num_views
        self.geometry = RandomVolumeGeometry(crop_scale, crop_ratio, flip_p, rotate_degrees, translate, affine_p)
        ops: list[nn.Module] = []
        if contrast_p > 0 and (contrast or brightness):
            ops.append(RandomContrast(contrast, brightness, contrast_p))
        if gamma_p > 0:
            ops.append(RandomGamma(gamma, gamma_p))
        if blur_p > 0:
            ops.append(RandomBlur3d(blur_sigma, blur_p))
        if noise_p > 0 and noise_std > 0:
            ops.append(RandomVolumeNoise(noise_std, noise_p))
        self.intensity = nn.Sequential(*ops)
        self.clamp = clamp
        self.normalize: nn.Module = nn.Identity()
        if mean is not None and std is not None:
            self.normalize = ChannelNormalize(mean, std)

    def bind(self, info) -> None:
        if self.size is None and len(info.shape) == 4:
            self.size = tuple(info.shape[1:])
        if isinstance(self.normalize, nn.Identity) and info.mean and info.std:
            self.normalize = ChannelNormalize(info.mean, info.std)

    def _prepare(self, x: Tensor) -> tuple[Tensor, tuple[float, float] | None]:
        if x.ndim != 5:
            raise ConfigError(f"VolumeViews takes (B, C, D, H, W) batches, got {tuple(x.shape)}")
        if self.size is None:
            self.size = tuple(x.shape[2:])
        if x.dtype == torch.uint8:
            return x.float().div_(255.0), self.clamp or (0.0, 1.0)
        return x.float(), self.clamp

    @torch.no_grad()
    def forward(self, x: Tensor) -> list[Tensor]:
        x, clamp = self._prepare(x)
        n = x.shape[0]
        # Every view of every sample in one resampling: the batch repeated V times, one matrix per copy.
        views = resample(
            x.repeat(self.num_views, 1, 1, 1, 1), self.geometry.theta(n * self.num_views, x.device), self.size
        )
        views = self.intensity(views)
        if clamp is not None:
            views = views.clamp(*clamp)
        return list(self.normalize(views).split(n))

    @torch.no_grad()
    def eval_view(self, x: Tensor) -> Tensor:
        """The whole volume, resized to `size` when it differs."""
        x, clamp = self._prepare(x)
        if tuple(x.shape[2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="trilinear", align_corners=False)
        return self.normalize(x)
