"""Orthonormal Haar DWT / IWT on (B, C, H, W) tensors.

Convention: ``haar_dwt`` maps (B, C, H, W) -> (B, 4C, H/2, W/2) with the sub-bands stacked band-major:
channels ``[0:C]`` are LL, ``[C:2C]`` HL, ``[2C:3C]`` LH, ``[3C:4C]`` HH. With the 2x2 block
``[[a, b], [c, d]]`` (a top-left, b top-right, c bottom-left, d bottom-right)::

    LL = (a + b + c + d) / 2      # approximation
    HL = (a - b + c - d) / 2      # horizontal detail: left minus right  (PyWavelets' cV, sign +)
    LH = (a + b - c - d) / 2      # vertical detail: top minus bottom    (PyWavelets' cH, sign +)
    HH = (a - b - c + d) / 2      # diagonal detail                      (PyWavelets' cD, sign +)

PyWavelets' ``dwt2(x, 'haar')`` returns ``(cA, (cH, cV, cD))`` with the same values: cA == LL,
cH == LH, cV == HL, cD == HH (tested). The transform is orthonormal, so the inverse is exact up to
float rounding and energy is preserved.

Odd sizes: H and W must be even; ``haar_dwt`` raises ``ValueError`` otherwise. Callers that crop
regions (embed/extract) choose boxes with even sides.
"""

from __future__ import annotations

import torch


def _check(x: torch.Tensor, name: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} expects a floating-point tensor, got {x.dtype}")


def haar_dwt(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2); H and W must be even."""
    _check(x, "haar_dwt")
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"haar_dwt needs even height and width, got {h}x{w}")
    a = x[..., 0::2, 0::2]
    b = x[..., 0::2, 1::2]
    c = x[..., 1::2, 0::2]
    d = x[..., 1::2, 1::2]
    ll = (a + b + c + d) * 0.5
    hl = (a - b + c - d) * 0.5
    lh = (a + b - c - d) * 0.5
    hh = (a - b - c + d) * 0.5
    return torch.cat([ll, hl, lh, hh], dim=1)


def haar_iwt(y: torch.Tensor) -> torch.Tensor:
    """(B, 4C, H, W) -> (B, C, 2H, 2W); the exact inverse of :func:`haar_dwt`."""
    _check(y, "haar_iwt")
    if y.shape[1] % 4:
        raise ValueError(f"haar_iwt needs a channel count divisible by 4, got {y.shape[1]}")
    ll, hl, lh, hh = y.chunk(4, dim=1)
    a = (ll + hl + lh + hh) * 0.5
    b = (ll - hl + lh - hh) * 0.5
    c = (ll + hl - lh - hh) * 0.5
    d = (ll - hl - lh + hh) * 0.5
    bsz, ch, h, w = ll.shape
    out = y.new_empty(bsz, ch, 2 * h, 2 * w)
    out[..., 0::2, 0::2] = a
    out[..., 0::2, 1::2] = b
    out[..., 1::2, 0::2] = c
    out[..., 1::2, 1::2] = d
    return out


class HaarDWT(torch.nn.Module):
    """Module wrapper of :func:`haar_dwt` (no parameters, nothing in checkpoints)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return haar_dwt(x)


class HaarIWT(torch.nn.Module):
    """Module wrapper of :func:`haar_iwt`."""

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return haar_iwt(y)
