"""Gaussian blurs shared by the swap and the paste-back: plain, and over a mask only."""

from __future__ import annotations

import cv2
import numpy as np

#: below this sigma a Gaussian moves no 8-bit value by half a level, so the blur is skipped
MIN_SIGMA = 0.3


def gaussian_blur(img: np.ndarray, sigma: float, *, border: int = cv2.BORDER_REFLECT_101,
                  shrink_above: float | None = None) -> np.ndarray:
    """Gaussian blur of ``img`` (H, W[, C]) with OpenCV's ``border`` mode.

    ``sigma`` below :data:`MIN_SIGMA` returns ``img`` itself. With ``shrink_above``, a larger
    sigma runs on a copy shrunk by ``sigma / 4`` and is resized back: the result is smooth
    anyway and the cost stops growing with sigma.
    """
    if sigma < MIN_SIGMA:
        return img
    if shrink_above is None or sigma <= shrink_above:
        return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=border)
    f = sigma / 4.0
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / f, borderType=border)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


#: what the swap blurs with: mirrored edges (edge pixel repeated), big sigmas on a shrunk copy
SWAP_BLUR = {"border": cv2.BORDER_REFLECT, "shrink_above": 6.0}


def masked_blur(img: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian mean of ``img`` (H, W, C) over ``mask`` (H, W) only (normalised convolution)."""
    m = mask.astype(np.float32)
    num = gaussian_blur(img * m[..., None], sigma, **SWAP_BLUR)
    den = gaussian_blur(m, sigma, **SWAP_BLUR)
    return num / np.maximum(den, 1e-4)[..., None]
