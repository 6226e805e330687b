"""Losses, 8-bit rounding with a straight-through estimator, and the PSNR metrics used in progress."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from imnkit.dwt import haar_dwt
from imnkit.metrics import luma


def quantize_ste(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8 bits in the forward pass; identity gradient (straight-through).

    Training recovers from this value, so recovery holds from a saved 8-bit PNG.
    """
    q = torch.round(x.detach().clamp(0.0, 1.0) * 255.0) / 255.0
    return x + (q - x).detach()


def ll_band(x: torch.Tensor) -> torch.Tensor:
    """The LL sub-band (first C of 4C channels) of the Haar DWT."""
    return haar_dwt(x)[:, : x.shape[1]]


@dataclass(frozen=True)
class LossWeights:
    """λ embedding : recovering : low-frequency (paper default 1 : 3 : 1)."""

    embed: float = 1.0
    recover: float = 3.0
    low: float = 1.0


def to_8bit(x: torch.Tensor) -> torch.Tensor:
    """Round to the values an 8-bit file would hold (still float, in [0, 1])."""
    return torch.round(x.detach().float().clamp(0.0, 1.0) * 255.0) / 255.0


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    if mse <= 0:
        return float("inf")
    return 10.0 * math.log10(peak * peak / mse)


def y_mse(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean squared error of BT.601 luma on the 8-bit studio scale, after rounding both to 8 bits.

    ``a`` and ``b``: (B, 3, H, W) in [0, 1].
    """
    ya = luma(to_8bit(a), channel_axis=1, peak=1.0)
    yb = luma(to_8bit(b), channel_axis=1, peak=1.0)
    return float(((ya - yb) ** 2).mean())


def rgb_mse(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean squared error of RGB on the 8-bit scale, after rounding both to 8 bits."""
    return float((((to_8bit(a) - to_8bit(b)) * 255.0) ** 2).mean())


def y_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return psnr_from_mse(y_mse(a, b))


def rgb_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return psnr_from_mse(rgb_mse(a, b))
