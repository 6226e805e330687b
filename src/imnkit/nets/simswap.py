"""SimSwap face-swap generator (``Generator_Adain_Upsample``), pure PyTorch.

Upstream: https://github.com/neuralchen/SimSwap ``models/fs_networks.py`` (224),
``models/fs_networks_512.py`` (512: extra ``down0``/``up0`` level, 32-channel stem) and
``models/fs_networks_fix.py`` (the "fix" training code: no output tanh, optional ``deep``
``down4``/``up4`` level), read at commit ``bd7b7686a17f41dd11cfcd5d82f7e4c5eb94b780``.
Licence: SimSwap is for non-commercial research use only (CC BY-NC 4.0 LICENSE in the
repository; the generator file header says CC BY-NC-SA 4.0, from NVIDIA pix2pixHD); the
public weights inherit that restriction. This file is an independent re-implementation
following upstream's layer names and order of operations so public state_dicts load strictly.

Architecture facts:

- stem ``first_layer``: ReflectionPad(3) -> Conv7x7 -> BatchNorm -> ReLU;
- ``downK``: Conv3x3 stride 2 pad 1 (zero) -> BatchNorm -> ReLU;
- ``BottleNeck``: 9 AdaIN residual blocks at 512 channels, each
  ``y = ReflectionPad(1) -> Conv3x3 -> InstanceNorm(eps=1e-8, no affine, biased var)``,
  ``y = y * (1 + gamma) + beta`` with ``[gamma, beta] = Linear(512, 1024)(latent)``, ReLU,
  the same again without ReLU, then ``x + y``;
- ``upK``: bilinear x2 (``align_corners=False``) -> Conv3x3 pad 1 -> BatchNorm -> ReLU;
- ``last_layer``: ReflectionPad(3) -> Conv7x7 -> tanh, then ``(x + 1) / 2`` (official
  224/512); the "fix" variant has no tanh and returns the raw conv output.

Convention (official 224): ``forward(img, latent)`` takes the attribute crop ``img``
``(B, 3, 224, 224)`` RGB in [0, 1] (no mean/std normalisation) and the L2-normalised ArcFace
identity latent ``(B, 512)``; it returns ``(B, 3, 224, 224)`` RGB in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "AdaINResBlock",
    "ApplyStyle",
    "SimSwapGenerator",
    "simswap_224",
    "simswap_512",
    "simswap_512_fix_deep",
]


def instance_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-sample, per-channel normalisation over H, W (biased variance, no affine), as upstream."""
    x = x - x.mean(dim=(2, 3), keepdim=True)
    return x * torch.rsqrt((x * x).mean(dim=(2, 3), keepdim=True) + eps)


class _InstanceNorm(nn.Module):
    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return instance_norm(x, self.eps)


class ApplyStyle(nn.Module):
    """AdaIN modulation ``x * (1 + gamma) + beta`` from ``Linear(latent) -> [gamma | beta]``."""

    def __init__(self, latent_size: int, channels: int):
        super().__init__()
        self.linear = nn.Linear(latent_size, channels * 2)

    def forward(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        style = self.linear(latent).view(-1, 2, x.shape[1], 1, 1)
        return x * (style[:, 0] + 1.0) + style[:, 1]


class AdaINResBlock(nn.Module):
    """Upstream ``ResnetBlock_Adain`` with reflection padding (keys ``conv1.1``, ``style1.linear``...)."""

    def __init__(self, dim: int, latent_size: int):
        super().__init__()
        self.conv1 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _InstanceNorm())
        self.style1 = ApplyStyle(latent_size, dim)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _InstanceNorm())
        self.style2 = ApplyStyle(latent_size, dim)

    def forward(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.style1(self.conv1(x), latent))
        y = self.style2(self.conv2(y), latent)
        return x + y


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Conv2d(cin, cout, 3, stride=1, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class SimSwapGenerator(nn.Module):
    """SimSwap ``Generator_Adain_Upsample`` with the upstream variants as flags.

    Args:
        n_blocks: AdaIN residual blocks in the bottleneck (9 in every public checkpoint).
        latent_size: identity latent size (512).
        extra_level: the 512 variant's extra ``down0``/``up0`` level and 32-channel stem.
        deep: the ``down4``/``up4`` level (``deep=True``).
        tanh_output: official nets end with tanh and map to [0, 1]; the "fix" nets return the raw conv.

    Shape:
        - img: :math:`(B, 3, H, W)`, ``H, W`` divisible by ``2 ** levels``
        - latent: :math:`(B, \\text{latent\\_size})`
        - output: :math:`(B, 3, H, W)`
    """

    def __init__(
        self,
        n_blocks: int = 9,
        latent_size: int = 512,
        extra_level: bool = False,
        deep: bool = False,
        tanh_output: bool = True,
        in_channels: int = 3,
        out_channels: int = 3,
    ):
        super().__init__()
        self.extra_level = extra_level
        self.deep = deep
        self.tanh_output = tanh_output
        stem = 32 if extra_level else 64
        self.first_layer = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(in_channels, stem, 7), nn.BatchNorm2d(stem), nn.ReLU()
        )
        if extra_level:
            self.down0 = _down(32, 64)
        self.down1 = _down(64, 128)
        self.down2 = _down(128, 256)
        self.down3 = _down(256, 512)
        if deep:
            self.down4 = _down(512, 512)
        self.BottleNeck = nn.ModuleList(AdaINResBlock(512, latent_size) for _ in range(n_blocks))
        if deep:
            self.up4 = _up(512, 512)
        self.up3 = _up(512, 256)
        self.up2 = _up(256, 128)
        self.up1 = _up(128, 64)
        if extra_level:
            self.up0 = _up(64, 32)
        last = [nn.ReflectionPad2d(3), nn.Conv2d(stem, out_channels, 7)]
        if tanh_output:
            last.append(nn.Tanh())
        self.last_layer = nn.Sequential(*last)

    @property
    def levels(self) -> int:
        return 3 + int(self.extra_level) + int(self.deep)

    def forward(self, img: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        m = 2**self.levels
        if img.ndim != 4 or img.shape[2] % m or img.shape[3] % m:
            raise ValueError(f"SimSwapGenerator expects (B, C, H, W) with H, W divisible by {m}, got {tuple(img.shape)}")
        if latent.ndim != 2 or latent.shape[0] != img.shape[0]:
            raise ValueError(f"latent must be (B, latent_size) with B={img.shape[0]}, got {tuple(latent.shape)}")
        x = self.first_layer(img)
        if self.extra_level:
            x = self.down0(x)
        x = self.down3(self.down2(self.down1(x)))
        if self.deep:
            x = self.down4(x)
        for block in self.BottleNeck:
            x = block(x, latent)
        if self.deep:
            x = self.up4(x)
        x = self.up1(self.up2(self.up3(x)))
        if self.extra_level:
            x = self.up0(x)
        x = self.last_layer(x)
        if self.tanh_output:
            x = (x + 1) / 2
        return x


def simswap_224() -> SimSwapGenerator:
    """Official SimSwap 224 generator (``simswap_224.pth``): RGB [0, 1] in, RGB [0, 1] out."""
    return SimSwapGenerator(n_blocks=9, extra_level=False, deep=False, tanh_output=True)


def simswap_512() -> SimSwapGenerator:
    """``fs_networks_512`` layout (extra ``down0``/``up0``). Key/shape-checked only (no numeric fixture).

    The official "512 beta" checkpoint matches no published architecture; do not claim it loads.
    """
    return SimSwapGenerator(n_blocks=9, extra_level=True, deep=False, tanh_output=True)


def simswap_512_fix_deep() -> SimSwapGenerator:
    """``fs_networks_fix`` with ``deep=True`` (community ``simswap_512_unoff.pth`` layout).

    Key/shape-checked only (no numeric fixture). Output is the raw last conv (no tanh, no remap).
    """
    return SimSwapGenerator(n_blocks=9, extra_level=False, deep=True, tanh_output=False)
