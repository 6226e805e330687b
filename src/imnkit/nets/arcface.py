"""SimSwap's identity encoder: IR-SE ResNet-101 ArcFace backbone (112x112 -> 512-d), pure PyTorch.

Upstream: https://github.com/neuralchen/SimSwap ``models/arcface_models.py`` (read at commit
``bd7b7686a17f41dd11cfcd5d82f7e4c5eb94b780``), itself from foamliu/InsightFace-v2.
Licence: SimSwap is released for non-commercial research use only (CC BY-NC 4.0 LICENSE in
the repository); the public weights (``simswap_arcface.pth``) inherit that restriction.
This file is an independent re-implementation; only the architecture (layer names, shapes
and order of operations) follows upstream so that the public state_dict loads strictly.

Architecture facts (verified against ``simswap_arcface_resnet101_ir_se.tsv`` and the fixture):

- stem: 3x3 conv, stride 1, *no padding*, no bias (112 -> 110) -> BN -> PReLU(1) -> 2x2 max-pool (55);
- IR blocks: ``BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN -> SE``, plus the
  (optionally 1x1-conv+BN downsampled) identity, then the *same* PReLU again;
  convs are 3x3, padding 1, no bias; SE = avgpool -> Linear(C, C/16) -> PReLU -> Linear -> sigmoid;
- layers [3, 4, 23, 3] with widths 64/128/256/512, strides 1/2/2/2 (55 -> 28 -> 14 -> 7);
- head: BN2d(512) -> dropout (identity in eval) -> flatten (C, H, W order) -> Linear(25088, 512) -> BN1d.

Convention: the output is the raw embedding *before* L2 normalisation. SimSwap feeds the
encoder an aligned 112x112 RGB crop normalised with ImageNet mean/std
(``(x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]`` with ``x`` in [0, 1]) and
L2-normalises the output; that pre/post-processing is the caller's job, not this module's.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ArcFaceIRSE", "IRBlock", "SEBlock", "arcface_ir_se101"]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class SEBlock(nn.Module):
    """Squeeze-and-excitation gate with a PReLU between the two linear layers (keys ``fc.0/1/2``)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.PReLU(),
            nn.Linear(channels // reduction, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.fc(x.mean(dim=(2, 3)))
        return x * w[:, :, None, None]


class IRBlock(nn.Module):
    """Improved-residual block with SE; the block's PReLU is applied twice (shared weight)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(inplanes)
        self.conv1 = _conv3x3(inplanes, inplanes)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.prelu = nn.PReLU()
        self.conv2 = _conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SEBlock(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.prelu(self.bn1(self.conv1(self.bn0(x))))
        out = self.se(self.bn2(self.conv2(out)))
        residual = x if self.downsample is None else self.downsample(x)
        return self.prelu(out + residual)


class ArcFaceIRSE(nn.Module):
    """IR-SE ResNet ArcFace backbone. Input ``(B, 3, 112, 112)``; output ``(B, 512)`` raw embedding.

    Shape:
        - input: :math:`(B, 3, 112, 112)` float, ImageNet-normalised RGB (see module docstring)
        - output: :math:`(B, 512)` unnormalised embedding
    """

    def __init__(self, layers: tuple[int, int, int, int] = (3, 4, 23, 3), embedding_size: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        inplanes = 64
        for i, (planes, n, stride) in enumerate(zip((64, 128, 256, 512), layers, (1, 2, 2, 2)), start=1):
            blocks = []
            for j in range(n):
                s = stride if j == 0 else 1
                down = None
                if j == 0 and (s != 1 or inplanes != planes):
                    down = nn.Sequential(
                        nn.Conv2d(inplanes, planes, kernel_size=1, stride=s, bias=False),
                        nn.BatchNorm2d(planes),
                    )
                blocks.append(IRBlock(inplanes, planes, s, down))
                inplanes = planes
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.bn2 = nn.BatchNorm2d(512)
        self.dropout = nn.Dropout()
        self.fc = nn.Linear(512 * 7 * 7, embedding_size)
        self.bn3 = nn.BatchNorm1d(embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1:] != (3, 112, 112):
            raise ValueError(f"ArcFaceIRSE expects (B, 3, 112, 112), got {tuple(x.shape)}")
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn2(x))
        x = self.fc(torch.flatten(x, 1))
        return self.bn3(x)


def arcface_ir_se101() -> ArcFaceIRSE:
    """SimSwap's ArcFace identity encoder (IR-SE ResNet-101, layers [3, 4, 23, 3])."""
    return ArcFaceIRSE((3, 4, 23, 3))
