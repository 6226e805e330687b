"""Conversion between 8-bit images and the float tensors the networks take.

Convention: an image is (H, W, C) uint8 (a numpy array or a torch tensor, as the bundle holds it);
a float image is (1, C, H, W) float32 with values ``uint8 / 255`` in [0, 1]. Converting back
multiplies by 255, rounds to nearest and clamps to [0, 255], so ``to_uint8(to_float(x)) == x``.
"""

from __future__ import annotations

import numpy as np
import torch


def to_float(image: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, C) uint8 -> (1, C, H, W) float32 in [0, 1] on ``device``.

    Example:
        >>> to_float(np.full((2, 4, 3), 255, dtype=np.uint8)).shape
        torch.Size([1, 3, 2, 4])
    """
    if isinstance(image, np.ndarray):
        arr = np.ascontiguousarray(image)
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())  # torch warns on read-only memory
    else:
        t = image
    if t.dtype != torch.uint8 or t.dim() != 3:
        raise ValueError(f"to_float expects an (H, W, C) uint8 image, got shape {tuple(t.shape)} {t.dtype}")
    return t.to(device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) float in [0, 1] -> (H, W, C) uint8 on the CPU (round to nearest, clamp).

    ``.numpy()`` of the result is the (H, W, C) array that image files are written from.
    """
    if x.dim() != 4 or x.shape[0] != 1 or not x.is_floating_point():
        raise ValueError(f"to_uint8 expects a (1, C, H, W) float tensor, got shape {tuple(x.shape)} {x.dtype}")
    return x.detach().squeeze(0).permute(1, 2, 0).mul(255.0).round_().clamp_(0, 255).to(torch.uint8).cpu().contiguous()
